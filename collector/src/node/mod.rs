//! The node: its interfaces, each routed to a backend ([`Measure`]), and the backends
//! themselves. Routing, probing and attaching happen only when a link event is applied
//! ([`Node::apply`]) or the links are resynchronised ([`Node::resync`]); collecting
//! ([`Node::collect`], in `collect`) only reads.
//!
//! The node is generic over what touches the kernel — the ethtool ioctls (`I`), the eBPF
//! counter (`E`) and the link source (`L`) — so that the same code runs the daemon, the
//! one-shot commands and the unit tests with fixtures.

mod attach;
mod collect;
mod interface;
#[cfg(test)]
mod tests;
mod upkeep;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use tracing::{info, warn};

pub(crate) use self::interface::{Answer, Interface, Interfaces, Measure};
use self::interface::{PROBE_RETRIES, Retry};
use crate::{
    Report,
    backend::{
        CollectStats,
        ebpf::{AttachMode, TcCounter},
        ethtool::{EthtoolBackend, EthtoolIo, Ioctl, Probe},
        netdev::Netdev,
    },
    discovery::{DiscoveryError, Link, LinkEvent, LinkMode, Links, Netlink},
    metrics::MapOverflow,
    policy::{self, Backend, Policy, Reason, Route},
};

/// Counters about linkmeter itself.
#[derive(Clone, Debug, Default)]
struct NodeStats {
    collect: CollectStats,
    attach_failures: u64,
    reattach: u64,
    /// The overflow counters' last reading (kept when a read fails: they are counters).
    map_overflow: MapOverflow,
    /// Full resyncs made because of the link-event subscription, per [`ResyncReason`].
    netlink_resyncs: [u64; ResyncReason::ALL.len()],
}

/// Why the owner resynchronised outside the periodic resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResyncReason {
    /// Link events were lost (the kernel overran the event socket).
    EventsLost,
    /// The link-event subscription was lost and has been opened again.
    Resubscribed,
}

impl ResyncReason {
    /// Every reason, in label order.
    pub(crate) const ALL: [Self; 2] = [Self::EventsLost, Self::Resubscribed];

    /// The `reason` label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::EventsLost => "events_lost",
            Self::Resubscribed => "resubscribed",
        }
    }
}

/// How the node routes and measures its interfaces, as configured.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Include, exclude, overrides, breakdown and raw driver statistics patterns.
    pub(crate) policy: Policy,
    /// How to attach the eBPF counter.
    pub(crate) attach_mode: AttachMode,
    /// Idle time after which an overlay peer is forgotten.
    pub(crate) peer_idle: Duration,
    /// Driver statistic names exported as `linkmeter_ethtool_stat`.
    pub(crate) ethtool_stats_allowlist: regex::Regex,
}

/// The interfaces of this node and the backends measuring them.
pub(crate) struct Node<I, E: TcCounter, L> {
    policy: Policy,
    attach_mode: AttachMode,
    peer_idle: Duration,
    ethtool: EthtoolBackend<I>,
    /// `None` when the eBPF backend is unavailable here.
    ebpf: Option<E>,
    netdev: Netdev<L>,
    interfaces: Interfaces<E::Attachment>,
    /// Names already reported (once) as lacking ethtool statistics; only names still present
    /// are kept at each resync, so it is bounded by the node's interfaces.
    warned: HashSet<String>,
    /// Resyncs done: the clock of [`Retry`].
    resyncs: u64,
    stats: NodeStats,
}

impl<I, E: TcCounter, L> std::fmt::Debug for Node<I, E, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("interfaces", &self.interfaces.len())
            .finish_non_exhaustive()
    }
}

/// Why the node cannot be opened on this machine.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// rtnetlink is not usable.
    #[error(transparent)]
    Netlink(DiscoveryError),
    /// The ethtool socket cannot be created.
    #[error("opening the ethtool ioctl socket")]
    Ethtool(#[source] std::io::Error),
}

impl<E: TcCounter> Node<Ioctl, E, Netlink> {
    /// The node of this machine (the calling thread's network namespace), measured with `ebpf`
    /// where it routes to eBPF (`None`: unavailable).
    ///
    /// # Errors
    ///
    /// [`OpenError`] when netlink or the ethtool socket cannot be opened.
    pub(crate) fn open(settings: &Settings, ebpf: Option<E>) -> Result<Self, OpenError> {
        let links = Netlink::open().map_err(OpenError::Netlink)?;
        let io = Ioctl::new().map_err(OpenError::Ethtool)?;
        Ok(Self::new(settings, io, ebpf, links))
    }
}

impl<I: EthtoolIo, E: TcCounter, L: Links> Node<I, E, L> {
    /// A node with no interfaces yet; [`Node::resync`] discovers them.
    pub(crate) fn new(settings: &Settings, io: I, ebpf: Option<E>, links: L) -> Self {
        Self {
            policy: settings.policy.clone(),
            attach_mode: settings.attach_mode,
            peer_idle: settings.peer_idle,
            ethtool: EthtoolBackend::new(io, settings.ethtool_stats_allowlist.clone()),
            ebpf,
            netdev: Netdev::new(links),
            interfaces: Interfaces::new(),
            warned: HashSet::new(),
            resyncs: 0,
            stats: NodeStats::default(),
        }
    }

    /// The interfaces, by ifindex.
    pub(crate) fn interfaces(&self) -> impl Iterator<Item = &Interface<E::Attachment>> {
        self.interfaces.values()
    }

    /// Counts a resync the link-event subscription asked for (`linkmeter_netlink_resyncs_total`).
    pub(crate) fn count_resync(&mut self, reason: ResyncReason) {
        self.stats.netlink_resyncs[reason as usize] += 1;
    }

    /// Applies a link event: routes (probes, attaches) a new interface, forgets a deleted one.
    /// A known ifindex under a new name is a new interface lifetime.
    pub(crate) fn apply(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::New(link) => self.upsert(link),
            LinkEvent::Deleted { ifindex } => self.remove(ifindex),
            // The owner resynchronises.
            LinkEvent::Lost => {}
        }
    }

    /// Full resynchronisation: dumps the links, routes the new ones and forgets the vanished
    /// ones (repairing missed events), refreshes link speeds, and re-attaches the eBPF counter
    /// where someone removed it. Returns how many links the kernel listed.
    ///
    /// # Errors
    ///
    /// The link dump failed; link speeds and attachments were still checked.
    pub(crate) async fn resync(&mut self) -> Result<usize, DiscoveryError> {
        let listed = match self.netdev.links().dump().await {
            Ok(links) => {
                let count = links.len();
                let present: HashSet<u32> = links.iter().map(|l| l.link.ifindex).collect();
                let missing: Vec<u32> = self
                    .interfaces
                    .keys()
                    .filter(|i| !present.contains(i))
                    .copied()
                    .collect();
                for ifindex in missing {
                    self.confirm_gone(ifindex).await;
                }
                for facts in links {
                    self.upsert(facts.link);
                }
                let present: HashSet<&str> = self
                    .interfaces
                    .values()
                    .map(|i| i.link.name.as_str())
                    .collect();
                self.warned.retain(|name| present.contains(name.as_str()));
                Ok(count)
            }
            Err(err) => Err(err),
        };
        match self.netdev.links().link_modes().await {
            Ok(modes) => self.set_link_modes(&modes),
            Err(err) => warn!(error = %Report(&err), "link speeds unavailable"),
        }
        self.resyncs += 1;
        self.retry_due();
        let repaired = self.repair();
        if repaired > 0 {
            info!(repaired, "re-attached the eBPF counter");
        }
        if let Some(ebpf) = self.ebpf.as_mut() {
            match ebpf.expire_peers(self.peer_idle) {
                Ok(0) => {}
                Ok(expired) => info!(expired, "forgot idle overlay peers"),
                Err(err) => warn!(error = %Report(&err), "expiring idle overlay peers"),
            }
        }
        listed
    }

    /// An interface missing from a dump is forgotten only when a lookup by its index confirms
    /// the kernel has no such link (its `RTM_DELLINK` may be on its way, or the dump may have
    /// missed it); when the lookup fails it is kept until the next resync.
    async fn confirm_gone(&mut self, ifindex: u32) {
        match self.netdev.links().get(ifindex).await {
            Ok(None) => self.remove(ifindex),
            Ok(Some(facts)) => self.upsert(facts.link),
            Err(err) => warn!(ifindex, error = %Report(&err),
                "cannot confirm that a link missing from the dump is gone; keeping it"),
        }
    }

    fn upsert(&mut self, link: Link) {
        if let Some(known) = self.interfaces.get_mut(&link.ifindex) {
            if known.link.name == link.name {
                known.link = link;
                return;
            }
            self.remove(link.ifindex);
        }
        let interface = self.route_new(link, 0);
        self.interfaces.insert(interface.link.ifindex, interface);
    }

    /// Forgets an interface: detaches (a deleted device took our attachment with it; a renamed
    /// one still has it) and frees its counters.
    fn remove(&mut self, ifindex: u32) {
        if let Some(link) = self.take_out(ifindex) {
            info!(interface = %link.name, ifindex, "interface removed");
        }
    }

    /// Takes an interface out of the table, detached and with its counters freed.
    fn take_out(&mut self, ifindex: u32) -> Option<Link> {
        let interface = self.interfaces.remove(&ifindex)?;
        let link = interface.link.clone();
        if matches!(interface.measure, Measure::Ebpf(_)) || interface.breakdown.is_some() {
            // A slot frees: interfaces that found the map full try again at the next resync.
            let now = self.resyncs;
            for waiting in self.interfaces.values_mut() {
                if let Some(retry) = waiting
                    .retry
                    .as_mut()
                    .filter(|_| waiting.reason == Reason::EbpfMapFull)
                {
                    retry.due = retry.due.min(now);
                }
            }
        }
        self.release(interface, "detaching");
        if let Some(ebpf) = self.ebpf.as_mut()
            // Also for interfaces that fell back after an attach failure: a hook that was
            // attached for a moment may have counted.
            && let Err(err) = ebpf.forget(ifindex)
        {
            warn!(interface = %link.name, error = %Report(&err), "freeing eBPF map entries");
        }
        Some(link)
    }

    /// Routes a new interface: the policy, the ethtool probe when the policy needs it (once per
    /// lifetime, unless it failed transiently), then the backend put into effect. `attempt` is
    /// 0 for the first routing, then counts the retries.
    fn route_new(&mut self, link: Link, attempt: u32) -> Interface<E::Attachment> {
        let mut probe = None;
        let ethtool = &self.ethtool;
        let route = policy::route(
            &self.policy,
            &link.name,
            link.kind.as_deref(),
            self.ebpf.is_some(),
            || &*probe.insert(ethtool.probe(&link.name)),
        );
        let answer = Answer::of(probe.as_ref());
        let driver = probe.as_ref().and_then(Probe::driver).map(str::to_owned);
        let names = match probe {
            Some(Probe::Stats { names, .. }) => names,
            _ => Vec::new(),
        };
        let (measure, reason) = self.measure(&link, route, names);
        let breakdown = self.breakdown_for(&link, measure.backend(), reason);
        let interface = Interface {
            link,
            driver,
            answer,
            reason,
            measure,
            breakdown,
            link_mode: None,
            retry: Retry::after(attempt, answer, reason, self.resyncs),
        };
        self.warn_once_without_ethtool(&interface);
        info!(interface = %interface.link.name, ifindex = interface.link.ifindex,
            kind = interface.link.kind.as_deref().unwrap_or(""),
            backend = %interface.measure.backend(), reason = %interface.reason, "interface routed");
        interface
    }

    /// Puts a routing decision into effect. The one place where an eBPF decision becomes an
    /// attachment or, when attaching fails, kernel link stats with reason `ebpf_map_full` (no
    /// counter slot left) or `ebpf_attach_failed`.
    fn measure(
        &mut self,
        link: &Link,
        route: Route,
        names: Vec<String>,
    ) -> (Measure<E::Attachment>, Reason) {
        let measure = match route.backend {
            // Raw driver statistics only where wanted: the others are not even read.
            Backend::Ethtool => Measure::Ethtool(self.ethtool.driver_stats(
                if policy::exports_ethtool_stats(&self.policy, &link.name, link.kind.as_deref()) {
                    names
                } else {
                    Vec::new()
                },
            )),
            Backend::Netdev => Measure::Netdev,
            Backend::None => Measure::Unmonitored,
            Backend::Ebpf => match self.try_attach(link) {
                Ok(attachment) => Measure::Ebpf(attachment),
                Err(err) => {
                    warn!(interface = %link.name, error = %Report(&err),
                        "attaching the eBPF counter failed; using kernel link stats");
                    let reason = if err.is_map_full() {
                        Reason::EbpfMapFull
                    } else {
                        Reason::EbpfAttachFailed
                    };
                    return (Measure::Netdev, reason);
                }
            },
        };
        (measure, route.reason)
    }

    /// Sets link speeds from a link-mode dump (keyed by ifindex).
    fn set_link_modes(&mut self, modes: &HashMap<u32, LinkMode>) {
        for (ifindex, interface) in &mut self.interfaces {
            interface.link_mode = modes.get(ifindex).copied();
        }
    }

    /// One WARN per interface name for the lifetime of the process when ethtool has no
    /// statistics for it: never an ERROR, and nothing on later cycles.
    fn warn_once_without_ethtool(&mut self, interface: &Interface<E::Attachment>) {
        let detail = match interface.answer {
            Answer::Unsupported { errno } => format!("errno {errno} ({})", errno_name(errno)),
            Answer::NoStats => format!(
                "driver {} exports no statistics",
                interface.driver.as_deref().unwrap_or("?")
            ),
            _ => return,
        };
        if self.warned.insert(interface.link.name.clone()) {
            let backend = interface.measure.backend();
            warn!(interface = %interface.link.name, backend = %backend, reason = %interface.reason,
                "interface has no ethtool statistics ({detail}); measuring it with the {backend} backend instead");
        }
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
