//! Collecting: every backend's numbers for the interfaces routed to it, read into one
//! [`Snapshot`]. Only reads — a scrape never probes, routes or attaches; an interface the node
//! has not routed yet appears after its link event (or the next resync) and its attach.
//!
//! Each backend's part goes through [`execute`], the one place that records
//! `linkmeter_collect_duration_seconds` and `linkmeter_collect_errors_total` (node_exporter's
//! `execute()`): a failing backend is counted and leaves out its series, never the whole
//! collection.

use std::{future::Future, time::Instant};

use tracing::warn;

use super::{Interface, Interfaces, Measure, Node, ResyncReason};
use crate::{
    Report,
    backend::{
        drops::DropCounter,
        ebpf::{MapReadError, Peer, TcCounter},
        ethtool::{DriverStats, Ethtool, EthtoolError, EthtoolIo},
    },
    discovery::{DiscoveryError, Links},
    metrics::{CollectStats, DropSnapshot, InterfaceSnapshot, MapOverflow, PeerSnapshot, Snapshot},
    policy::Backend,
    zones::{Overlay, ZoneCount, ZoneTable, ZoneTotals},
};

/// Why a backend's part of a collection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    /// The kernel link statistics dump failed.
    #[error(transparent)]
    Netdev(#[from] DiscoveryError),
    /// Reading one interface's driver statistics failed.
    #[error(transparent)]
    Ethtool(#[from] EthtoolError),
    /// Reading the eBPF counters failed.
    #[error(transparent)]
    Ebpf(#[from] MapReadError),
    /// Reading the drop counts failed.
    #[error("reading the drop counts")]
    Drops(#[source] aya::maps::MapError),
}

impl CollectError {
    /// Whether the interface vanished during the collection: counted, but not worth a log
    /// line (its link event follows).
    fn is_vanished(&self) -> bool {
        matches!(self, Self::Ethtool(e) if e.errno() == Some(libc::ENODEV))
    }
}

/// Runs `backend`'s part of a collection, records how long it took and counts (and logs) its
/// failures.
async fn execute(
    stats: &mut CollectStats,
    backend: Backend,
    collection: impl Future<Output = Vec<CollectError>>,
) {
    let started = Instant::now();
    let failures = collection.await;
    stats
        .duration
        .insert(backend, started.elapsed().as_secs_f64());
    *stats.errors.entry(backend).or_default() += failures.len() as u64;
    for failure in failures.iter().filter(|f| !f.is_vanished()) {
        warn!(backend = %backend, error = %Report(failure),
            "collection failed; its series are left out of this scrape");
    }
}

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// Collects every backend (kernel link stats, then driver statistics, then the eBPF
    /// counters) and returns what `/metrics` shows.
    pub(crate) async fn collect(&mut self) -> Snapshot {
        let mut out = Snapshot {
            interfaces: self.interfaces.values().map(routing).collect(),
            map_overflow: self.stats.map_overflow,
            ..Snapshot::default()
        };
        let Self {
            settings,
            ethtool,
            ebpf,
            drops,
            links,
            interfaces,
            stats,
            zone_totals,
            ..
        } = self;
        let allowlist = &settings.ethtool_stats_allowlist;
        execute(
            &mut stats.collect,
            Backend::Netdev,
            kernel_stats(links, &mut out),
        )
        .await;
        // Let the server take in scrapes that arrived meanwhile: they share this collection.
        tokio::task::yield_now().await;
        let driver = driver_stats(ethtool, interfaces, allowlist, &mut out);
        execute(&mut stats.collect, Backend::Ethtool, driver).await;
        tokio::task::yield_now().await;
        if ebpf.is_some() || drops.is_some() {
            let ebpf_part = async {
                let mut failures = Vec::new();
                if let Some(ebpf) = ebpf.as_mut() {
                    let overlay = (&settings.overlay, zone_totals);
                    failures = ebpf_counts(ebpf, interfaces, overlay, &mut out).await;
                }
                if let Some(drops) = drops.as_mut() {
                    failures.extend(drop_counts(drops.as_mut(), &mut out));
                }
                failures
            };
            execute(&mut stats.collect, Backend::Ebpf, ebpf_part).await;
        }
        self.stats.map_overflow = out.map_overflow;
        out.collect = self.stats.collect.clone();
        out.attach_failures = self.stats.attach_failures;
        out.reattach = self.stats.reattach;
        out.reanchor = self.stats.reanchor;
        out.netlink_resyncs = ResyncReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.stats.netlink_resyncs[*r as usize]))
            .collect();
        out.ebpf_available = self.ebpf.is_some();
        out.drop_reasons = self.drops.is_some();
        out.overlay_series = self.settings.overlay.series;
        out.node_zone.clone_from(&self.settings.overlay.node_zone);
        out
    }
}

/// Kernel link statistics: one dump; every interface of `out` present in it gets its
/// statistics. One the dump does not show (deleted a moment ago) is left without them; links
/// the node has not routed yet are ignored.
async fn kernel_stats<L: Links>(links: &L, out: &mut Snapshot) -> Vec<CollectError> {
    match links.dump().await {
        Ok(links) => {
            for facts in links {
                if let Some(interface) = out.interface_mut(facts.link.ifindex) {
                    interface.kernel = facts.stats;
                }
            }
            Vec::new()
        }
        Err(err) => vec![err.into()],
    }
}

/// Interfaces read between two yields to the runtime.
const YIELD_EVERY: usize = 128;

/// Driver statistics: one `GSTATS` per ethtool-routed interface with statistics. When the
/// driver's count moved the values are refused, the names read again for the next scrape, and
/// the interface's raw statistics are left out of this one.
async fn driver_stats<I: EthtoolIo>(
    ethtool: &Ethtool<I>,
    interfaces: &mut Interfaces,
    allowlist: &regex::Regex,
    out: &mut Snapshot,
) -> Vec<CollectError> {
    let mut failures = Vec::new();
    for (n, (ifindex, interface)) in interfaces.iter_mut().enumerate() {
        if n % YIELD_EVERY == YIELD_EVERY - 1 {
            // One ioctl per interface adds up: let the server take in scrapes meanwhile.
            tokio::task::yield_now().await;
        }
        let Measure::Ethtool(stats) = &mut interface.measure else {
            continue;
        };
        if stats.count() == 0 {
            continue;
        }
        let name = &interface.link.name;
        match ethtool.read_driver_stats(name, stats) {
            Ok(exported) => {
                if let Some(shown) = out.interface_mut(*ifindex) {
                    shown.ethtool = exported;
                }
            }
            Err(err) => {
                if err.count_changed()
                    && let Ok(names) = ethtool.names(name)
                {
                    *stats = DriverStats::new(names, allowlist);
                }
                failures.push(err.into());
            }
        }
    }
    failures
}

/// The eBPF counters of every interface the counter is attached to (routed to eBPF, or with
/// the breakdown), the peers, the overflow counters and the maps' kernel memory.
async fn ebpf_counts<E: TcCounter>(
    ebpf: &mut E,
    interfaces: &Interfaces,
    (overlay, zone_totals): (&Overlay, &mut ZoneTotals),
    out: &mut Snapshot,
) -> Vec<CollectError> {
    ebpf.flush_logs();
    let mut failures = Vec::new();
    match ebpf.read_all() {
        Ok(all) => {
            let counted = interfaces.values().filter(|i| i.counted_by_ebpf());
            for interface in counted {
                let ifindex = interface.link.ifindex;
                if let Some(shown) = out.interface_mut(ifindex) {
                    shown.ebpf = all.get(&ifindex).copied();
                }
            }
        }
        Err(err) => failures.push(err.into()),
    }
    match ebpf.observe_peers() {
        Ok(peers) => {
            out.peers = peer_snapshots(&peers, out, &overlay.zones);
            // Only from a complete reading: a peer missing from a failed one has not left. Not
            // at all without a zone table or zone series (nothing would show them).
            if !overlay.zones.is_empty() || overlay.series.zones() {
                out.zones = zone_counts(&peers, out, &overlay.zones, zone_totals);
            }
        }
        Err(err) => failures.push(err.into()),
    }
    match ebpf.overflow() {
        Ok(overflow) => {
            out.map_overflow = MapOverflow {
                interfaces: overflow.interfaces.packets,
                peers: overflow.peers.packets,
                drops: out.map_overflow.drops,
            };
        }
        Err(err) => failures.push(err.into()),
    }
    out.map_bytes = ebpf
        .map_bytes()
        .into_iter()
        .filter_map(|(map, bytes)| Some((map, bytes?)))
        .collect();
    out.slots = ebpf.slot_usage();
    failures
}

/// Drops by interface and reason, for the monitored interfaces of `out` (a drop map entry of an
/// interface being removed, or not routed yet, is not shown).
fn drop_counts(drops: &mut dyn DropCounter, out: &mut Snapshot) -> Vec<CollectError> {
    out.map_bytes.extend(drops.map_bytes());
    match drops.read() {
        Ok(reading) => {
            out.map_overflow.drops = Some(reading.overflow);
            out.drops = reading
                .drops
                .into_iter()
                .filter_map(|d| {
                    let at = out
                        .interfaces
                        .binary_search_by_key(&d.ifindex, |i| i.ifindex)
                        .ok()?;
                    let interface = out.interfaces.get(at).filter(|i| i.monitored())?;
                    Some(DropSnapshot {
                        interface: interface.name.clone(),
                        reason: d.reason,
                        packets: d.packets,
                    })
                })
                .collect();
            Vec::new()
        }
        Err(source) => vec![CollectError::Drops(source)],
    }
}

/// The exported form of `peers` of the interfaces in `out`, with their zones when there is a
/// zone table (peers of interfaces the snapshot does not show, being deleted, are left out).
fn peer_snapshots(peers: &[Peer], out: &Snapshot, zones: &ZoneTable) -> Vec<PeerSnapshot> {
    let mut shown: Vec<PeerSnapshot> = peers
        .iter()
        .filter_map(|peer| {
            let interface = out
                .interfaces
                .binary_search_by_key(&peer.ifindex, |i| i.ifindex)
                .ok()
                .and_then(|at| out.interfaces.get(at))?;
            Some(PeerSnapshot {
                zone: (!zones.is_empty()).then(|| zones.label(peer.endpoint).to_owned()),
                interface: interface.name.clone(),
                direction: peer.direction,
                peer: peer
                    .endpoint
                    .map_or_else(|| "none".to_owned(), |ip| ip.to_string()),
                packets: peer.counter.packets,
                bytes: peer.counter.bytes,
            })
        })
        .collect();
    shown.sort_by(|a, b| {
        (&a.interface, a.direction, &a.peer).cmp(&(&b.interface, b.direction, &b.peer))
    });
    shown
}

/// The zones' counts of `peers` of the interfaces in `out` (see [`ZoneTotals`]).
fn zone_counts(
    peers: &[Peer],
    out: &Snapshot,
    table: &ZoneTable,
    totals: &mut ZoneTotals,
) -> Vec<ZoneCount> {
    let device = |ifindex: u32| {
        out.interfaces
            .binary_search_by_key(&ifindex, |i| i.ifindex)
            .ok()
            .and_then(|at| out.interfaces.get(at))
            .map(|i| (i.name.as_str(), i.ifindex))
    };
    let devices: std::collections::BTreeSet<(&str, u32)> = out
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.ifindex))
        .collect();
    let readings = peers.iter().filter_map(|peer| {
        Some((
            device(peer.ifindex)?,
            peer.direction,
            peer.endpoint,
            peer.counter,
        ))
    });
    totals.update(table, readings, &devices)
}

/// An interface's routing, as exported, before any backend has read its numbers.
fn routing(interface: &Interface) -> InterfaceSnapshot {
    InterfaceSnapshot {
        name: interface.link.name.clone(),
        ifindex: interface.link.ifindex,
        kind: interface.link.kind.clone().unwrap_or_default(),
        driver: interface.driver.clone().unwrap_or_default(),
        backend: interface.measure.backend(),
        reason: interface.reason,
        attach_mode: interface.attachments().find_map(|a| a.mode),
        programs_before: interface
            .attachments()
            .find_map(|a| a.placed)
            .map(|placed| placed.map(|p| p.ahead)),
        kernel: None,
        ebpf: None,
        ethtool: Vec::new(),
        speed_bytes: interface
            .link_mode
            .map(|m| u64::from(m.speed_mbps) * 1_000_000 / 8),
        full_duplex: interface.link_mode.and_then(|m| m.full_duplex),
    }
}
