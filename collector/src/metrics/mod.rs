//! The `/metrics` exposition: a [`Snapshot`] prepared by each collection, encoded at scrape
//! time by one prometheus-client [`Collector`] (encoding only reads the snapshot; it never
//! blocks on netlink). Both OpenMetrics and the Prometheus text format are produced.

pub mod names;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    ebpf::AttachedMode,
    policy::{Backend, Reason},
};

/// A (rx, tx) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxTx {
    /// Received.
    pub rx: u64,
    /// Transmitted.
    pub tx: u64,
}

/// One interface as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceSnapshot {
    /// Name.
    pub name: String,
    /// Index.
    pub ifindex: u32,
    /// Link kind (empty for physical NICs).
    pub kind: String,
    /// Driver from `GDRVINFO` (empty when ethtool does not answer).
    pub driver: String,
    /// Routed backend.
    pub backend: Backend,
    /// Why.
    pub reason: Reason,
    /// eBPF attach mechanism, for eBPF-routed interfaces.
    pub attach_mode: Option<AttachedMode>,
    /// Packets from the routed backend (`None` for `none`, or when its read failed).
    pub packets: Option<RxTx>,
    /// Bytes from the routed backend.
    pub bytes: Option<RxTx>,
    /// Kernel errors.
    pub errors: RxTx,
    /// Kernel drops.
    pub dropped: RxTx,
    /// Driver statistics after the allowlist, in driver order.
    pub ethtool: Vec<(String, u64)>,
    /// Link speed, bytes per second.
    pub speed_bytes: Option<u64>,
    /// Duplex: full (`true`) or half, where the driver reports it.
    pub full_duplex: Option<bool>,
}

/// Everything `/metrics` shows, prepared by one collection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Interfaces, by ifindex.
    pub interfaces: Vec<InterfaceSnapshot>,
    /// Duration of the last collection per backend, seconds.
    pub collect_duration: BTreeMap<Backend, f64>,
    /// Collection errors per backend since start.
    pub collect_errors: BTreeMap<Backend, u64>,
    /// Failed eBPF attachments since start.
    pub attach_failures: u64,
    /// Re-attachments since start.
    pub reattach: u64,
    /// Packets counted as overflow by the eBPF programs.
    pub map_overflow: u64,
    /// Whether the eBPF backend is loaded.
    pub ebpf_available: bool,
}

/// The prometheus-client collector over the latest [`Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotCollector {
    latest: Arc<Mutex<Arc<Snapshot>>>,
}

impl SnapshotCollector {
    /// Publishes a new snapshot for the next scrape.
    pub fn publish(&self, snapshot: Snapshot) {
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A registry holding only this collector.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry
    }
}

/// Exposition format chosen by content negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4` (the classic Prometheus format).
    Prometheus,
}

impl Format {
    /// Picks the format from an HTTP `Accept` header: OpenMetrics when the client lists it.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    /// The `Content-Type` of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Encodes `registry` in `format`.
///
/// # Errors
///
/// A formatting error from the encoder (not expected for in-memory strings).
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?
        }
    }
    Ok(out)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + Clone>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, N)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn rx_tx(
    iface: &InterfaceSnapshot,
    value: RxTx,
    with_backend: bool,
) -> [(Vec<(&'static str, String)>, u64); 2] {
    let labels = |direction: &str| {
        let mut l = vec![
            ("interface", iface.name.clone()),
            ("direction", direction.to_owned()),
        ];
        if with_backend {
            l.push(("backend", iface.backend.as_str().to_owned()));
        }
        l
    };
    [(labels("rx"), value.rx), (labels("tx"), value.tx)]
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.latest();
        let monitored = || s.interfaces.iter().filter(|i| i.backend != Backend::None);
        gauge(
            &mut encoder,
            names::INTERFACE_INFO,
            "Interface routing: the backend measuring it and why (value is always 1).",
            MetricType::Gauge,
            s.interfaces.iter().map(|i| {
                let labels = vec![
                    ("interface", i.name.clone()),
                    ("ifindex", i.ifindex.to_string()),
                    ("kind", i.kind.clone()),
                    ("driver", i.driver.clone()),
                    ("backend", i.backend.as_str().to_owned()),
                    ("reason", i.reason.as_str().to_owned()),
                ];
                (labels, 1i64)
            }),
        )?;
        counter(
            &mut encoder,
            names::INTERFACE_PACKETS,
            "Packets per interface and direction from the routed backend (eBPF counts for ebpf, kernel link stats otherwise).",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.packets?, true)))
                .flatten(),
        )?;
        counter(
            &mut encoder,
            names::INTERFACE_BYTES,
            "Bytes per interface and direction from the routed backend; eBPF bytes include the (inner) Ethernet header.",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.bytes?, true)))
                .flatten(),
        )?;
        counter(
            &mut encoder,
            names::INTERFACE_ERRORS,
            "Kernel link statistics: errors per interface and direction.",
            monitored().flat_map(|i| rx_tx(i, i.errors, false)),
        )?;
        counter(
            &mut encoder,
            names::INTERFACE_DROPPED,
            "Kernel link statistics: dropped packets per interface and direction.",
            monitored().flat_map(|i| rx_tx(i, i.dropped, false)),
        )?;
        gauge(
            &mut encoder,
            names::ETHTOOL_STAT,
            "Raw ethtool driver statistic (ethtool -S), after the stat allowlist.",
            MetricType::Unknown,
            monitored().flat_map(|i| {
                i.ethtool.iter().map(|(stat, value)| {
                    (
                        vec![("interface", i.name.clone()), ("stat", stat.clone())],
                        *value,
                    )
                })
            }),
        )?;
        gauge(
            &mut encoder,
            names::LINK_SPEED_BYTES,
            "Link speed reported by the driver, in bytes per second.",
            MetricType::Gauge,
            monitored().filter_map(|i| Some((vec![("interface", i.name.clone())], i.speed_bytes?))),
        )?;
        gauge(
            &mut encoder,
            names::LINK_FULL_DUPLEX,
            "1 if the link runs full duplex, 0 if half duplex, where the driver reports it.",
            MetricType::Gauge,
            monitored().filter_map(|i| {
                Some((
                    vec![("interface", i.name.clone())],
                    i64::from(i.full_duplex?),
                ))
            }),
        )?;
        let mut per_backend: BTreeMap<Backend, i64> =
            Backend::ALL.iter().map(|b| (*b, 0)).collect();
        for i in &s.interfaces {
            *per_backend.entry(i.backend).or_default() += 1;
        }
        gauge(
            &mut encoder,
            names::BACKEND_INTERFACES,
            "Number of interfaces routed to each backend.",
            MetricType::Gauge,
            per_backend
                .iter()
                .map(|(b, n)| (vec![("backend", b.as_str().to_owned())], *n)),
        )?;
        gauge(
            &mut encoder,
            names::COLLECT_DURATION_SECONDS,
            "Duration of the last collection per backend, in seconds.",
            MetricType::Gauge,
            s.collect_duration
                .iter()
                .map(|(b, d)| (vec![("backend", b.as_str().to_owned())], *d)),
        )?;
        counter(
            &mut encoder,
            names::COLLECT_ERRORS,
            "Collection errors per backend; a failing backend never fails the scrape.",
            [Backend::Ethtool, Backend::Ebpf, Backend::Netdev]
                .iter()
                .map(|b| {
                    (
                        vec![("backend", b.as_str().to_owned())],
                        s.collect_errors.get(b).copied().unwrap_or(0),
                    )
                }),
        )?;
        let plain = |v: u64| std::iter::once((Vec::new(), v));
        counter(
            &mut encoder,
            names::EBPF_ATTACH_FAILURES,
            "Failed attachments of the eBPF counter to an interface.",
            plain(s.attach_failures),
        )?;
        counter(
            &mut encoder,
            names::EBPF_REATTACH,
            "Re-attachments of the eBPF counter after someone else removed it.",
            plain(s.reattach),
        )?;
        counter(
            &mut encoder,
            names::EBPF_MAP_OVERFLOW,
            "Packets not counted per interface because the eBPF counter map was full (raise max_interfaces).",
            plain(s.map_overflow),
        )?;
        gauge(
            &mut encoder,
            names::EBPF_AVAILABLE,
            "1 if the eBPF backend is loaded, 0 if interfaces fall back to kernel link stats.",
            MetricType::Gauge,
            std::iter::once((Vec::new(), i64::from(s.ebpf_available))),
        )?;
        gauge(
            &mut encoder,
            names::BUILD_INFO,
            "linkmeter build information (value is always 1).",
            MetricType::Gauge,
            std::iter::once((
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                1i64,
            )),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
