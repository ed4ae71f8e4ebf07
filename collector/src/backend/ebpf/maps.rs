//! The maps of the counting programs, from user space: the directory of slots (which this side
//! fills), the per-CPU statistics per slot, the per-CPU peer counters and the overflow counters.
//!
//! The kernel keeps one value per possible CPU in the per-CPU maps; a reading is their sum,
//! which is exact (each CPU's share is written only by that CPU).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use aya::maps::{
    Array, IterableMap as _, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues,
};
use collector_common::{
    Counter, DIRECTORY_MAP, Direction, OVERFLOW_INTERFACES, OVERFLOW_MAP, OVERFLOW_PEERS,
    PEERS_MAP, PeerKey, SLOT_RAW_IP, SLOT_TUNNEL, STATS_MAP, Slot, Stats, stats_index,
};

use super::{
    error::{MapReadError, access},
    memory::memlock,
    peer_table::PeerTable,
    peers::{Peer, PeerAges, shown},
    slots::{Slots, Taken},
};

/// The directory flags of an interface whose packets look like `framing`.
pub(crate) const fn slot_flags(framing: crate::discovery::Framing) -> u32 {
    (if framing.tunnel_peers { SLOT_TUNNEL } else { 0 })
        | (if framing.raw_ip { SLOT_RAW_IP } else { 0 })
}

/// Per-direction statistics of one interface, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Received (TC ingress).
    pub rx: Stats,
    /// Transmitted (TC egress).
    pub tx: Stats,
}

/// Per-direction packets and bytes of one interface, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Received (TC ingress).
    pub rx: Counter,
    /// Transmitted (TC egress).
    pub tx: Counter,
}

impl From<&InterfaceStats> for InterfaceCounters {
    fn from(s: &InterfaceStats) -> Self {
        let counter = |s: &Stats| Counter {
            packets: s.packets(),
            bytes: s.bytes(),
        };
        Self {
            rx: counter(&s.rx),
            tx: counter(&s.tx),
        }
    }
}

/// Packets counted as overflow, per map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Packets of an interface that had no slot.
    pub interfaces: Counter,
    /// Packets whose peer did not fit into the peer map.
    pub peers: Counter,
}

/// What [`CounterMaps::peer_counters`] read.
struct PeerCounts {
    /// Each peer's count.
    counts: Vec<(PeerKey, Counter)>,
    /// The peers that hold peer table entries.
    in_table: HashSet<PeerKey>,
    /// Keys in the hash map of interfaces that no longer have their slot.
    stale: Vec<PeerKey>,
}

/// The maps of the counting programs, owned by user space.
pub(crate) struct CounterMaps {
    directory: Array<MapData, Slot>,
    stats: PerCpuArray<MapData, Stats>,
    peers: PerCpuHashMap<MapData, PeerKey, Counter>,
    table: PeerTable,
    overflow: PerCpuArray<MapData, Counter>,
    slots: Slots,
    /// When each peer was last seen moving.
    ages: PeerAges,
    /// Whether a tunnel device has had a slot: from then on the peer table and totals are
    /// read and harvested (a node without one never pays for them).
    tunnels: bool,
    cpus: usize,
    /// Kernel memory of the preallocated maps, read once: it does not change.
    fixed_bytes: [(&'static str, Option<u64>); 4],
}

fn sum<T: aya::Pod + Default>(values: &PerCpuValues<T>, add: impl Fn(&mut T, &T)) -> T {
    values.iter().fold(T::default(), |mut total, cpu| {
        add(&mut total, cpu);
        total
    })
}

impl CounterMaps {
    /// The maps; `mask` is the directory's size minus one, `capacity` the number of slots.
    pub(crate) fn new(
        directory: Array<MapData, Slot>,
        mask: u32,
        stats: PerCpuArray<MapData, Stats>,
        peers: PerCpuHashMap<MapData, PeerKey, Counter>,
        table: PeerTable,
        overflow: PerCpuArray<MapData, Counter>,
        capacity: u32,
    ) -> Result<Self, MapReadError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| MapReadError::Cpus(e))?;
        let fixed_bytes = [
            ("directory", memlock(directory.map())),
            ("stats", memlock(stats.map())),
            ("overflow", memlock(overflow.map())),
            ("peer_table", table.table_bytes()),
        ];
        Ok(Self {
            fixed_bytes,
            directory,
            stats,
            peers,
            table,
            overflow,
            slots: Slots::new(capacity, mask),
            ages: PeerAges::default(),
            tunnels: false,
            cpus,
        })
    }

    /// Gives `ifindex` a slot (zeroed, of a new generation) and publishes it in the directory
    /// with `flags`; an interface that has one keeps it (and its counters), with the new flags.
    pub(crate) fn assign(&mut self, ifindex: u32, flags: u32) -> Result<u32, MapReadError> {
        if flags & SLOT_TUNNEL != 0 {
            self.tunnels = true;
        }
        if let Some(taken) = self.slots.reflag(ifindex, flags) {
            self.publish(ifindex, taken)?;
            return Ok(taken.slot);
        }
        // Checked before a generation is spent on it.
        self.slots.next_for(ifindex, flags, 0)?;
        let generation = self.table.next_generation()?;
        let taken = self.slots.next_for(ifindex, flags, generation)?;
        for direction in Direction::ALL {
            let zero = PerCpuValues::try_from(vec![Stats::default(); self.cpus])
                .map_err(MapReadError::Cpus)?;
            self.stats
                .set(stats_index(taken.slot, direction), zero, 0)
                .map_err(access(STATS_MAP))?;
        }
        self.publish(ifindex, taken)?;
        self.slots.take(ifindex, taken);
        Ok(taken.slot)
    }

    fn publish(&mut self, ifindex: u32, taken: Taken) -> Result<(), MapReadError> {
        let entry = Slot {
            ifindex,
            index: taken.slot,
            flags: taken.flags,
            generation: taken.generation,
            reserved: 0,
        };
        self.directory
            .set(taken.position, entry, 0)
            .map_err(access(DIRECTORY_MAP))
    }

    /// Takes over the slots the directory already lists (pinned maps of an earlier daemon):
    /// their counters continue. Entries that cannot be ours (a slot out of range or taken
    /// twice, a position the program would not probe for that ifindex) are cleared, and so are
    /// those of an ifindex that is not the same device any more (`same_device` says no: its
    /// counters were another device's). Returns how many interfaces were adopted.
    pub(crate) fn adopt(
        &mut self,
        same_device: impl Fn(u32) -> bool,
    ) -> Result<usize, MapReadError> {
        let entries: Vec<(u32, Slot)> = self
            .directory
            .iter()
            .enumerate()
            .filter_map(|(position, entry)| Some((u32::try_from(position).ok()?, entry.ok()?)))
            .filter(|(_, entry)| entry.ifindex != 0)
            .collect();
        for (position, entry) in entries {
            let taken = Taken {
                slot: entry.index,
                position,
                flags: entry.flags,
                generation: entry.generation,
            };
            if !same_device(entry.ifindex) || !self.slots.adopt(entry.ifindex, position, taken) {
                self.directory
                    .set(position, Slot::default(), 0)
                    .map_err(access(DIRECTORY_MAP))?;
            }
        }
        self.tunnels |= self.slots.any_flagged(SLOT_TUNNEL);
        Ok(self.slots.len())
    }

    /// Interface slots (used, free).
    pub(crate) fn slot_usage(&self) -> (u64, u64) {
        self.slots.usage()
    }

    /// The ifindexes that have a slot.
    pub(crate) fn slotted(&self) -> Vec<u32> {
        self.slots.slotted().collect()
    }

    /// Kernel memory of each map by its label (`map`) in the self-metrics; only the peer hash
    /// and the peer totals, allocated as peers appear, are read again.
    pub(crate) fn map_bytes(&self) -> Vec<(&'static str, Option<u64>)> {
        let mut out = self.fixed_bytes.to_vec();
        out.push(("peers", memlock(self.peers.map())));
        out.push(("peer_totals", self.table.totals_bytes()));
        out
    }

    /// Takes `ifindex` out of the directory and frees its slot; returns the flags it had, or
    /// `None` when it had no slot. Its counters are zeroed when the slot is given out again.
    fn release(&mut self, ifindex: u32) -> Result<Option<u32>, MapReadError> {
        let Some(taken) = self.slots.release(ifindex) else {
            return Ok(None);
        };
        self.directory
            .set(taken.position, Slot::default(), 0)
            .map_err(access(DIRECTORY_MAP))?;
        Ok(Some(taken.flags))
    }

    /// Statistics of `ifindex`; `None` when it has no slot.
    pub(crate) fn interface(&self, ifindex: u32) -> Result<Option<InterfaceStats>, MapReadError> {
        let Some(Taken { slot, .. }) = self.slots.get(ifindex) else {
            return Ok(None);
        };
        let read = |direction| -> Result<Stats, MapReadError> {
            let values = self
                .stats
                .get(&stats_index(slot, direction), 0)
                .map_err(access(STATS_MAP))?;
            Ok(sum(&values, Stats::add))
        };
        Ok(Some(InterfaceStats {
            rx: read(Direction::Ingress)?,
            tx: read(Direction::Egress)?,
        }))
    }

    /// Statistics of every interface that has a slot, keyed by ifindex.
    pub(crate) fn all(&self) -> Result<BTreeMap<u32, InterfaceStats>, MapReadError> {
        let mut out = BTreeMap::new();
        for ifindex in self.slots.slotted() {
            if let Some(stats) = self.interface(ifindex)? {
                out.insert(ifindex, stats);
            }
        }
        Ok(out)
    }

    /// Traffic per tunnel device, direction and remote endpoint.
    pub(crate) fn peers(&self) -> Result<Vec<Peer>, MapReadError> {
        Ok(shown(&self.peer_counters()?.counts))
    }

    /// Every peer of an interface that has its slot (its count in the hash map, the table and
    /// the totals), the peers that hold table entries, and the hash map's keys of removed
    /// interfaces.
    fn peer_counters(&self) -> Result<PeerCounts, MapReadError> {
        let slots = &self.slots;
        let live = |key: &PeerKey| slots.holds(key.ifindex, key.generation);
        let mut counts: HashMap<PeerKey, Counter> = HashMap::new();
        let mut in_table = HashSet::new();
        let mut stale = Vec::new();
        // Only a tunnel device has peers: before one, nothing to read.
        if self.tunnels {
            self.table.add_counts(&mut counts, &mut in_table, &live)?;
        }
        for entry in self.peers.iter() {
            match entry {
                Ok((key, values)) if live(&key) => counts
                    .entry(key)
                    .or_default()
                    .add(&sum(&values, Counter::add)),
                Ok((key, _)) => stale.push(key),
                // The entry was deleted while iterating: skip it.
                Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(access(PEERS_MAP)(source)),
            }
        }
        Ok(PeerCounts {
            counts: counts.into_iter().collect(),
            in_table,
            stale,
        })
    }

    /// Frees the slot of `ifindex`, takes it out of the directory and removes its peers from
    /// the hash map, e.g. after its interface was deleted. Its counters are gone: its peers in
    /// the peer table are no longer shown (their key's generation is no slot's) and go at the
    /// next harvest; a later attachment starts from zero.
    pub(crate) fn forget(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        // Only a tunnel device has peers: other interfaces leave without a walk of the map.
        let Some(flags) = self.release(ifindex)? else {
            return Ok(());
        };
        if flags & SLOT_TUNNEL != 0 {
            let keys: Vec<PeerKey> = self
                .peers
                .keys()
                .filter_map(Result::ok)
                .filter(|key| key.ifindex == ifindex)
                .collect();
            for key in keys {
                self.remove_peer(&key)?;
            }
        }
        Ok(())
    }

    /// Reads the peers and records which moved (for [`CounterMaps::expire_peers`]).
    pub(crate) fn observe_peers(&mut self) -> Result<Vec<Peer>, MapReadError> {
        let counts = self.peer_counters()?.counts;
        self.ages.observe(&counts, Instant::now());
        Ok(shown(&counts))
    }

    /// Empties the retired half of the peer table into the totals, reads the peers, records
    /// which moved, and forgets those whose count has not moved for `idle` and that hold no
    /// table entry (a peer's entries are carried into its total within two harvests); returns
    /// how many were forgotten. A packet of such a peer counted between this read and the
    /// removal (microseconds, after `idle` of silence) is lost with it. The peers of removed
    /// interfaces (left by a daemon that stopped before it could forget them) go as well.
    pub(crate) fn expire_peers(&mut self, idle: Duration) -> Result<usize, MapReadError> {
        if self.tunnels {
            let slots = &self.slots;
            self.table
                .harvest(&|key: &PeerKey| slots.holds(key.ifindex, key.generation))?;
        }
        let now = Instant::now();
        let PeerCounts {
            counts,
            in_table,
            stale,
        } = self.peer_counters()?;
        self.ages.observe(&counts, now);
        for key in &stale {
            self.remove_peer(key)?;
        }
        let mut removed = 0;
        for (key, _) in self.ages.idle(idle, now) {
            if !in_table.contains(&key) {
                self.remove_peer(&key)?;
                self.table.forget(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes a peer's counter (a missing one is fine).
    fn remove_peer(&mut self, key: &PeerKey) -> Result<(), MapReadError> {
        match self.peers.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(ref e))
                if e.io_error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(source) => Err(access(PEERS_MAP)(source)),
        }
    }

    /// Packets (and their bytes) counted as overflow.
    pub(crate) fn overflow(&self) -> Result<Overflow, MapReadError> {
        let read = |index| -> Result<Counter, MapReadError> {
            let values = self.overflow.get(&index, 0).map_err(access(OVERFLOW_MAP))?;
            Ok(sum(&values, Counter::add))
        };
        Ok(Overflow {
            interfaces: read(OVERFLOW_INTERFACES)?,
            peers: read(OVERFLOW_PEERS)?,
        })
    }
}
