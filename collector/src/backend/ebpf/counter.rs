//! The eBPF backend as the node uses it: [`TcCounter`] attaches to an interface, checks the
//! attachment is still in place, detaches, and collects. Implemented by [`EbpfCounters`] and
//! by [`Unattached`], which routes without attaching (`linkmeter list`, `check`).

use std::{fmt, time::Duration};

use tracing::warn;

use super::{
    AttachError, AttachMode, AttachedMode, EbpfCounters, InterfaceAttachment, LoadOptions,
    MapReadError, Peer,
};
use crate::{
    Report,
    backend::{Collect, CollectError},
    discovery::Link,
    metrics::{MapOverflow, PeerSnapshot, Snapshot},
    node::Interfaces,
    policy::Backend,
};

/// What an eBPF-routed interface holds while it is measured.
pub(crate) trait Attachment: fmt::Debug {
    /// The mechanism used, or `None` when nothing is attached (a dry run).
    fn mode(&self) -> Option<AttachedMode>;
}

/// The eBPF TC counter, per interface.
pub(crate) trait TcCounter: Collect {
    /// What an attached interface holds; dropping it detaches.
    type Attachment: Attachment;

    /// Attaches to both hooks of `link` with `mode`.
    ///
    /// # Errors
    ///
    /// [`AttachError`] naming the interface and hook; nothing stays attached.
    fn attach(&mut self, link: &Link, mode: AttachMode) -> Result<Self::Attachment, AttachError>;

    /// Whether `attachment` is still in place. A check that cannot be made counts as intact.
    fn is_intact(&self, attachment: &Self::Attachment) -> bool;

    /// Detaches `attachment`; an interface that is gone counts as detached.
    ///
    /// # Errors
    ///
    /// [`AttachError::Detach`] when the kernel refuses.
    fn detach(&mut self, attachment: Self::Attachment) -> Result<(), AttachError>;

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

    /// Removes the legacy tc filters earlier processes of this role left on `ifindex` (after a
    /// SIGKILL, say); returns how many. Nothing to do by default.
    ///
    /// # Errors
    ///
    /// Listing or removing a filter failed.
    fn remove_stale_filters(&mut self, ifindex: u32) -> std::io::Result<usize> {
        let _ = ifindex;
        Ok(0)
    }

    /// Whether attachments stay in the kernel when dropped (pinning): shutting down then
    /// leaves them counting for the next daemon.
    fn persists(&self) -> bool {
        false
    }

    /// After the first routing pass: frees what an earlier daemon pinned for interfaces that
    /// are not `attached` now (their slots, their pinned links). Returns how many interfaces.
    fn settle(&mut self, attached: &[u32]) -> usize {
        let _ = attached;
        0
    }
}

impl Attachment for InterfaceAttachment {
    fn mode(&self) -> Option<AttachedMode> {
        Some(Self::mode(self))
    }
}

impl TcCounter for EbpfCounters {
    type Attachment = InterfaceAttachment;

    fn persists(&self) -> bool {
        self.pins.is_some()
    }

    fn settle(&mut self, attached: &[u32]) -> usize {
        let Some(pins) = self.pins.clone() else {
            return 0;
        };
        let mut gone: Vec<u32> = self.maps.slotted();
        gone.extend(pins.linked());
        gone.retain(|ifindex| !attached.contains(ifindex));
        gone.sort_unstable();
        gone.dedup();
        for &ifindex in &gone {
            for hook in super::Hook::ALL {
                super::pin::unpin(&pins.link(ifindex, hook));
            }
            if let Err(err) = TcCounter::forget(self, ifindex) {
                tracing::warn!(ifindex, error = %crate::Report(&err), "freeing pinned counters");
            }
        }
        gone.len()
    }

    fn remove_stale_filters(&mut self, ifindex: u32) -> std::io::Result<usize> {
        let ours = [self.ids.ingress, self.ids.egress];
        super::legacy::remove_stale_filters(ifindex, Some(self.role), &ours)
    }

    /// Attaches by `link`'s ifindex, never by name: a device deleted and re-created under the
    /// same name has another index (`ENODEV` here; its own link event routes it), and a name
    /// that is not UTF-8 is no obstacle.
    fn attach(
        &mut self,
        link: &Link,
        mode: AttachMode,
    ) -> Result<InterfaceAttachment, AttachError> {
        self.attach_index(link.ifindex, &link.name, mode, link.framing)
    }

    fn is_intact(&self, attachment: &InterfaceAttachment) -> bool {
        Self::is_intact(self, attachment)
    }

    fn detach(&mut self, attachment: InterfaceAttachment) -> Result<(), AttachError> {
        attachment.detach()
    }

    fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        Self::forget(self, ifindex)
    }

    fn expire_peers(&mut self, idle: Duration) -> Result<usize, MapReadError> {
        Self::expire_peers(self, idle)
    }
}

/// The exported form of `peers` of the interfaces in `out` (peers of interfaces the snapshot
/// does not show, being deleted, are left out).
pub(crate) fn peer_snapshots(peers: &[Peer], out: &Snapshot) -> Vec<PeerSnapshot> {
    let mut shown: Vec<PeerSnapshot> = peers
        .iter()
        .filter_map(|peer| {
            let interface = out
                .interfaces
                .binary_search_by_key(&peer.ifindex, |i| i.ifindex)
                .ok()
                .and_then(|at| out.interfaces.get(at))?;
            Some(PeerSnapshot {
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

impl Collect for EbpfCounters {
    const BACKEND: Backend = Backend::Ebpf;

    /// The statistics of every attached interface, the peers, the overflow counters and the
    /// maps' kernel memory.
    async fn collect<A: super::Attachment>(
        &mut self,
        _interfaces: &mut Interfaces<A>,
        out: &mut Snapshot,
    ) -> Vec<CollectError> {
        self.flush_logs();
        let mut failures = Vec::new();
        match self.read_all() {
            Ok(all) => {
                for interface in out.interfaces.iter_mut() {
                    if interface.attach_mode.is_some() {
                        interface.ebpf = all.get(&interface.ifindex).copied();
                    }
                }
            }
            Err(err) => failures.push(err.into()),
        }
        match self.observe_peers() {
            Ok(peers) => out.peers = peer_snapshots(&peers, out),
            Err(err) => failures.push(err.into()),
        }
        match self.overflow() {
            Ok(overflow) => {
                out.map_overflow = MapOverflow {
                    interfaces: overflow.interfaces.packets,
                    peers: overflow.peers.packets,
                };
            }
            Err(err) => failures.push(err.into()),
        }
        out.map_bytes = self
            .map_bytes()
            .into_iter()
            .filter_map(|(map, bytes)| Some((map, bytes?)))
            .collect();
        out.slots = Some(self.maps.slot_usage());
        failures
    }
}

/// An eBPF backend that can be loaded here but attaches nothing: interfaces are routed to it
/// as they would be by the daemon, and show no counts.
#[derive(Debug)]
pub(crate) struct Unattached;

/// What an interface routed to [`Unattached`] holds: nothing.
#[derive(Debug)]
pub(crate) struct Planned;

impl Attachment for Planned {
    fn mode(&self) -> Option<AttachedMode> {
        None
    }
}

impl TcCounter for Unattached {
    type Attachment = Planned;

    fn attach(&mut self, _: &Link, _: AttachMode) -> Result<Planned, AttachError> {
        Ok(Planned)
    }

    fn is_intact(&self, _: &Planned) -> bool {
        true
    }

    fn detach(&mut self, _: Planned) -> Result<(), AttachError> {
        Ok(())
    }

    fn forget(&mut self, _: u32) -> Result<(), MapReadError> {
        Ok(())
    }

    fn expire_peers(&mut self, _: Duration) -> Result<usize, MapReadError> {
        Ok(0)
    }
}

impl Collect for Unattached {
    const BACKEND: Backend = Backend::Ebpf;

    async fn collect<A: super::Attachment>(
        &mut self,
        _: &mut Interfaces<A>,
        _: &mut Snapshot,
    ) -> Vec<CollectError> {
        Vec::new()
    }
}

/// Loads the eBPF counters sized by `options`, or says once, at WARN, why the interfaces that
/// need them fall back to kernel link stats.
pub(crate) fn load_or_explain(options: &LoadOptions) -> Option<EbpfCounters> {
    match EbpfCounters::load(options) {
        Ok(counters) => Some(counters),
        // Counting without pins beats not counting: say so, and go on.
        Err(err @ super::LoadError::Pin(_)) => {
            warn!(error = %Report(&err),
                "pinning unavailable; counting without pins (counters restart with the daemon)");
            load_or_explain(&LoadOptions {
                pin: None,
                ..options.clone()
            })
        }
        Err(err) => {
            warn!(error = %Report(&err),
                "eBPF backend unavailable (needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON and a \
                 BPF-capable kernel); interfaces without ethtool stats fall back to kernel link \
                 stats with reason ebpf_unavailable");
            None
        }
    }
}

/// [`Unattached`] when the eBPF counters could be loaded here (they are unloaded again at
/// once), so that routing shows what the daemon would do; `None` otherwise.
pub(crate) fn unattached_if_loadable(options: &LoadOptions) -> Option<Unattached> {
    EbpfCounters::load(options).ok().map(|_| Unattached)
}
