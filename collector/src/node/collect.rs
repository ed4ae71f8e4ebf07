//! Collecting: every backend reads its numbers for the interfaces routed to it into one
//! [`Snapshot`]. Only reads — a scrape never probes, routes or attaches; an interface the node
//! has not routed yet appears after its link event or the next resync.

use super::{Interface, Measure, Node, ResyncReason};
use crate::{
    backend::{
        ebpf::{Attachment, TcCounter},
        ethtool::EthtoolIo,
        execute,
    },
    discovery::Links,
    metrics::{InterfaceSnapshot, Snapshot},
};

impl<I: EthtoolIo, E: TcCounter, L: Links> Node<I, E, L> {
    /// Collects every backend (kernel link stats, then driver statistics, then the eBPF
    /// counters) and returns what `/metrics` shows. A failing backend is counted and leaves
    /// out its series; it never fails the whole collection.
    pub(crate) async fn collect(&mut self) -> Snapshot {
        let mut out = Snapshot {
            interfaces: self.interfaces.values().map(routing).collect(),
            map_overflow: self.stats.map_overflow,
            ..Snapshot::default()
        };
        let stats = &mut self.stats.collect;
        execute(stats, &mut self.netdev, &mut self.interfaces, &mut out).await;
        // Let the server take in scrapes that arrived meanwhile: they share this collection.
        tokio::task::yield_now().await;
        execute(stats, &mut self.ethtool, &mut self.interfaces, &mut out).await;
        tokio::task::yield_now().await;
        if let Some(ebpf) = self.ebpf.as_mut() {
            execute(stats, ebpf, &mut self.interfaces, &mut out).await;
        }
        self.stats.map_overflow = out.map_overflow;
        out.collect = self.stats.collect.clone();
        out.attach_failures = self.stats.attach_failures;
        out.reattach = self.stats.reattach;
        out.netlink_resyncs = ResyncReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.stats.netlink_resyncs[*r as usize]))
            .collect();
        out.ebpf_available = self.ebpf.is_some();
        out
    }
}

/// An interface's routing, as exported, before any backend has read its numbers.
fn routing<A: Attachment>(interface: &Interface<A>) -> InterfaceSnapshot {
    InterfaceSnapshot {
        name: interface.link.name.clone(),
        ifindex: interface.link.ifindex,
        kind: interface.link.kind.clone().unwrap_or_default(),
        driver: interface.driver.clone().unwrap_or_default(),
        backend: interface.measure.backend(),
        reason: interface.reason,
        attach_mode: match (&interface.measure, &interface.breakdown) {
            (Measure::Ebpf(attachment), _) | (_, Some(attachment)) => attachment.mode(),
            _ => None,
        },
        kernel: None,
        ebpf: None,
        ethtool: Vec::new(),
        speed_bytes: interface
            .link_mode
            .map(|m| u64::from(m.speed_mbps) * 1_000_000 / 8),
        full_duplex: interface.link_mode.and_then(|m| m.full_duplex),
    }
}
