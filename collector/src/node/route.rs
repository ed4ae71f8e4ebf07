//! Routing: a link event applied, a new interface routed (the policy, the ethtool probe once
//! per lifetime, the backend put into effect), a vanished one forgotten.

use tracing::{info, warn};

use super::{Answer, Interface, Measure, Node, Retry, interface::PROBE_RETRIES};
use crate::{
    backend::{
        ebpf::TcCounter,
        ethtool::{DriverStats, EthtoolIo, Probe},
    },
    discovery::{Link, LinkEvent, Links},
    policy::{self, Backend, Reason},
};

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// Applies a link event: routes (probes, starts attaching) a new interface, forgets a
    /// deleted one. A known ifindex under a new name is a new interface lifetime.
    pub(crate) fn apply(&mut self, event: LinkEvent) {
        let touched = match &event {
            LinkEvent::New(link) => Some(link.ifindex),
            LinkEvent::Deleted { ifindex } => Some(*ifindex),
            LinkEvent::Lost => None,
        };
        if let (Some(listing), Some(ifindex)) = (self.listing.as_mut(), touched) {
            listing.insert(ifindex);
        }
        match event {
            LinkEvent::New(link) => self.upsert(link),
            LinkEvent::Deleted { ifindex } => self.remove(ifindex),
            // The owner resynchronises.
            LinkEvent::Lost => {}
        }
    }

    /// A link as the kernel reports it now: routed when new (or renamed), its facts refreshed
    /// otherwise.
    pub(super) fn upsert(&mut self, link: Link) {
        let ifindex = link.ifindex;
        let (shown, pending) = (
            self.interfaces.get_mut(&ifindex),
            self.attaching.get_mut(&ifindex),
        );
        let known = shown
            .as_ref()
            .or(pending.as_ref())
            .map(|i| i.link.name.clone());
        match known {
            Some(name) if name == link.name => {
                for interface in [shown, pending].into_iter().flatten() {
                    interface.link = link.clone();
                }
                return;
            }
            Some(_) => self.remove(ifindex),
            None => {}
        }
        self.route(link, 0);
    }

    /// Forgets an interface: detaches what it holds (a deleted device took our attachment with
    /// it; a renamed one still has it) and frees its counters, its drop counts included.
    pub(super) fn remove(&mut self, ifindex: u32) {
        if let Some(drops) = self.drops.as_mut() {
            drops.forget(ifindex);
        }
        if let Some(link) = self.take_out(ifindex) {
            info!(interface = %link.name, ifindex, "interface removed");
        }
    }

    /// Takes an interface out of the table and out of those being attached (a routing tried
    /// again keeps the old one shown while the new one attaches), detached and with its counters
    /// freed.
    pub(super) fn take_out(&mut self, ifindex: u32) -> Option<Link> {
        let shown = self.interfaces.remove(&ifindex);
        let pending = self.attaching.remove(&ifindex);
        let link = pending.as_ref().or(shown.as_ref())?.link.clone();
        for interface in [shown, pending].iter().flatten() {
            self.let_go(interface);
        }
        Some(link)
    }

    /// Detaches what `interface` holds and frees its counters — once the detach has answered
    /// (also for an interface that fell back after an attach failure: a hook that was attached
    /// for a moment may have counted).
    pub(super) fn let_go(&mut self, interface: &Interface) {
        if interface.counted_by_ebpf() {
            self.wake_map_full();
        }
        let ifindex = interface.link.ifindex;
        if self.release(interface, "detaching", true) {
            // Freed once detached: until then the programs still count into them.
            self.forgetting.insert(ifindex);
        } else {
            self.forget(ifindex, &interface.link.name);
        }
    }

    /// A slot frees: the interfaces that found the map full try again at the next resync.
    pub(super) fn wake_map_full(&mut self) {
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

    /// Routes a new interface: the policy, the ethtool probe when the policy needs it (once per
    /// lifetime, unless it failed transiently), then the backend put into effect. `attempt` is
    /// 0 for the first routing, then counts the retries. An interface that needs the eBPF
    /// counter joins the table once its attach has answered.
    pub(super) fn route(&mut self, link: Link, attempt: u32) {
        let mut probe = None;
        let ethtool = &self.ethtool;
        let route = policy::route(
            &self.settings.policy,
            &link.name,
            link.kind.as_deref(),
            self.ebpf.is_some(),
            || &*probe.insert(ethtool.probe(&link.name)),
        );
        let answer = Answer::of(probe.as_ref());
        let driver = probe.as_ref().and_then(Probe::driver).map(str::to_owned);
        let policy = &self.settings.policy;
        let mut reason = route.reason;
        let measure = match route.backend {
            // Raw driver statistics only where wanted: the others are not even read.
            Backend::Ethtool => Measure::Ethtool(DriverStats::new(
                match probe {
                    Some(Probe::Stats { names, .. })
                        if policy::exports_ethtool_stats(
                            policy,
                            &link.name,
                            link.kind.as_deref(),
                        ) =>
                    {
                        names
                    }
                    _ => Vec::new(),
                },
                &self.settings.ethtool_stats_allowlist,
            )),
            Backend::Netdev => Measure::Netdev,
            Backend::None => Measure::Unmonitored,
            // The policy routes to eBPF only where the backend was loaded.
            Backend::Ebpf => match self.start_attach(&link) {
                Some(attachment) => Measure::Ebpf(attachment),
                None => {
                    reason = Reason::EbpfUnavailable;
                    Measure::Netdev
                }
            },
        };
        let mut interface = Interface {
            link,
            driver,
            answer,
            reason,
            measure,
            breakdown: None,
            link_mode: None,
            retry: None,
            attempt,
        };
        interface.breakdown = self.breakdown_for(&interface);
        if interface.attachments().any(|a| a.pending) {
            self.attaching.insert(interface.link.ifindex, interface);
        } else {
            self.enter(interface);
        }
    }

    /// Puts a routed interface into the table: its retry scheduled, its routing logged.
    pub(super) fn enter(&mut self, mut interface: Interface) {
        interface.retry = Retry::after(
            interface.attempt,
            interface.answer,
            interface.reason,
            self.resyncs,
        );
        self.warn_once_without_ethtool(&interface);
        info!(interface = %interface.link.name, ifindex = interface.link.ifindex,
            kind = interface.link.kind.as_deref().unwrap_or(""),
            backend = %interface.measure.backend(), reason = %interface.reason, "interface routed");
        if interface.attempt >= PROBE_RETRIES && interface.reason == Reason::EthtoolError {
            warn!(interface = %interface.link.name, attempts = PROBE_RETRIES,
                "the ethtool probe kept failing; measuring the interface with kernel link stats");
        }
        self.interfaces.insert(interface.link.ifindex, interface);
    }

    /// One WARN per interface name for the lifetime of the process when ethtool has no
    /// statistics for it: never an ERROR, and nothing on later cycles.
    fn warn_once_without_ethtool(&mut self, interface: &Interface) {
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
