//! A fixture eBPF backend for the node's tests: attaches unless told to refuse an interface,
//! can have an attachment removed "by someone else", and reports the counts, overflow and read
//! failures the test sets. Cloning shares the state, so a test keeps a handle on what the
//! node owns.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
};

use std::time::Duration;

use aya::maps::MapError;
use collector_common::{Counter, Direction, Protocol, Stats};

use super::{
    AttachError, AttachMode, AttachedMode, Attachment, InterfaceStats, MapReadError, Peer,
    TcCounter, counter::peer_snapshots,
};
use crate::{
    backend::{Collect, CollectError},
    discovery::Link,
    metrics::{MapOverflow, Snapshot},
    node::Interfaces,
    policy::Backend,
};

#[derive(Debug, Default)]
struct State {
    /// Interfaces our program is attached to.
    attached: BTreeSet<u32>,
    attaches: usize,
    detaches: usize,
    forgotten: Vec<u32>,
    refused: BTreeSet<String>,
    /// Counter slots; `None`: unlimited.
    slots: Option<usize>,
    counts: BTreeMap<u32, InterfaceStats>,
    peers: Vec<Peer>,
    idle_peers: usize,
    overflow: u64,
    failing_reads: bool,
    /// What each `settle` was given.
    settles: Vec<Vec<u32>>,
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

/// The fixture backend.
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeEbpf(Arc<Mutex<State>>);

/// An attachment of [`FakeEbpf`] (always "TCX").
#[derive(Debug)]
pub(crate) struct FakeAttachment {
    ifindex: u32,
}

impl Attachment for FakeAttachment {
    fn mode(&self) -> Option<AttachedMode> {
        Some(AttachedMode::Tcx)
    }
}

impl FakeEbpf {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes attaching to `name` fail.
    pub(crate) fn refuse(&self, name: &str) {
        self.state().refused.insert(name.to_owned());
    }

    /// Gives the fixture maps `slots` counter slots: attaching beyond them fails as map full.
    pub(crate) fn set_slots(&self, slots: usize) {
        self.state().slots = Some(slots);
    }

    /// Removes our attachment from `ifindex`, as another tool would.
    pub(crate) fn remove_attachment(&self, ifindex: u32) {
        self.state().attached.remove(&ifindex);
    }

    /// Whether our program is attached to `ifindex`.
    pub(crate) fn is_attached(&self, ifindex: u32) -> bool {
        self.state().attached.contains(&ifindex)
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
}

impl TcCounter for FakeEbpf {
    type Attachment = FakeAttachment;

    fn attach(&mut self, link: &Link, _: AttachMode) -> Result<FakeAttachment, AttachError> {
        let mut state = self.state();
        if state.refused.contains(&link.name) {
            return Err(AttachError::NoSuchInterface {
                interface: link.name.clone(),
            });
        }
        if let Some(capacity) = state.slots
            && state.attached.len() >= capacity
        {
            return Err(AttachError::Slot {
                interface: link.name.clone(),
                source: MapReadError::Full {
                    capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
                },
            });
        }
        state.attaches += 1;
        state.attached.insert(link.ifindex);
        Ok(FakeAttachment {
            ifindex: link.ifindex,
        })
    }

    fn is_intact(&self, attachment: &FakeAttachment) -> bool {
        self.state().attached.contains(&attachment.ifindex)
    }

    fn detach(&mut self, attachment: FakeAttachment) -> Result<(), AttachError> {
        let mut state = self.state();
        state.detaches += 1;
        state.attached.remove(&attachment.ifindex);
        Ok(())
    }

    fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        let mut state = self.state();
        state.forgotten.push(ifindex);
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

impl Collect for FakeEbpf {
    const BACKEND: Backend = Backend::Ebpf;

    async fn collect<A: Attachment>(
        &mut self,
        _: &mut Interfaces<A>,
        out: &mut Snapshot,
    ) -> Vec<CollectError> {
        let state = self.state();
        if state.failing_reads {
            return vec![CollectError::Ebpf(MapReadError::Access {
                map: "LINKMETER_STATS",
                source: MapError::KeyNotFound,
            })];
        }
        for interface in out.interfaces.iter_mut() {
            if interface.attach_mode.is_some() {
                interface.ebpf = Some(
                    state
                        .counts
                        .get(&interface.ifindex)
                        .copied()
                        .unwrap_or_default(),
                );
            }
        }
        out.peers = peer_snapshots(&state.peers, out);
        out.map_overflow = MapOverflow {
            interfaces: state.overflow,
            peers: 0,
        };
        Vec::new()
    }
}
