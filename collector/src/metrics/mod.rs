//! The `/metrics` exposition: a [`Snapshot`] of one collection, encoded by one
//! prometheus-client collector (`families`) in OpenMetrics or the Prometheus text format.
//! [`Exposition`] encodes each format at most once per collection, however many scrapes share
//! it.

mod accept;
mod breakdown;
mod compression;
mod families;
mod family;
pub(crate) mod names;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

pub(crate) use compression::Encoding;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use crate::{
    backend::ebpf::{AttachedMode, InterfaceStats},
    discovery::{LinkStats, RxTx},
    policy::{Backend, Reason},
};
use collector_common::{Direction, Stats};

/// One interface as exported: its routing and what each backend read for it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InterfaceSnapshot {
    /// Name.
    pub(crate) name: String,
    /// Index.
    pub(crate) ifindex: u32,
    /// Link kind (empty for physical NICs).
    pub(crate) kind: String,
    /// Driver from `GDRVINFO` (empty when ethtool does not answer).
    pub(crate) driver: String,
    /// Routed backend.
    pub(crate) backend: Backend,
    /// Why.
    pub(crate) reason: Reason,
    /// eBPF attach mechanism, where the eBPF counter is attached (eBPF-routed interfaces, and
    /// those that get the breakdown besides another backend).
    pub(crate) attach_mode: Option<AttachedMode>,
    /// Programs before the eBPF counter on (ingress, egress) at the last check, where it is
    /// attached and has been checked.
    pub(crate) programs_before: Option<[u32; 2]>,
    /// Kernel link statistics (netdev backend), when this collection read them.
    pub(crate) kernel: Option<LinkStats>,
    /// eBPF statistics (counts and breakdown), when this collection read them.
    pub(crate) ebpf: Option<InterfaceStats>,
    /// Driver statistics after the allowlist, in driver order (ethtool backend).
    pub(crate) ethtool: Vec<(String, u64)>,
    /// Link speed, bytes per second.
    pub(crate) speed_bytes: Option<u64>,
    /// Duplex: full (`true`) or half, where the driver reports it.
    pub(crate) full_duplex: Option<bool>,
}

impl InterfaceSnapshot {
    /// Packets from the routed backend: eBPF counts for `ebpf`, kernel link stats for
    /// `ethtool` and `netdev`, nothing for `none` or when the backend's read failed.
    pub(crate) fn packets(&self) -> Option<RxTx> {
        self.by_backend(Stats::packets, LinkStats::packets)
    }

    /// Bytes from the routed backend (see [`InterfaceSnapshot::packets`]).
    pub(crate) fn bytes(&self) -> Option<RxTx> {
        self.by_backend(Stats::bytes, LinkStats::bytes)
    }

    fn by_backend(&self, ebpf: fn(&Stats) -> u64, kernel: fn(&LinkStats) -> RxTx) -> Option<RxTx> {
        match self.backend {
            Backend::None => None,
            Backend::Ebpf => self.ebpf.map(|c| RxTx {
                rx: ebpf(&c.rx),
                tx: ebpf(&c.tx),
            }),
            Backend::Ethtool | Backend::Netdev => self.kernel.as_ref().map(kernel),
        }
    }

    /// Whether the interface is monitored (any backend but `none`).
    pub(crate) fn monitored(&self) -> bool {
        self.backend != Backend::None
    }
}

/// Traffic of one tunnel device in one direction to or from one remote endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerSnapshot {
    /// The tunnel device.
    pub(crate) interface: String,
    /// The direction.
    pub(crate) direction: Direction,
    /// The remote endpoint's address, or `none` for packets without a tunnel key.
    pub(crate) peer: String,
    /// Its zone (`peer_zones`), when a zone table is configured.
    pub(crate) zone: Option<String>,
    /// Packets.
    pub(crate) packets: u64,
    /// Bytes.
    pub(crate) bytes: u64,
}

/// Packets counted as overflow, per map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapOverflow {
    /// Of interfaces without a counter slot.
    pub(crate) interfaces: u64,
    /// Of peers that did not fit into the peer map.
    pub(crate) peers: u64,
    /// Of drops whose (interface, reason) did not fit into the drop map; `None` when drop
    /// reasons are not counted.
    pub(crate) drops: Option<u64>,
}

/// Drops of one interface for one kernel drop reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DropSnapshot {
    /// The interface (its exported name).
    pub(crate) interface: String,
    /// The reason, as the running kernel names it.
    pub(crate) reason: String,
    /// Packets dropped since the daemon started.
    pub(crate) packets: u64,
}

/// Duration of the last collection and failures so far, per backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CollectStats {
    /// Seconds the last collection of each backend took.
    pub(crate) duration: std::collections::BTreeMap<Backend, f64>,
    /// Failures of each backend since start.
    pub(crate) errors: std::collections::BTreeMap<Backend, u64>,
}

/// Everything `/metrics` shows, prepared by one collection.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Interfaces, by ifindex.
    pub(crate) interfaces: Vec<InterfaceSnapshot>,
    /// Duration of the last collection and errors so far, per backend.
    pub(crate) collect: CollectStats,
    /// Failed eBPF attachments since start.
    pub(crate) attach_failures: u64,
    /// Re-attachments since start.
    pub(crate) reattach: u64,
    /// Moves back to the head of a hook's chain since start.
    pub(crate) reanchor: u64,
    /// Resyncs the link-event subscription asked for, per reason label.
    pub(crate) netlink_resyncs: Vec<(&'static str, u64)>,
    /// Traffic per tunnel device, direction and remote endpoint.
    pub(crate) peers: Vec<PeerSnapshot>,
    /// Packets counted as overflow by the eBPF programs, per map.
    pub(crate) map_overflow: MapOverflow,
    /// Kernel memory of each eBPF map, bytes (as the kernel accounts it).
    pub(crate) map_bytes: Vec<(&'static str, u64)>,
    /// Interface slots of the eBPF maps (used, free), when the backend is loaded.
    pub(crate) slots: Option<(u64, u64)>,
    /// Whether the eBPF backend is loaded.
    pub(crate) ebpf_available: bool,
    /// Traffic per tunnel device, direction and zone of the remote endpoint.
    pub(crate) zones: Vec<crate::zones::ZoneCount>,
    /// Which overlay series are shown.
    pub(crate) overlay_series: crate::zones::OverlaySeries,
    /// This node's zone, when known.
    pub(crate) node_zone: Option<String>,
    /// Drops per interface and kernel drop reason, by interface then reason.
    pub(crate) drops: Vec<DropSnapshot>,
    /// Whether drops are counted by reason.
    pub(crate) drop_reasons: bool,
}

impl Snapshot {
    /// The exported interface with index `ifindex`.
    pub(crate) fn interface_mut(&mut self, ifindex: u32) -> Option<&mut InterfaceSnapshot> {
        let at = self
            .interfaces
            .binary_search_by_key(&ifindex, |i| i.ifindex)
            .ok()?;
        self.interfaces.get_mut(at)
    }
}

/// Exposition format chosen by content negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4` (the classic Prometheus format).
    Prometheus,
}

impl Format {
    /// Picks the format from an HTTP `Accept` header, by quality value: OpenMetrics when the
    /// client lists it at least as high as the text format (`text/plain`, `text/*`, `*/*`) and
    /// above zero; the classic text format otherwise, also when nothing listed is acceptable
    /// (as client_golang does).
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let Some(header) = accept else {
            return Self::Prometheus;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for (media_type, q) in accept::weighted(header) {
            match media_type.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of this format.
    pub(crate) const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Which exposition a path serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum View {
    /// `/metrics`: every family, the overlay ones as `overlay_series` says.
    All,
    /// `/metrics/peers`: the overlay traffic per peer only, whatever `overlay_series` says, for
    /// a scrape of its own (debugging one node per peer without paying for it cluster-wide).
    Peers,
}

/// Encodes `view` of `snapshot` in `format`.
///
/// # Errors
///
/// A formatting error from the encoder (not expected for in-memory strings).
pub(crate) fn encode(
    snapshot: Arc<Snapshot>,
    format: Format,
    view: View,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(families::Families(snapshot, view)));
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        }
    }
    Ok(out)
}

/// One collection as scrapes receive it: the snapshot, and its body in each format and
/// content coding, encoded (and compressed) on first use and shared by every scrape it answers.
#[derive(Debug)]
pub(crate) struct Exposition {
    snapshot: Arc<Snapshot>,
    /// By view, then format, then coding ([`Encoding::ALL`] order).
    bodies: [[[OnceLock<Option<Bytes>>; 3]; 2]; 2],
}

impl Exposition {
    /// The exposition of `snapshot`.
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            bodies: Default::default(),
        }
    }

    /// The snapshot.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The body of `view` in `format` and content coding `encoding`; `None` if encoding or
    /// compressing failed (logged).
    pub(crate) fn encoded(&self, view: View, format: Format, encoding: Encoding) -> Option<Bytes> {
        let by_format = &self.bodies[view as usize][format as usize];
        let at = Encoding::ALL
            .iter()
            .position(|e| *e == encoding)
            .unwrap_or(0);
        by_format[at]
            .get_or_init(|| {
                if encoding == Encoding::Identity {
                    return match encode(Arc::clone(&self.snapshot), format, view) {
                        Ok(text) => Some(Bytes::from(text)),
                        Err(err) => {
                            tracing::error!(error = %err, "encoding the exposition failed");
                            None
                        }
                    };
                }
                let plain = self.encoded(view, format, Encoding::Identity)?;
                match encoding.apply(&plain) {
                    Ok(compressed) => Some(Bytes::from(compressed)),
                    Err(err) => {
                        tracing::error!(error = %err, "compressing the exposition failed");
                        None
                    }
                }
            })
            .clone()
    }
}
