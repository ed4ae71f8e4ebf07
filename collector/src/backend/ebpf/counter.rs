//! The eBPF backend as the node uses it: [`TcCounter`]. Its reads and map updates are single
//! `bpf(2)` calls, made on the caller's thread; attaching, detaching, checking attachments and
//! removing stale filters may wait on netlink, and are [`Pending`]: they run on the hook worker's
//! thread (`worker`), and the node awaits their answer among its other work. Implemented by
//! [`Counting`] (the daemon's and the one-shot commands'), by [`Unattached`] (routes without
//! attaching: `linkmeter list`, `check`) and by a fixture in the tests.

use std::{collections::BTreeMap, future::Future, time::Duration};

use futures_util::{FutureExt as _, future::LocalBoxFuture};
use tracing::warn;

pub(crate) use super::worker::{AttachmentId, CheckReport};
use super::{
    AttachError, AttachMode, AttachedMode, Counters, EbpfCounters, InterfaceStats, LoadError,
    LoadOptions, MapReadError, Overflow, Peer, maps::slot_flags, worker::HookWorker,
};
use crate::{Report, discovery::Link};

/// Kernel work that may wait: it runs elsewhere, and awaiting it only waits for its answer.
pub(crate) type Pending<T> = LocalBoxFuture<'static, T>;

/// The answer of work that has it at once.
fn ready<T: 'static>(value: T) -> Pending<T> {
    std::future::ready(value).boxed_local()
}

/// The eBPF TC counter, per interface.
pub(crate) trait TcCounter {
    /// Gives `link` a counter slot (an interface that has one keeps it and its counters), then
    /// attaches the programs to both its hooks, as `id`, with `mode`. Answers the mechanism
    /// used (`None`: nothing is attached, a dry run); on failure nothing stays attached, and the
    /// slot stays for the caller to free ([`TcCounter::forget`]).
    fn attach(
        &mut self,
        id: AttachmentId,
        link: &Link,
        mode: AttachMode,
    ) -> Pending<Result<Option<AttachedMode>, AttachError>>;

    /// Detaches `id` (after its attach, when that is still running); an interface that is gone
    /// counts as detached.
    fn detach(&mut self, id: AttachmentId) -> Pending<Result<(), AttachError>>;

    /// Which of `ids` are no longer in place (someone else removed them), and where the others
    /// stand on their hooks, moved back to the head where another program was placed before
    /// them. A check that cannot be made counts as in place and first.
    fn check(&mut self, ids: Vec<AttachmentId>) -> Pending<CheckReport>;

    /// Removes from `ifindexes` the legacy tc filters earlier processes of this role left
    /// (after a SIGKILL, say); answers how many.
    fn remove_stale_filters(&mut self, ifindexes: Vec<u32>) -> Pending<usize>;

    /// Lets go of every attachment: detached, or left counting for the next daemon when they
    /// persist ([`TcCounter::persists`]). Answers when done.
    fn release(&mut self) -> Pending<()>;

    /// Whether attachments stay in the kernel when let go of (pinning).
    fn persists(&self) -> bool {
        false
    }

    /// Statistics of every interface with a slot, by ifindex.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses a lookup.
    fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError>;

    /// Traffic per tunnel device, direction and remote endpoint (recording which moved, for
    /// [`TcCounter::expire_peers`]).
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses the iteration.
    fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError>;

    /// Packets counted as overflow.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses a lookup.
    fn overflow(&self) -> Result<Overflow, MapReadError>;

    /// Kernel memory of each map (`None` where it cannot be read).
    fn map_bytes(&self) -> Vec<(&'static str, Option<u64>)> {
        Vec::new()
    }

    /// Interface slots (used, free), when there are maps.
    fn slot_usage(&self) -> Option<(u64, u64)> {
        None
    }

    /// Forwards pending log records of the programs.
    fn flush_logs(&mut self) {}

    /// Frees the counters of `ifindex` (its interface is gone, or a new lifetime begins).
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses.
    fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError>;

    /// Removes the peers whose counters have not moved for `idle`; returns how many.
    ///
    /// # Errors
    ///
    /// [`MapReadError`] when the kernel refuses.
    fn expire_peers(&mut self, idle: Duration) -> Result<usize, MapReadError>;

    /// After the first routing pass: frees what an earlier daemon pinned for interfaces that
    /// are not `attached` now (their slots, their pinned links). Returns how many interfaces.
    fn settle(&mut self, attached: &[u32]) -> usize {
        let _ = attached;
        0
    }
}

/// The answer of the worker's `answer`, or `stopped` when the worker is gone (it panicked).
fn answered<T: 'static>(
    answer: impl Future<Output = Result<T, tokio::sync::oneshot::error::RecvError>> + 'static,
    stopped: impl FnOnce() -> T + 'static,
) -> Pending<T> {
    async move { answer.await.unwrap_or_else(|_| stopped()) }.boxed_local()
}

/// The eBPF counter at work: the maps, read and updated on the caller's thread, and the
/// programs on the hook worker's thread, which attaches, detaches and checks.
#[derive(Debug)]
pub(crate) struct Counting {
    counters: Counters,
    worker: HookWorker,
}

impl Counting {
    /// Loads the counters sized by `options` and starts the hook worker (in the calling
    /// thread's network namespace).
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the object cannot be loaded, or the worker cannot be started.
    pub(crate) fn load(options: &LoadOptions) -> Result<Self, LoadError> {
        let (counters, programs) = EbpfCounters::load(options)?.into_parts();
        let worker = HookWorker::spawn(programs).map_err(LoadError::Worker)?;
        Ok(Self { counters, worker })
    }
}

impl TcCounter for Counting {
    fn attach(
        &mut self,
        id: AttachmentId,
        link: &Link,
        mode: AttachMode,
    ) -> Pending<Result<Option<AttachedMode>, AttachError>> {
        if let Err(source) = self
            .counters
            .maps
            .assign(link.ifindex, slot_flags(link.framing))
        {
            return ready(Err(AttachError::Slot {
                interface: link.name.clone(),
                source,
            }));
        }
        let interface = link.name.clone();
        answered(
            self.worker
                .attach(id, link.ifindex, &link.name, mode)
                .map(|answer| answer.map(|attached| attached.map(Some))),
            move || Err(AttachError::Stopped { interface }),
        )
    }

    fn detach(&mut self, id: AttachmentId) -> Pending<Result<(), AttachError>> {
        answered(self.worker.detach(id), || Ok(()))
    }

    fn check(&mut self, ids: Vec<AttachmentId>) -> Pending<CheckReport> {
        answered(self.worker.check(ids), CheckReport::default)
    }

    fn remove_stale_filters(&mut self, ifindexes: Vec<u32>) -> Pending<usize> {
        answered(self.worker.remove_stale_filters(ifindexes), || 0)
    }

    fn release(&mut self) -> Pending<()> {
        answered(self.worker.release(), || ())
    }

    fn persists(&self) -> bool {
        self.counters.pins.is_some()
    }

    fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        self.counters.maps.all()
    }

    fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError> {
        self.counters.maps.observe_peers()
    }

    fn overflow(&self) -> Result<Overflow, MapReadError> {
        self.counters.maps.overflow()
    }

    fn map_bytes(&self) -> Vec<(&'static str, Option<u64>)> {
        self.counters.maps.map_bytes()
    }

    fn slot_usage(&self) -> Option<(u64, u64)> {
        Some(self.counters.maps.slot_usage())
    }

    fn flush_logs(&mut self) {
        self.counters.flush_logs();
    }

    fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        self.counters.maps.forget(ifindex)
    }

    fn expire_peers(&mut self, idle: Duration) -> Result<usize, MapReadError> {
        self.counters.maps.expire_peers(idle)
    }

    fn settle(&mut self, attached: &[u32]) -> usize {
        self.counters.settle(attached)
    }
}

/// An eBPF backend that can be loaded here but attaches nothing: interfaces are routed to it
/// as they would be by the daemon, and show no counts.
#[derive(Debug)]
pub(crate) struct Unattached;

impl TcCounter for Unattached {
    fn attach(
        &mut self,
        _: AttachmentId,
        _: &Link,
        _: AttachMode,
    ) -> Pending<Result<Option<AttachedMode>, AttachError>> {
        ready(Ok(None))
    }

    fn detach(&mut self, _: AttachmentId) -> Pending<Result<(), AttachError>> {
        ready(Ok(()))
    }

    fn check(&mut self, _: Vec<AttachmentId>) -> Pending<CheckReport> {
        ready(CheckReport::default())
    }

    fn remove_stale_filters(&mut self, _: Vec<u32>) -> Pending<usize> {
        ready(0)
    }

    fn release(&mut self) -> Pending<()> {
        ready(())
    }

    fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        Ok(BTreeMap::new())
    }

    fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError> {
        Ok(Vec::new())
    }

    fn overflow(&self) -> Result<Overflow, MapReadError> {
        Ok(Overflow::default())
    }

    fn forget(&mut self, _: u32) -> Result<(), MapReadError> {
        Ok(())
    }

    fn expire_peers(&mut self, _: Duration) -> Result<usize, MapReadError> {
        Ok(0)
    }
}

/// Loads the eBPF counters sized by `options`, or says once, at WARN, why the interfaces that
/// need them fall back to kernel link stats.
pub(crate) fn load_or_explain(options: &LoadOptions) -> Option<Counting> {
    match Counting::load(options) {
        Ok(counting) => Some(counting),
        // Counting without pins beats not counting: say so, and go on.
        Err(err @ LoadError::Pin(_)) => {
            warn!(error = %Report(&err),
                "pinning unavailable; counting without pins (counters restart with the daemon)");
            load_or_explain(&LoadOptions {
                pin: None,
                ..options.clone()
            })
        }
        Err(err) => {
            warn!(error = %Report(&err), cause = err.what_failed(),
                "eBPF backend unavailable; interfaces without ethtool stats fall back to kernel \
                 link stats with reason ebpf_unavailable");
            None
        }
    }
}

/// [`Unattached`] when the eBPF counters could be loaded here (they are unloaded again at
/// once), so that routing shows what the daemon would do; `None` otherwise.
pub(crate) fn unattached_if_loadable(options: &LoadOptions) -> Option<Unattached> {
    EbpfCounters::load(options).ok().map(|_| Unattached)
}
