//! One interface of the node's table and how it is measured.

use std::collections::BTreeMap;

use crate::{
    backend::{
        ebpf::{AttachedMode, AttachmentId, Placement},
        ethtool::{DriverStats, Probe},
    },
    discovery::{Link, LinkMode},
    policy::{Backend, Reason},
};

/// Interfaces by ifindex.
pub(crate) type Interfaces = BTreeMap<u32, Interface>;

/// The eBPF counter on an interface, as the node holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attachment {
    /// Which one (the worker holds the attachment itself).
    pub(crate) id: AttachmentId,
    /// Whether its attach is still being made (a re-attach; a new interface waits out of the
    /// table until its attach has answered).
    pub(crate) pending: bool,
    /// The mechanism used, once attached; `None` while pending, and for a dry run.
    pub(crate) mode: Option<AttachedMode>,
    /// Where our program stood on each hook (ingress, egress) at the last check; `None` until
    /// the first check after attaching.
    pub(crate) placed: Option<[Placement; 2]>,
    /// Whether moving it back to the head of a hook was said at WARN (once per attachment).
    pub(crate) warned: bool,
}

impl Attachment {
    /// An attachment asked for as `id`, not answered yet.
    pub(crate) const fn pending(id: AttachmentId) -> Self {
        Self {
            id,
            pending: true,
            mode: None,
            placed: None,
            warned: false,
        }
    }
}

/// How an interface is measured: one variant per backend, each holding what that backend needs
/// for it, so that no other combination can be written down.
#[derive(Debug)]
pub(crate) enum Measure {
    /// ethtool driver statistics (packets and bytes come from kernel link stats).
    Ethtool(DriverStats),
    /// The eBPF TC counter.
    Ebpf(Attachment),
    /// Kernel link statistics only.
    Netdev,
    /// Not monitored.
    Unmonitored,
}

impl Measure {
    /// The backend measuring the interface.
    pub(crate) const fn backend(&self) -> Backend {
        match self {
            Self::Ethtool(_) => Backend::Ethtool,
            Self::Ebpf(_) => Backend::Ebpf,
            Self::Netdev => Backend::Netdev,
            Self::Unmonitored => Backend::None,
        }
    }
}

/// What the ethtool probe answered, kept for `linkmeter check` and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Routing did not need a probe (excluded, not included, or overridden).
    NotProbed,
    /// The driver exports this many statistics.
    Stats {
        /// How many.
        count: usize,
    },
    /// The driver answers but exports no statistics.
    NoStats,
    /// ethtool is not supported (`EOPNOTSUPP`).
    Unsupported {
        /// The errno.
        errno: i32,
    },
    /// Another errno.
    Failed {
        /// The errno.
        errno: i32,
    },
}

impl Answer {
    /// The answer of `probe`, or [`Answer::NotProbed`].
    pub(crate) fn of(probe: Option<&Probe>) -> Self {
        match probe {
            None => Self::NotProbed,
            Some(Probe::Stats { names, .. }) => Self::Stats { count: names.len() },
            Some(Probe::NoStats { .. }) => Self::NoStats,
            Some(&Probe::Unsupported { errno }) => Self::Unsupported { errno },
            Some(&Probe::Failed { errno }) => Self::Failed { errno },
        }
    }
}

/// One interface during its lifetime, routed.
#[derive(Debug)]
pub(crate) struct Interface {
    /// Its index, name and kind.
    pub(crate) link: Link,
    /// Driver name from `GDRVINFO`, when ethtool answered.
    pub(crate) driver: Option<String>,
    /// What the probe answered.
    pub(crate) answer: Answer,
    /// Why it is measured the way it is.
    pub(crate) reason: Reason,
    /// How it is measured.
    pub(crate) measure: Measure,
    /// The eBPF counter attached besides another backend, for the traffic breakdown (the
    /// `breakdown` patterns); eBPF-routed interfaces have it in `measure`.
    pub(crate) breakdown: Option<Attachment>,
    /// Speed and duplex, refreshed at each resync.
    pub(crate) link_mode: Option<LinkMode>,
    /// When its routing is tried again: after a transient probe error or a full counter map.
    pub(crate) retry: Option<Retry>,
    /// Which routing of its lifetime this is: 0 for the first, then the retries.
    pub(crate) attempt: u32,
}

impl Interface {
    /// Its eBPF attachments: the measure's, the breakdown's.
    pub(crate) fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        let measured = match &self.measure {
            Measure::Ebpf(attachment) => Some(attachment),
            _ => None,
        };
        measured.into_iter().chain(self.breakdown.as_ref())
    }

    /// Whether the eBPF counter is (or is being) attached to it.
    pub(crate) fn counted_by_ebpf(&self) -> bool {
        self.attachments().next().is_some()
    }

    /// The attachment `id`, wherever it is held.
    pub(crate) fn attachment_mut(&mut self, id: AttachmentId) -> Option<&mut Attachment> {
        match &mut self.measure {
            Measure::Ebpf(attachment) if attachment.id == id => Some(attachment),
            _ => self.breakdown.as_mut().filter(|a| a.id == id),
        }
    }
}

/// Errnos of a probe that may well succeed a moment later (a driver resetting, a busy
/// device): the interface is routed again at later resyncs before it is settled on netdev.
const TRANSIENT_ERRNOS: [i32; 4] = [libc::EAGAIN, libc::EBUSY, libc::EINTR, libc::ETIMEDOUT];

/// Attempts after a transient probe error before the interface is settled on netdev.
pub(crate) const PROBE_RETRIES: u32 = 5;

/// The longest wait between two attempts, in resyncs.
const MAX_BACKOFF: u64 = 16;

/// A routing to try again: at resync number `due`, as attempt `attempt` (1 = first retry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retry {
    /// The resync at which it is due.
    pub(crate) due: u64,
    /// Which retry it will be.
    pub(crate) attempt: u32,
}

impl Retry {
    /// The retry of a routing made as attempt `attempt` (0: the first routing) that ended with
    /// `answer` and `reason`, at resync `now`: due after 1, 2, 4, 8, then every 16 resyncs.
    /// `None` when nothing is worth retrying, or a transient probe error has been retried
    /// [`PROBE_RETRIES`] times.
    pub(crate) fn after(attempt: u32, answer: Answer, reason: Reason, now: u64) -> Option<Self> {
        let transient =
            matches!(answer, Answer::Failed { errno } if TRANSIENT_ERRNOS.contains(&errno));
        let wanted = reason == Reason::EbpfMapFull || (transient && attempt < PROBE_RETRIES);
        wanted.then(|| Self {
            due: now + (1u64 << attempt.min(4)).min(MAX_BACKOFF),
            attempt: attempt + 1,
        })
    }
}
