//! The node: its interfaces, each routed to a backend ([`Measure`]), and the backends
//! themselves. Routing, probing and attaching happen only when a link event is applied
//! ([`Node::apply`]) or the links are resynchronised ([`Node::start_resync`]); collecting
//! ([`Node::collect`], in `collect`) only reads.
//!
//! The node never waits on the kernel for an answer that may be slow to come. Work that may —
//! a link dump for the resync, attaching, detaching, checking attachments (netlink for legacy
//! tc) — is started and becomes a [`Done`] when it answers; its owner picks those up with
//! [`Node::next_done`] among its other work and hands them back to [`Node::finish`]. Meanwhile
//! the node answers scrapes with what it has: an interface appears once its routing is done,
//! attach included. The one-shot commands and the tests wait for everything with
//! [`Node::until_idle`].
//!
//! The node is generic over what touches the kernel — the ethtool ioctls (`I`), the eBPF
//! counter (`E`) and the link source (`L`) — so that the same code runs the daemon, the
//! one-shot commands and the unit tests with fixtures.

mod attach;
mod collect;
mod interface;
mod resync;
mod route;
#[cfg(test)]
mod tests;
mod upkeep;

use std::{collections::HashSet, time::Duration};

use futures_util::{FutureExt as _, StreamExt as _, stream::FuturesUnordered};

pub(crate) use self::interface::{Answer, Attachment, Interface, Interfaces, Measure};
use self::{interface::Retry, resync::Listing};
use crate::{
    backend::{
        drops::DropCounter,
        ebpf::{
            AttachError, AttachMode, AttachedMode, AttachmentId, CheckReport, Pending, TcCounter,
        },
        ethtool::{Ethtool, EthtoolIo, Ioctl},
    },
    discovery::{DiscoveryError, Links, Netlink},
    metrics::{CollectStats, MapOverflow},
    policy::Policy,
};

/// How the node routes and measures its interfaces, as configured.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Include, exclude, overrides, breakdown and raw driver statistics patterns.
    pub(crate) policy: Policy,
    /// How to attach the eBPF counter.
    pub(crate) attach_mode: AttachMode,
    /// Idle time after which an overlay peer is forgotten.
    pub(crate) peer_idle: Duration,
    /// Zones of overlay peers, and which overlay series are shown.
    pub(crate) overlay: crate::zones::Overlay,
    /// Driver statistic names exported as `linkmeter_ethtool_stat`.
    pub(crate) ethtool_stats_allowlist: regex::Regex,
}

/// Counters about linkmeter itself.
#[derive(Clone, Debug, Default)]
struct NodeStats {
    collect: CollectStats,
    attach_failures: u64,
    reattach: u64,
    /// Moves of our program back to the head of a hook's chain.
    reanchor: u64,
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

/// Kernel work the node started, as it answered.
#[derive(Debug)]
pub(crate) enum Done {
    /// An attach answered.
    Attached {
        /// Which.
        id: AttachmentId,
        /// The mechanism used, or why it failed.
        result: Result<Option<AttachedMode>, AttachError>,
    },
    /// A detach answered.
    Detached {
        /// The interface, for the log.
        interface: String,
        /// What the detach was for, for the log.
        doing: &'static str,
        /// Whether it worked.
        result: Result<(), AttachError>,
        /// The ifindex whose counters are freed once it answered.
        forget: Option<u32>,
    },
    /// A resync's reading of the links answered.
    Listed(Box<Listing>),
    /// A check of the attachments answered: those someone removed, where the others stand.
    Checked(CheckReport),
    /// The removal of stale legacy filters answered: how many.
    StaleRemoved(usize),
    /// Every attachment was let go of (shutdown).
    Released,
    /// A resync's listing was given up (shutdown).
    Abandoned,
}

/// The interfaces of this node and the backends measuring them.
pub(crate) struct Node<I, E, L> {
    settings: Settings,
    ethtool: Ethtool<I>,
    /// `None` when the eBPF backend is unavailable here.
    ebpf: Option<E>,
    /// The drop-reason counter; `None` when turned off or unavailable here.
    drops: Option<Box<dyn DropCounter>>,
    /// The links as a scrape reads them.
    links: L,
    /// The links as a resync reads them: a socket of its own, so that a resync's dump that is
    /// slow to answer never holds up a scrape's.
    upkeep: L,
    /// The routed interfaces: what `/metrics` shows.
    interfaces: Interfaces,
    /// New interfaces whose eBPF attach has not answered yet; not shown.
    attaching: Interfaces,
    /// Kernel work started and not answered yet.
    work: FuturesUnordered<Pending<Done>>,
    /// The number of the next attachment.
    next_id: u64,
    /// While a resync's listing runs: the ifindexes link events touched since it started
    /// (for those, the events are newer than the listing).
    listing: Option<HashSet<u32>>,
    /// Gives up the running listing (at shutdown, which would not use it).
    listing_abort: Option<futures_util::future::AbortHandle>,
    /// Whether a resync was asked for while a listing ran: another follows it.
    resync_again: bool,
    /// Whether a check of the attachments is running.
    checking: bool,
    /// Ifindexes whose counters are freed once their detach answers: freed before it, the
    /// programs still attached would count the device's packets as overflow.
    forgetting: HashSet<u32>,
    /// Once the first resync's listing is applied: the interfaces it left waiting for their
    /// attach (what the first routing pass still waits for).
    first_pass: Option<Vec<u32>>,
    /// Shutting down: answers are put into effect without routing anything new.
    stopping: bool,
    /// Names already reported (once) as lacking ethtool statistics; only names still present
    /// are kept at each resync, so it is bounded by the node's interfaces.
    warned: HashSet<String>,
    /// The overlay zones' counts, kept monotonic while their peers come and go.
    zone_totals: crate::zones::ZoneTotals,
    /// Resyncs done: the clock of [`Retry`].
    resyncs: u64,
    stats: NodeStats,
}

impl<I, E, L> std::fmt::Debug for Node<I, E, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("interfaces", &self.interfaces.len())
            .field("attaching", &self.attaching.len())
            .field("work", &self.work.len())
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
        let upkeep = Netlink::open().map_err(OpenError::Netlink)?;
        let io = Ioctl::new().map_err(OpenError::Ethtool)?;
        Ok(Self::new(settings, io, ebpf, links, upkeep))
    }
}

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// A node with no interfaces yet; [`Node::start_resync`] discovers them. Scrapes read links
    /// through `links`, resyncs through `upkeep`.
    pub(crate) fn new(settings: &Settings, io: I, ebpf: Option<E>, links: L, upkeep: L) -> Self {
        Self {
            settings: settings.clone(),
            ethtool: Ethtool::new(io),
            ebpf,
            drops: None,
            links,
            upkeep,
            interfaces: Interfaces::new(),
            attaching: Interfaces::new(),
            work: FuturesUnordered::new(),
            next_id: 0,
            listing: None,
            listing_abort: None,
            resync_again: false,
            checking: false,
            forgetting: HashSet::new(),
            first_pass: None,
            stopping: false,
            warned: HashSet::new(),
            zone_totals: crate::zones::ZoneTotals::default(),
            resyncs: 0,
            stats: NodeStats::default(),
        }
    }

    /// Counts drops by kernel drop reason with `drops` (the node forgets an interface's counts
    /// when it is removed).
    #[must_use]
    pub(crate) fn with_drops(mut self, drops: Option<Box<dyn DropCounter>>) -> Self {
        self.drops = drops;
        self
    }

    /// The routed interfaces, by ifindex.
    pub(crate) fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    /// Whether the first routing pass is done: the links listed, and every attach that pass
    /// asked for answered (interfaces that came later, by a link event, are not waited for).
    pub(crate) fn is_routed(&self) -> bool {
        self.first_pass
            .as_ref()
            .is_some_and(|waiting| waiting.iter().all(|i| !self.attaching.contains_key(i)))
    }

    /// Counts a resync the link-event subscription asked for (`linkmeter_netlink_resyncs_total`).
    pub(crate) fn count_resync(&mut self, reason: ResyncReason) {
        self.stats.netlink_resyncs[reason as usize] += 1;
    }

    /// Whether kernel work is waiting for its answer.
    pub(crate) fn is_busy(&self) -> bool {
        !self.work.is_empty()
    }

    /// The next kernel work that answers; `None` when none is running.
    pub(crate) async fn next_done(&mut self) -> Option<Done> {
        self.work.next().await
    }

    /// Starts kernel work; `finish` receives its answer.
    fn start(&mut self, work: impl std::future::Future<Output = Done> + 'static) {
        self.work.push(work.boxed_local());
    }

    /// Puts what kernel work answered into effect. Returns, for a resync's listing, how many
    /// links the kernel listed or why the listing failed.
    pub(crate) fn finish(&mut self, done: Done) -> Option<Result<usize, DiscoveryError>> {
        match done {
            Done::Attached { id, result } => self.attached(id, result),
            Done::Detached {
                interface,
                doing,
                result,
                forget,
            } => {
                if let Err(err) = result {
                    tracing::warn!(interface, error = %crate::Report(&err), "{doing}");
                }
                if let Some(ifindex) = forget {
                    self.detached(ifindex, &interface);
                }
            }
            Done::Listed(_) | Done::Checked(_) if self.stopping => {}
            Done::Listed(listing) => return Some(self.listed(*listing)),
            Done::Checked(report) => self.checked(&report),
            Done::StaleRemoved(removed) => {
                if removed > 0 {
                    tracing::info!(removed, "removed tc filters left by an earlier linkmeter");
                }
            }
            Done::Released | Done::Abandoned => {}
        }
        None
    }

    /// Waits for every piece of kernel work started (and the work they start) and puts it into
    /// effect. Returns the outcome of the last resync's listing among them, if any.
    pub(crate) async fn until_idle(&mut self) -> Option<Result<usize, DiscoveryError>> {
        let mut listed = None;
        while let Some(done) = self.work.next().await {
            if let Some(result) = self.finish(done) {
                listed = Some(result);
            }
        }
        listed
    }
}
