//! The `/metrics` exposition: a [`Snapshot`] of one collection, encoded by one
//! prometheus-client collector (`families`) in OpenMetrics or the Prometheus text format.
//! [`Exposition`] encodes each format at most once per collection, however many scrapes share
//! it.

mod families;
pub(crate) mod names;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use collector_common::Counter;
use prometheus_client::registry::Registry;

use crate::{
    backend::{
        CollectStats,
        ebpf::{AttachedMode, InterfaceCounters},
        netdev::LinkStats,
    },
    policy::{Backend, Reason},
};

/// A (rx, tx) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxTx {
    /// Received.
    pub(crate) rx: u64,
    /// Transmitted.
    pub(crate) tx: u64,
}

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
    /// eBPF attach mechanism, for attached eBPF-routed interfaces.
    pub(crate) attach_mode: Option<AttachedMode>,
    /// Kernel link statistics (netdev backend), when this collection read them.
    pub(crate) kernel: Option<LinkStats>,
    /// eBPF counts (eBPF backend), when this collection read them.
    pub(crate) ebpf: Option<InterfaceCounters>,
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
        self.by_backend(|c| c.packets, LinkStats::packets)
    }

    /// Bytes from the routed backend (see [`InterfaceSnapshot::packets`]).
    pub(crate) fn bytes(&self) -> Option<RxTx> {
        self.by_backend(|c| c.bytes, LinkStats::bytes)
    }

    fn by_backend(
        &self,
        ebpf: fn(&Counter) -> u64,
        kernel: fn(&LinkStats) -> RxTx,
    ) -> Option<RxTx> {
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
    /// Packets counted as overflow by the eBPF programs.
    pub(crate) map_overflow: u64,
    /// Whether the eBPF backend is loaded.
    pub(crate) ebpf_available: bool,
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
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4` (the classic Prometheus format).
    Prometheus,
}

impl Format {
    /// Picks the format from an HTTP `Accept` header: OpenMetrics when the client lists it.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
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

/// Encodes `snapshot` in `format`.
///
/// # Errors
///
/// A formatting error from the encoder (not expected for in-memory strings).
pub(crate) fn encode(snapshot: Arc<Snapshot>, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(families::Families(snapshot)));
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        }
    }
    Ok(out)
}

/// One collection as scrapes receive it: the snapshot, and its body in each format, encoded
/// on first use.
#[derive(Debug)]
pub(crate) struct Exposition {
    snapshot: Arc<Snapshot>,
    openmetrics: OnceLock<Option<Bytes>>,
    prometheus: OnceLock<Option<Bytes>>,
}

impl Exposition {
    /// The exposition of `snapshot`.
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            openmetrics: OnceLock::new(),
            prometheus: OnceLock::new(),
        }
    }

    /// The snapshot.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The body in `format`; `None` if encoding failed (logged).
    pub(crate) fn body(&self, format: Format) -> Option<Bytes> {
        let cell = match format {
            Format::OpenMetrics => &self.openmetrics,
            Format::Prometheus => &self.prometheus,
        };
        cell.get_or_init(|| match encode(Arc::clone(&self.snapshot), format) {
            Ok(text) => Some(Bytes::from(text)),
            Err(err) => {
                tracing::error!(error = %err, "encoding the exposition failed");
                None
            }
        })
        .clone()
    }
}
