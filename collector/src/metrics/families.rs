//! The metric families of one [`Snapshot`], as a prometheus-client [`Collector`]. Encoding only
//! reads the snapshot; label values borrow from it.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::MetricType};

use super::{
    InterfaceSnapshot, Snapshot,
    family::{Result, counter, gauge},
    names,
};
use crate::{discovery::RxTx, policy::Backend};

/// The collector over one snapshot.
#[derive(Debug)]
pub(super) struct Families(pub(super) Arc<Snapshot>, pub(super) super::View);

/// The rx and tx samples of `value`, labelled with the interface, the direction and (when
/// `with_backend`) the backend.
fn rx_tx(
    iface: &InterfaceSnapshot,
    value: RxTx,
    with_backend: bool,
) -> [(Vec<(&'static str, &str)>, u64); 2] {
    let labels = |direction| {
        let mut l = vec![("interface", iface.name.as_str()), ("direction", direction)];
        if with_backend {
            l.push(("backend", iface.backend.as_str()));
        }
        l
    };
    [(labels("rx"), value.rx), (labels("tx"), value.tx)]
}

fn interface_label(iface: &InterfaceSnapshot) -> [(&'static str, &str); 1] {
    [("interface", iface.name.as_str())]
}

impl Families {
    /// `linkmeter_interface_info`: the routing of every interface, `none` included.
    fn routing(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.0;
        gauge(
            encoder,
            names::INTERFACE_INFO,
            "Interface routing: the backend measuring it and why (value is always 1).",
            MetricType::Gauge,
            s.interfaces.iter().map(|i| {
                let labels: [(&str, Cow<'_, str>); 6] = [
                    ("interface", Cow::Borrowed(i.name.as_str())),
                    ("ifindex", Cow::Owned(i.ifindex.to_string())),
                    ("kind", Cow::Borrowed(i.kind.as_str())),
                    ("driver", Cow::Borrowed(i.driver.as_str())),
                    ("backend", Cow::Borrowed(i.backend.as_str())),
                    ("reason", Cow::Borrowed(i.reason.as_str())),
                ];
                (labels, 1i64)
            }),
        )
    }

    /// The per-interface counters and gauges of monitored interfaces.
    fn interfaces(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.0;
        let monitored = || s.interfaces.iter().filter(|i| i.monitored());
        counter(
            encoder,
            names::INTERFACE_PACKETS,
            "Packets per interface and direction from the routed backend (eBPF counts for ebpf, kernel link stats otherwise).",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.packets()?, true)))
                .flatten(),
        )?;
        counter(
            encoder,
            names::INTERFACE_BYTES,
            "Bytes per interface and direction from the routed backend; eBPF bytes include the (inner) Ethernet header.",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.bytes()?, true)))
                .flatten(),
        )?;
        counter(
            encoder,
            names::INTERFACE_ERRORS,
            "Kernel link statistics: errors per interface and direction.",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.kernel?.errors(), false)))
                .flatten(),
        )?;
        counter(
            encoder,
            names::INTERFACE_DROPPED,
            "Kernel link statistics: dropped packets per interface and direction.",
            monitored()
                .filter_map(|i| Some(rx_tx(i, i.kernel?.dropped(), false)))
                .flatten(),
        )?;
        counter(
            encoder,
            names::INTERFACE_DROPS,
            "Packets the kernel dropped (kfree_skb) per interface and drop reason, as the running kernel names it; counted since the daemon started.",
            s.drops.iter().map(|d| {
                (
                    [
                        ("interface", d.interface.as_str()),
                        ("reason", d.reason.as_str()),
                    ],
                    d.packets,
                )
            }),
        )?;
        gauge(
            encoder,
            names::ETHTOOL_STAT,
            "Raw ethtool driver statistic (ethtool -S), after the stat allowlist.",
            MetricType::Unknown,
            monitored().flat_map(|i| {
                i.ethtool.iter().map(|(stat, value)| {
                    (
                        [("interface", i.name.as_str()), ("stat", stat.as_str())],
                        *value,
                    )
                })
            }),
        )?;
        gauge(
            encoder,
            names::LINK_SPEED_BYTES,
            "Link speed reported by the driver, in bytes per second.",
            MetricType::Gauge,
            monitored().filter_map(|i| Some((interface_label(i), i.speed_bytes?))),
        )?;
        gauge(
            encoder,
            names::LINK_FULL_DUPLEX,
            "1 if the link runs full duplex, 0 if half duplex, where the driver reports it.",
            MetricType::Gauge,
            monitored().filter_map(|i| Some((interface_label(i), i64::from(i.full_duplex?)))),
        )
    }

    fn self_metrics(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.0;
        let mut per_backend: BTreeMap<Backend, i64> =
            Backend::ALL.iter().map(|b| (*b, 0)).collect();
        for i in &s.interfaces {
            *per_backend.entry(i.backend).or_default() += 1;
        }
        let backend_label = |b: &Backend| [("backend", b.as_str())];
        gauge(
            encoder,
            names::BACKEND_INTERFACES,
            "Number of interfaces routed to each backend.",
            MetricType::Gauge,
            per_backend.iter().map(|(b, n)| (backend_label(b), *n)),
        )?;
        gauge(
            encoder,
            names::COLLECT_DURATION_SECONDS,
            "Duration of the last collection per backend, in seconds.",
            MetricType::Gauge,
            s.collect
                .duration
                .iter()
                .map(|(b, d)| (backend_label(b), *d)),
        )?;
        counter(
            encoder,
            names::COLLECT_ERRORS,
            "Collection errors per backend; a failing backend never fails the scrape.",
            [Backend::Ethtool, Backend::Ebpf, Backend::Netdev]
                .iter()
                .map(|b| {
                    let errors = s.collect.errors.get(b).copied().unwrap_or(0);
                    (backend_label(b), errors)
                }),
        )?;
        self.ebpf_metrics(encoder)?;
        counter(
            encoder,
            names::NETLINK_RESYNCS,
            "Full link resyncs outside the periodic one: link events lost to a socket overrun (reason=events_lost), the event subscription lost and opened again (reason=resubscribed).",
            s.netlink_resyncs
                .iter()
                .map(|(reason, n)| ([("reason", *reason)], *n)),
        )?;
        gauge(
            encoder,
            names::BUILD_INFO,
            "linkmeter build information (value is always 1).",
            MetricType::Gauge,
            std::iter::once(([("version", env!("CARGO_PKG_VERSION"))], 1i64)),
        )
    }

    /// The eBPF backend's own health: attachments, map overflow and memory, availability.
    fn ebpf_metrics(&self, encoder: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.0;
        let plain = |v: u64| std::iter::once(([] as [(&str, &str); 0], v));
        counter(
            encoder,
            names::EBPF_ATTACH_FAILURES,
            "Failed attachments of the eBPF counter to an interface.",
            plain(s.attach_failures),
        )?;
        counter(
            encoder,
            names::EBPF_REATTACH,
            "Re-attachments of the eBPF counter after someone else removed it.",
            plain(s.reattach),
        )?;
        counter(
            encoder,
            names::EBPF_REANCHOR,
            "Moves of the eBPF counter back to the head of a hook's chain after another program was placed before it.",
            plain(s.reanchor),
        )?;
        gauge(
            encoder,
            names::EBPF_PROGRAMS_BEFORE,
            "Programs that run before the eBPF counter on the interface's hook (direction rx: ingress, tx: egress) at the last check, after moving it back to the head; 0 when first. Not 0: one of them may redirect, drop or end the chain and hide packets from the counts.",
            MetricType::Gauge,
            s.interfaces
                .iter()
                .filter_map(|i| {
                    let [ingress, egress] = i.programs_before?;
                    let value = RxTx {
                        rx: u64::from(ingress),
                        tx: u64::from(egress),
                    };
                    Some(rx_tx(i, value, false))
                })
                .flatten(),
        )?;
        counter(
            encoder,
            names::EBPF_MAP_OVERFLOW,
            "Packets the eBPF programs could not count in their map: of an interface without an entry in the directory (map=directory: more interfaces than max_interfaces), of a peer that did not fit into the peer map (map=peers; raise max_peers), of a drop whose interface and reason did not fit into the drop map (map=drops).",
            [
                ("directory", Some(s.map_overflow.interfaces)),
                ("peers", Some(s.map_overflow.peers)),
                ("drops", s.map_overflow.drops),
            ]
            .into_iter()
            .filter_map(|(map, packets)| Some(([("map", map)], packets?))),
        )?;
        gauge(
            encoder,
            names::EBPF_SLOTS,
            "Interface slots of the eBPF maps (max_interfaces): used by attached interfaces, or free. An interface that finds none falls back to kernel link stats (reason ebpf_map_full).",
            MetricType::Gauge,
            s.slots
                .iter()
                .flat_map(|&(used, free)| [("used", used), ("free", free)])
                .map(|(state, n)| ([("state", state)], n)),
        )?;
        gauge(
            encoder,
            names::EBPF_MAP_BYTES,
            "Kernel memory of each eBPF map, in bytes, as the kernel accounts it (fdinfo memlock).",
            MetricType::Gauge,
            s.map_bytes
                .iter()
                .map(|(map, bytes)| ([("map", *map)], *bytes)),
        )?;
        gauge(
            encoder,
            names::EBPF_AVAILABLE,
            "1 if the eBPF backend is loaded, 0 if interfaces fall back to kernel link stats.",
            MetricType::Gauge,
            std::iter::once(([] as [(&str, &str); 0], i64::from(s.ebpf_available))),
        )?;
        gauge(
            encoder,
            names::DROP_REASONS_AVAILABLE,
            "1 if drops are counted per interface and kernel drop reason (linkmeter_interface_drops_total), 0 if not: turned off, or the kernel lacks what it needs (`linkmeter check` says why).",
            MetricType::Gauge,
            std::iter::once(([] as [(&str, &str); 0], i64::from(s.drop_reasons))),
        )
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result {
        if self.1 == super::View::Peers {
            return super::breakdown::peers(&self.0, &mut encoder);
        }
        self.routing(&mut encoder)?;
        self.interfaces(&mut encoder)?;
        super::breakdown::encode(&self.0, &mut encoder)?;
        self.self_metrics(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_labels_name_interface_direction_and_backend() {
        let iface = InterfaceSnapshot {
            name: "eth0".into(),
            ifindex: 2,
            kind: String::new(),
            driver: String::new(),
            backend: Backend::Netdev,
            reason: crate::policy::Reason::EthtoolError,
            attach_mode: None,
            programs_before: None,
            kernel: None,
            ebpf: None,
            ethtool: Vec::new(),
            speed_bytes: None,
            full_duplex: None,
        };
        let [(rx, 1), (tx, 2)] = rx_tx(&iface, RxTx { rx: 1, tx: 2 }, true) else {
            panic!("two samples");
        };
        let expected: [(&str, &str); 3] = [
            ("interface", "eth0"),
            ("direction", "rx"),
            ("backend", "netdev"),
        ];
        assert_eq!(rx, expected.to_vec());
        assert_eq!(tx[1], ("direction", "tx"));
    }
}
