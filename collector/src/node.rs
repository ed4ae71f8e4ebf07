//! The node's interfaces and their routing: applies link facts from discovery, probes each new
//! interface once per lifetime, attaches or detaches the eBPF counter, collects every backend
//! and prepares the [`Snapshot`] that `/metrics` shows.
//!
//! Everything here is synchronous and quick (ioctls, BPF map reads, attach); the async netlink
//! dumps happen before calling in.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

use tracing::{info, warn};

use crate::{
    backend::{
        ethtool::{Ethtool, EthtoolError, EthtoolIo, LinkMode, Probe},
        netdev::LinkStats,
    },
    config::Config,
    discovery::LinkFacts,
    ebpf::{AttachedMode, EbpfCounters, InterfaceAttachment, InterfaceCounters},
    metrics::{InterfaceSnapshot, RxTx, Snapshot},
    policy::{self, Backend, Reason, Route},
};

/// One interface during its lifetime (an ifindex with a name).
#[derive(Debug)]
struct Interface {
    facts: LinkFacts,
    route: Route,
    driver: Option<String>,
    /// Driver stat names (ethtool-routed interfaces).
    stat_names: Vec<String>,
    /// Indices into `stat_names` that pass the allowlist.
    stat_allowed: Vec<usize>,
    stat_values: Vec<u64>,
    attachment: Option<InterfaceAttachment>,
    ebpf: Option<InterfaceCounters>,
    link_mode: Option<LinkMode>,
}

/// Counters about linkmeter itself.
#[derive(Debug, Default)]
struct SelfStats {
    collect_errors: BTreeMap<Backend, u64>,
    collect_duration: BTreeMap<Backend, f64>,
    attach_failures: u64,
    reattach: u64,
    map_overflow: u64,
}

/// The interfaces of this node and the backends measuring them.
pub struct Node<I> {
    config: Config,
    ethtool: Ethtool<I>,
    ebpf: Option<EbpfCounters>,
    /// Whether eBPF can be used here; may be true without `ebpf` for a dry run (`list`).
    ebpf_available: bool,
    interfaces: BTreeMap<u32, Interface>,
    /// Names already reported (once) as lacking ethtool statistics.
    warned: HashSet<String>,
    stats: SelfStats,
}

impl<I> std::fmt::Debug for Node<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("interfaces", &self.interfaces.len())
            .finish_non_exhaustive()
    }
}

impl<I: EthtoolIo> Node<I> {
    /// A node with no interfaces yet. `ebpf` is `None` when the eBPF backend is unavailable.
    pub fn new(config: Config, ethtool: Ethtool<I>, ebpf: Option<EbpfCounters>) -> Self {
        Self {
            config,
            ethtool,
            ebpf_available: ebpf.is_some(),
            ebpf,
            interfaces: BTreeMap::new(),
            warned: HashSet::new(),
            stats: SelfStats::default(),
        }
    }

    /// A node that routes as if eBPF were usable (`available`) but attaches nothing: for
    /// `linkmeter list` without `--attach`. Its eBPF-routed interfaces show no counts.
    pub fn dry_run(config: Config, ethtool: Ethtool<I>, available: bool) -> Self {
        Self {
            ebpf_available: available,
            ..Self::new(config, ethtool, None)
        }
    }

    /// Whether the eBPF backend is usable.
    pub const fn ebpf_available(&self) -> bool {
        self.ebpf_available
    }

    /// Applies one link's facts: routes (and attaches) a new interface, updates a known one.
    /// A known ifindex under a new name is treated as a new interface lifetime.
    pub fn upsert(&mut self, facts: LinkFacts) {
        if let Some(known) = self.interfaces.get_mut(&facts.ifindex) {
            if known.facts.name == facts.name {
                known.facts = facts;
                return;
            }
            self.remove(facts.ifindex);
        }
        let interface = self.route_new(facts);
        self.interfaces.insert(interface.facts.ifindex, interface);
    }

    /// Forgets a deleted interface: detaches, frees its map entries, drops its series.
    pub fn remove(&mut self, ifindex: u32) {
        let Some(interface) = self.interfaces.remove(&ifindex) else {
            return;
        };
        if let Some(attachment) = interface.attachment {
            // The kernel removed the attachment with the device; this only releases our side.
            drop(attachment);
        }
        if let Some(ebpf) = self.ebpf.as_mut()
            && let Err(err) = ebpf.forget(ifindex)
        {
            warn!(interface = %interface.facts.name, error = %err, "freeing eBPF map entries");
        }
        info!(interface = %interface.facts.name, ifindex, "interface removed");
    }

    /// Applies a full dump: upserts every link and removes the ones that are gone.
    pub fn sync(&mut self, links: Vec<LinkFacts>) {
        let present: HashSet<u32> = links.iter().map(|l| l.ifindex).collect();
        let gone: Vec<u32> = self
            .interfaces
            .keys()
            .filter(|i| !present.contains(i))
            .copied()
            .collect();
        for ifindex in gone {
            self.remove(ifindex);
        }
        for link in links {
            self.upsert(link);
        }
    }

    /// Updates link speeds from an ethtool link-mode dump (keyed by name).
    pub fn set_link_modes(&mut self, modes: &HashMap<String, LinkMode>) {
        for interface in self.interfaces.values_mut() {
            interface.link_mode = modes.get(&interface.facts.name).copied();
        }
    }

    /// Re-attaches the eBPF counter where someone removed it. `legacy_present` answers, for a
    /// legacy tc attachment, whether our filters are still on both hooks (checked over netlink
    /// by the caller); TCX attachments are checked here. Returns how many were re-attached.
    pub fn repair_attachments(&mut self, legacy_present: impl Fn(u32) -> bool) -> u64 {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return 0;
        };
        let mut repaired = 0;
        for interface in self.interfaces.values_mut() {
            let Some(attachment) = interface.attachment.as_ref() else {
                continue;
            };
            let present = match attachment.mode() {
                AttachedMode::Tcx => ebpf.tcx_attached(attachment).unwrap_or(true),
                AttachedMode::Tc => legacy_present(interface.facts.ifindex),
            };
            if present {
                continue;
            }
            warn!(interface = %interface.facts.name, mode = %attachment.mode(),
                "eBPF counter was removed from the interface by someone else; re-attaching");
            // Release what is left of ours before attaching again.
            drop(interface.attachment.take());
            match ebpf.attach(&interface.facts.name, self.config.attach_mode) {
                Ok(attachment) => {
                    interface.attachment = Some(attachment);
                    repaired += 1;
                }
                Err(err) => {
                    warn!(interface = %interface.facts.name, error = %err, "re-attaching failed; using kernel link stats");
                    self.stats.attach_failures += 1;
                    interface.route = Route {
                        backend: Backend::Netdev,
                        reason: Reason::EbpfAttachFailed,
                    };
                }
            }
        }
        self.stats.reattach += repaired;
        repaired
    }

    fn route_new(&mut self, facts: LinkFacts) -> Interface {
        let mut probe = None;
        let ethtool = &self.ethtool;
        let route = policy::route(
            &self.config.policy,
            &facts.name,
            facts.kind.as_deref(),
            self.ebpf_available,
            || probe.insert(ethtool.probe(&facts.name)).clone(),
        );
        let mut interface = Interface {
            driver: probe.as_ref().and_then(|p| p.driver().map(str::to_owned)),
            route,
            stat_names: Vec::new(),
            stat_allowed: Vec::new(),
            stat_values: Vec::new(),
            attachment: None,
            ebpf: None,
            link_mode: None,
            facts,
        };
        if let Some(Probe::Stats { names, .. }) = probe.as_ref() {
            set_stat_names(
                &self.config.ethtool_stats_allowlist,
                &mut interface,
                names.clone(),
            );
        }
        if interface.route.backend == Backend::Ebpf {
            self.attach(&mut interface);
        }
        self.warn_once_without_ethtool(&interface, probe.as_ref());
        info!(interface = %interface.facts.name, ifindex = interface.facts.ifindex,
            kind = interface.facts.kind.as_deref().unwrap_or(""),
            backend = %interface.route.backend, reason = %interface.route.reason, "interface routed");
        interface
    }

    fn attach(&mut self, interface: &mut Interface) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        match ebpf.attach(&interface.facts.name, self.config.attach_mode) {
            Ok(attachment) => interface.attachment = Some(attachment),
            Err(err) => {
                self.stats.attach_failures += 1;
                warn!(interface = %interface.facts.name, error = %err,
                    "attaching the eBPF counter failed; using kernel link stats");
                interface.route = Route {
                    backend: Backend::Netdev,
                    reason: Reason::EbpfAttachFailed,
                };
            }
        }
    }

    /// One WARN per interface name for the lifetime of the daemon: never an ERROR, and nothing
    /// on later cycles.
    fn warn_once_without_ethtool(&mut self, interface: &Interface, probe: Option<&Probe>) {
        let detail = match probe {
            Some(Probe::Unsupported { errno }) => format!("errno {errno} ({})", errno_name(*errno)),
            Some(Probe::NoStats { driver }) => format!("driver {driver} exports no statistics"),
            _ => return,
        };
        if self.warned.insert(interface.facts.name.clone()) {
            warn!(interface = %interface.facts.name, backend = %interface.route.backend,
                reason = %interface.route.reason,
                "interface has no ethtool statistics ({detail}); measuring it with the {} backend instead",
                interface.route.backend);
        }
    }

    /// Collects every backend for the known interfaces and returns the snapshot to publish.
    /// A failing backend is counted in `collect_errors` and leaves its series out; it never
    /// fails the whole collection.
    pub fn collect(&mut self) -> Snapshot {
        let started = Instant::now();
        self.collect_ethtool();
        let ethtool_done = Instant::now();
        self.collect_ebpf();
        let ebpf_done = Instant::now();
        self.stats
            .collect_duration
            .insert(Backend::Ethtool, (ethtool_done - started).as_secs_f64());
        self.stats
            .collect_duration
            .insert(Backend::Ebpf, (ebpf_done - ethtool_done).as_secs_f64());
        if let Some(ebpf) = self.ebpf.as_mut() {
            ebpf.flush_logs();
        }
        self.snapshot()
    }

    /// Records how long the kernel link stats dump took (it happens before [`Node::collect`]).
    pub fn record_netdev_collection(&mut self, seconds: f64, failed: bool) {
        self.stats.collect_duration.insert(Backend::Netdev, seconds);
        if failed {
            *self
                .stats
                .collect_errors
                .entry(Backend::Netdev)
                .or_default() += 1;
        }
    }

    fn collect_ethtool(&mut self) {
        let allow = &self.config.ethtool_stats_allowlist;
        for interface in self.interfaces.values_mut() {
            if interface.route.backend != Backend::Ethtool || interface.stat_names.is_empty() {
                continue;
            }
            let name = &interface.facts.name;
            match self.ethtool.values(name, interface.stat_names.len()) {
                Ok(values) => interface.stat_values = values,
                Err(err) => {
                    *self
                        .stats
                        .collect_errors
                        .entry(Backend::Ethtool)
                        .or_default() += 1;
                    if err.errno() != Some(libc::ENODEV) {
                        warn!(interface = %name, error = %err, "reading ethtool stats");
                    }
                    interface.stat_values.clear();
                    // The driver's stat count moved: its names are stale too.
                    if matches!(err, EthtoolError::CountChanged { .. })
                        && let Ok(names) = self.ethtool.names(name)
                    {
                        set_stat_names(allow, interface, names);
                    }
                }
            }
        }
    }

    fn collect_ebpf(&mut self) {
        let Some(ebpf) = self.ebpf.as_ref() else {
            return;
        };
        match ebpf.read_all() {
            Ok(all) => {
                for (ifindex, interface) in &mut self.interfaces {
                    interface.ebpf = if interface.attachment.is_some() {
                        Some(all.get(ifindex).copied().unwrap_or_default())
                    } else {
                        None
                    };
                }
            }
            Err(err) => {
                *self.stats.collect_errors.entry(Backend::Ebpf).or_default() += 1;
                warn!(error = %err, "reading eBPF counters");
                for interface in self.interfaces.values_mut() {
                    interface.ebpf = None;
                }
            }
        }
        match ebpf.overflow() {
            Ok(o) => self.stats.map_overflow = o.packets,
            Err(err) => {
                *self.stats.collect_errors.entry(Backend::Ebpf).or_default() += 1;
                warn!(error = %err, "reading the eBPF overflow counter");
            }
        }
    }

    /// The current state as a [`Snapshot`] (no collection).
    pub fn snapshot(&self) -> Snapshot {
        let interfaces = self.interfaces.values().map(interface_snapshot).collect();
        Snapshot {
            interfaces,
            collect_duration: self.stats.collect_duration.clone(),
            collect_errors: self.stats.collect_errors.clone(),
            attach_failures: self.stats.attach_failures,
            reattach: self.stats.reattach,
            map_overflow: self.stats.map_overflow,
            ebpf_available: self.ebpf_available,
        }
    }

    /// Detaches every eBPF attachment (on shutdown).
    pub fn detach_all(&mut self) {
        for interface in self.interfaces.values_mut() {
            if let Some(attachment) = interface.attachment.take()
                && let Err(err) = attachment.detach()
            {
                warn!(interface = %interface.facts.name, error = %err, "detaching on shutdown");
            }
        }
    }

    /// Ifindexes of interfaces attached in legacy tc mode (for the caller's netlink check).
    pub fn legacy_attached(&self) -> Vec<u32> {
        self.interfaces
            .values()
            .filter(|i| {
                i.attachment
                    .as_ref()
                    .is_some_and(|a| a.mode() == AttachedMode::Tc)
            })
            .map(|i| i.facts.ifindex)
            .collect()
    }
}

/// Sets an interface's stat names (once per lifetime, or again after the driver's count moved)
/// and which of them pass the allowlist.
fn set_stat_names(allow: &regex::Regex, interface: &mut Interface, names: Vec<String>) {
    interface.stat_allowed = names
        .iter()
        .enumerate()
        .filter(|(_, n)| allow.is_match(n))
        .map(|(i, _)| i)
        .collect();
    interface.stat_names = names;
    interface.stat_values.clear();
}

fn interface_snapshot(i: &Interface) -> InterfaceSnapshot {
    let s: &LinkStats = &i.facts.stats;
    let (packets, bytes) = match i.route.backend {
        Backend::None => (None, None),
        Backend::Ebpf => match i.ebpf {
            Some(c) => (
                Some(RxTx {
                    rx: c.rx.packets,
                    tx: c.tx.packets,
                }),
                Some(RxTx {
                    rx: c.rx.bytes,
                    tx: c.tx.bytes,
                }),
            ),
            None => (None, None),
        },
        Backend::Ethtool | Backend::Netdev => (
            Some(RxTx {
                rx: s.rx_packets,
                tx: s.tx_packets,
            }),
            Some(RxTx {
                rx: s.rx_bytes,
                tx: s.tx_bytes,
            }),
        ),
    };
    let ethtool = if i.stat_values.len() == i.stat_names.len() {
        i.stat_allowed
            .iter()
            .map(|&k| (i.stat_names[k].clone(), i.stat_values[k]))
            .collect()
    } else {
        Vec::new()
    };
    InterfaceSnapshot {
        name: i.facts.name.clone(),
        ifindex: i.facts.ifindex,
        kind: i.facts.kind.clone().unwrap_or_default(),
        driver: i.driver.clone().unwrap_or_default(),
        backend: i.route.backend,
        reason: i.route.reason,
        attach_mode: i.attachment.as_ref().map(InterfaceAttachment::mode),
        packets,
        bytes,
        errors: RxTx {
            rx: s.rx_errors,
            tx: s.tx_errors,
        },
        dropped: RxTx {
            rx: s.rx_dropped,
            tx: s.tx_dropped,
        },
        ethtool,
        speed_bytes: i.link_mode.map(|m| u64::from(m.speed_mbps) * 1_000_000 / 8),
        full_duplex: i.link_mode.and_then(|m| m.full_duplex),
    }
}

/// The symbolic name of the errnos ethtool answers with.
fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENODEV => "ENODEV",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        _ => "other",
    }
}
