//! A fixture eBPF backend for the node's tests: attaches unless told to refuse an interface,
//! can have an attachment removed "by someone else", can leave its kernel work unanswered (a
//! netlink answer that never comes), and reports the counts, overflow and read failures the
//! test sets. Cloning shares the state, so a test keeps a handle on what the node owns.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use aya::maps::MapError;
use collector_common::{Counter, Direction, Protocol, Stats};
use futures_util::FutureExt as _;

use super::{
    AttachError, AttachMode, AttachedMode, AttachmentId, CheckReport, InterfaceStats, MapReadError,
    Overflow, Peer, Pending, Placement, TcCounter,
};
use crate::discovery::Link;

#[derive(Debug, Default)]
struct State {
    /// Our attachments, by id: the interface they are on.
    attached: HashMap<AttachmentId, u32>,
    attaches: usize,
    detaches: usize,
    forgotten: Vec<u32>,
    refused: BTreeSet<String>,
    /// Counter slots; `None`: unlimited.
    slots: Option<usize>,
    /// Interfaces with a slot.
    slotted: BTreeSet<u32>,
    counts: BTreeMap<u32, InterfaceStats>,
    peers: Vec<Peer>,
    idle_peers: usize,
    overflow: u64,
    failing_reads: bool,
    /// Kernel work is left unanswered while set.
    stalled: bool,
    /// What each `settle` was given.
    settles: Vec<Vec<u32>>,
    /// What each `remove_stale_filters` was given.
    stale_checks: Vec<Vec<u32>>,
    /// Whether `release` was called.
    released: bool,
    /// Attachments stay in the kernel when let go of (pinning).
    persisting: bool,
    /// Attachments another program was placed before, on both hooks: how many programs.
    ahead: HashMap<AttachmentId, u32>,
}

/// Statistics of `packets` IPv4 UDP packets of 100 bytes.
pub(crate) fn udp_stats(packets: u64) -> Stats {
    let mut stats = Stats::default();
    stats.protocols[Protocol::Ipv4Udp as usize] = Counter {
        packets,
        bytes: packets * 100,
    };
    stats.sizes[1] = packets;
    stats
}

/// The fixture backend (its attachments are "TCX").
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeEbpf(Arc<Mutex<State>>);

impl FakeEbpf {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `answer`, or an answer that never comes while the kernel is stalled.
    fn answer<T: 'static>(&self, answer: T) -> Pending<T> {
        if self.state().stalled {
            std::future::pending().boxed_local()
        } else {
            std::future::ready(answer).boxed_local()
        }
    }

    /// Makes attaching to `name` fail.
    pub(crate) fn refuse(&self, name: &str) {
        self.state().refused.insert(name.to_owned());
    }

    /// Gives the fixture maps `slots` counter slots: attaching beyond them fails as map full.
    pub(crate) fn set_slots(&self, slots: usize) {
        self.state().slots = Some(slots);
    }

    /// Leaves every later attach, detach, check and filter removal unanswered (`true`), as a
    /// kernel whose netlink answer never comes, or answers them again.
    pub(crate) fn stall(&self, stalled: bool) {
        self.state().stalled = stalled;
    }

    /// Makes attachments stay in the kernel when let go of (`true`), as with pinning.
    pub(crate) fn persist(&self, persisting: bool) {
        self.state().persisting = persisting;
    }

    /// Removes our attachment from `ifindex`, as another tool would.
    pub(crate) fn remove_attachment(&self, ifindex: u32) {
        self.state().attached.retain(|_, on| *on != ifindex);
    }

    /// Places `programs` programs before ours on both hooks of `ifindex`: the next check moves
    /// ours back to the head.
    pub(crate) fn place_before(&self, ifindex: u32, programs: u32) {
        let mut state = self.state();
        let ids: Vec<AttachmentId> = state
            .attached
            .iter()
            .filter(|(_, on)| **on == ifindex)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            state.ahead.insert(id, programs);
        }
    }

    /// Whether our program is attached to `ifindex`.
    pub(crate) fn is_attached(&self, ifindex: u32) -> bool {
        self.state().attached.values().any(|on| *on == ifindex)
    }

    /// Sets the counters of `ifindex`: `rx` and `tx` IPv4 UDP packets of 100 bytes.
    pub(crate) fn set_counts(&self, ifindex: u32, rx: u64, tx: u64) {
        self.state().counts.insert(
            ifindex,
            InterfaceStats {
                rx: udp_stats(rx),
                tx: udp_stats(tx),
            },
        );
    }

    /// Adds traffic of `packets` 100-byte packets sent by `ifindex` to `endpoint`.
    pub(crate) fn add_peer(&self, ifindex: u32, endpoint: Option<std::net::IpAddr>, packets: u64) {
        self.state().peers.push(Peer {
            ifindex,
            direction: Direction::Egress,
            endpoint,
            counter: Counter {
                packets,
                bytes: packets * 100,
            },
        });
    }

    /// Makes the next `expire_peers` forget `n` peers.
    pub(crate) fn make_peers_idle(&self, n: usize) {
        self.state().idle_peers = n;
    }

    /// How many peers are left.
    pub(crate) fn peer_count(&self) -> usize {
        self.state().peers.len()
    }

    /// Sets the packets counted as overflow (the map is full).
    pub(crate) fn set_overflow(&self, packets: u64) {
        self.state().overflow = packets;
    }

    /// Makes map reads fail (`true`) or succeed again.
    pub(crate) fn fail_reads(&self, failing: bool) {
        self.state().failing_reads = failing;
    }

    /// What each call of `settle` was given (the attached ifindexes).
    pub(crate) fn settles(&self) -> Vec<Vec<u32>> {
        self.state().settles.clone()
    }

    /// What each call of `remove_stale_filters` was given.
    pub(crate) fn stale_checks(&self) -> Vec<Vec<u32>> {
        self.state().stale_checks.clone()
    }

    /// Whether every attachment was let go of (shutdown).
    pub(crate) fn released(&self) -> bool {
        self.state().released
    }

    /// How many attachments were made.
    pub(crate) fn attaches(&self) -> usize {
        self.state().attaches
    }

    /// How many attachments were detached.
    pub(crate) fn detaches(&self) -> usize {
        self.state().detaches
    }

    /// The ifindexes whose counters were freed, in order.
    pub(crate) fn forgotten(&self) -> Vec<u32> {
        self.state().forgotten.clone()
    }

    fn read_error() -> MapReadError {
        MapReadError::Access {
            map: "LINKMETER_STATS",
            source: MapError::KeyNotFound,
        }
    }
}

impl TcCounter for FakeEbpf {
    fn attach(
        &mut self,
        id: AttachmentId,
        link: &Link,
        _: AttachMode,
    ) -> Pending<Result<Option<AttachedMode>, AttachError>> {
        let result = {
            let mut state = self.state();
            let full = state.slots.is_some_and(|capacity| {
                !state.slotted.contains(&link.ifindex) && state.slotted.len() >= capacity
            });
            if full {
                Err(AttachError::Slot {
                    interface: link.name.clone(),
                    source: MapReadError::Full {
                        capacity: u32::try_from(state.slots.unwrap_or(0)).unwrap_or(u32::MAX),
                    },
                })
            } else if state.refused.contains(&link.name) {
                state.slotted.insert(link.ifindex);
                Err(AttachError::NoSuchInterface {
                    interface: link.name.clone(),
                })
            } else {
                state.slotted.insert(link.ifindex);
                state.attaches += 1;
                state.attached.insert(id, link.ifindex);
                Ok(Some(AttachedMode::Tcx))
            }
        };
        self.answer(result)
    }

    fn detach(&mut self, id: AttachmentId) -> Pending<Result<(), AttachError>> {
        {
            let mut state = self.state();
            state.detaches += 1;
            state.attached.remove(&id);
        }
        self.answer(Ok(()))
    }

    fn check(&mut self, ids: Vec<AttachmentId>) -> Pending<CheckReport> {
        let report = {
            let mut state = self.state();
            let mut report = CheckReport::default();
            for id in ids {
                if state.attached.contains_key(&id) {
                    let placed = state.ahead.remove(&id).map_or_else(Default::default, |n| {
                        [Placement {
                            ahead: 0,
                            moved_from: Some(n),
                        }; 2]
                    });
                    report.placed.push((id, placed));
                } else {
                    report.removed.push(id);
                }
            }
            report
        };
        self.answer(report)
    }

    fn remove_stale_filters(&mut self, ifindexes: Vec<u32>) -> Pending<usize> {
        self.state().stale_checks.push(ifindexes);
        self.answer(0)
    }

    fn release(&mut self) -> Pending<()> {
        {
            let mut state = self.state();
            state.released = true;
            if !state.persisting {
                state.attached.clear();
            }
        }
        self.answer(())
    }

    fn persists(&self) -> bool {
        self.state().persisting
    }

    fn read_all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        let state = self.state();
        if state.failing_reads {
            return Err(Self::read_error());
        }
        Ok(state
            .slotted
            .iter()
            .map(|i| (*i, state.counts.get(i).copied().unwrap_or_default()))
            .collect())
    }

    fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError> {
        Ok(self.state().peers.clone())
    }

    fn overflow(&self) -> Result<Overflow, MapReadError> {
        Ok(Overflow {
            interfaces: Counter {
                packets: self.state().overflow,
                bytes: 0,
            },
            peers: Counter::default(),
        })
    }

    fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        let mut state = self.state();
        state.forgotten.push(ifindex);
        state.slotted.remove(&ifindex);
        state.counts.remove(&ifindex);
        state.peers.retain(|p| p.ifindex != ifindex);
        Ok(())
    }

    fn settle(&mut self, attached: &[u32]) -> usize {
        self.state().settles.push(attached.to_vec());
        0
    }

    fn expire_peers(&mut self, _: Duration) -> Result<usize, MapReadError> {
        let mut state = self.state();
        let n = state.idle_peers.min(state.peers.len());
        state.peers.drain(..n);
        state.idle_peers = 0;
        Ok(n)
    }
}
