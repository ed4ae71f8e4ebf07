//! The peer table as user space keeps it: two halves of per-CPU entries that the programs fill
//! without a hash lookup, and the totals of the halves emptied so far.
//!
//! The programs count each peer in the *live* half (named by the control map), claiming a free
//! entry of their CPU's copy with plain stores. User space never writes an entry a program may
//! be using: at each resync it empties the *other* half — which no program has written since
//! the previous swap, at least a second earlier — into the totals map, then makes it the live
//! one. So a peer's count is its total plus its entries in both halves (plus the hash map for
//! the peers whose probed entries were taken), and an idle peer leaves the table within two
//! resyncs without a write racing a CPU.
//!
//! Each key carries the generation of its device's slot (given out here, from a counter pinned
//! with the maps): an entry or total whose (ifindex, generation) no slot holds any more belongs
//! to a removed device. It is never shown and is dropped at the next harvest, so a later device
//! with the same ifindex starts from zero, also under a restarted daemon.
//!
//! A harvest is safe to interrupt: it records its sequence number and half in the control map
//! before it starts, and tags each total with the last entry added to it
//! ([`harvest_tag`]); a daemon that finds a harvest unfinished (its predecessor was killed)
//! does it again, skipping what was added already.

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, IterableMap as _, MapData, MapError, PerCpuArray, PerCpuValues};
use collector_common::{
    Counter, PEER_CONTROL_GENERATION, PEER_CONTROL_HARVESTING, PEER_CONTROL_LIVE, PEER_CONTROL_MAP,
    PEER_CONTROL_SEQUENCE, PEER_TABLE_MAP, PEER_TOTALS_MAP, PeerEntry, PeerKey, PeerTotal,
    harvest_tag,
};

use super::{
    batch,
    error::{MapReadError, access},
    memory::memlock,
};

/// How long a half must have been out of the programs' use before it is emptied: far longer
/// than any program runs.
const SETTLE: Duration = Duration::from_secs(1);

/// The peer table's maps and what user space remembers of them.
pub(crate) struct PeerTable {
    table: PerCpuArray<MapData, PeerEntry>,
    control: Array<MapData, u32>,
    totals: HashMap<MapData, PeerKey, PeerTotal>,
    /// Entries of one half; 0: the table is off (the programs use the hash map alone).
    half: u32,
    cpus: usize,
    /// When the live half last changed.
    swapped: Instant,
}

/// Whether a peer key belongs to an interface that still has its slot (same ifindex and
/// generation).
pub(crate) type Live<'a> = &'a dyn Fn(&PeerKey) -> bool;

impl PeerTable {
    /// The table over its maps; `half` entries per half (0: off), `cpus` possible CPUs.
    pub(crate) fn new(
        table: PerCpuArray<MapData, PeerEntry>,
        control: Array<MapData, u32>,
        totals: HashMap<MapData, PeerKey, PeerTotal>,
        half: u32,
        cpus: usize,
    ) -> Self {
        Self {
            table,
            control,
            totals,
            half,
            cpus,
            swapped: Instant::now(),
        }
    }

    /// Kernel memory of the table (preallocated).
    pub(crate) fn table_bytes(&self) -> Option<u64> {
        memlock(self.table.map())
    }

    /// Kernel memory of the totals (allocated as peers are carried).
    pub(crate) fn totals_bytes(&self) -> Option<u64> {
        memlock(self.totals.map())
    }

    fn control(&self, index: u32) -> Result<u32, MapReadError> {
        self.control
            .get(&index, 0)
            .map_err(access(PEER_CONTROL_MAP))
    }

    fn set_control(&mut self, index: u32, value: u32) -> Result<(), MapReadError> {
        self.control
            .set(index, value, 0)
            .map_err(access(PEER_CONTROL_MAP))
    }

    /// Prepares the maps at load: finishes a harvest that an earlier daemon began and did not
    /// finish (pinned maps), carrying every entry (which slots are live is not known yet: stale
    /// totals go at the next harvest); returns whether there was one.
    pub(crate) fn prepare(&mut self) -> Result<bool, MapReadError> {
        self.recover(&|_| true)
    }

    /// A generation for a new slot: never 0 (the generation of slots written before there were
    /// any) and not given out in the last 65,535 (the counter is pinned with the maps).
    pub(crate) fn next_generation(&mut self) -> Result<u16, MapReadError> {
        let last = self.control(PEER_CONTROL_GENERATION)?;
        let next = match u16::try_from(last.wrapping_add(1)) {
            Ok(0) | Err(_) => 1,
            Ok(next) => next,
        };
        self.set_control(PEER_CONTROL_GENERATION, u32::from(next))?;
        Ok(next)
    }

    /// Finishes a harvest begun and not finished (by an earlier daemon, or by this one when a
    /// map access failed part-way), with its own sequence number; returns whether there was
    /// one.
    fn recover(&mut self, live: Live<'_>) -> Result<bool, MapReadError> {
        let harvesting = self.control(PEER_CONTROL_HARVESTING)?;
        if harvesting == 0 || self.half == 0 {
            return Ok(false);
        }
        let half = (harvesting - 1) & 1;
        let sequence = self.control(PEER_CONTROL_SEQUENCE)?;
        self.empty(half, sequence, live)?;
        self.finish(half)?;
        Ok(true)
    }

    /// Adds every peer's count outside the hash map to `out`: its total and its entries in both
    /// halves; the peers that hold entries go to `in_table`. Peers of removed interfaces (not
    /// `live`) are left out.
    pub(crate) fn add_counts(
        &self,
        out: &mut StdHashMap<PeerKey, Counter>,
        in_table: &mut HashSet<PeerKey>,
        live: Live<'_>,
    ) -> Result<(), MapReadError> {
        for entry in self.totals.iter() {
            match entry {
                Ok((key, total)) if live(&key) => {
                    out.entry(key).or_default().add(&total.counter);
                }
                Ok(_) => {}
                Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(access(PEER_TOTALS_MAP)(source)),
            }
        }
        for half in [0, 1] {
            for copy in self.copies(half)? {
                if copy.key.ifindex != 0 && live(&copy.key) {
                    out.entry(copy.key).or_default().add(&copy.counter);
                    in_table.insert(copy.key);
                }
            }
        }
        Ok(())
    }

    /// Every CPU's copy of every entry of `half`, in one system call: entry by entry, CPU by
    /// CPU (`copies[offset * cpus + cpu]`).
    fn copies(&self, half: u32) -> Result<Vec<PeerEntry>, MapReadError> {
        batch::per_cpu_values(self.table.map(), half * self.half, self.half, self.cpus)
            .map_err(access(PEER_TABLE_MAP))
    }

    /// Empties the half the programs have not used since the last swap (at least a second
    /// ago) into the totals and makes it the live one, dropping the entries and totals of
    /// removed interfaces (not `live`); returns whether it did (not when the table is off or
    /// the last swap is too recent).
    pub(crate) fn harvest(&mut self, live: Live<'_>) -> Result<bool, MapReadError> {
        if self.half == 0 || self.swapped.elapsed() < SETTLE {
            return Ok(false);
        }
        // One that failed part-way is finished first: begun again under a new sequence number,
        // it would add again what it had carried.
        if self.recover(live)? {
            self.sweep(live)?;
            return Ok(true);
        }
        let retired = (self.control(PEER_CONTROL_LIVE)? & 1) ^ 1;
        let sequence = self.control(PEER_CONTROL_SEQUENCE)?.wrapping_add(1);
        self.set_control(PEER_CONTROL_SEQUENCE, sequence)?;
        self.set_control(PEER_CONTROL_HARVESTING, retired + 1)?;
        self.empty(retired, sequence, live)?;
        self.finish(retired)?;
        self.sweep(live)?;
        Ok(true)
    }

    /// Removes the totals of removed interfaces (not `live`).
    fn sweep(&mut self, live: Live<'_>) -> Result<(), MapReadError> {
        let stale: Vec<PeerKey> = self
            .totals
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !live(key))
            .collect();
        for key in stale {
            self.forget(&key)?;
        }
        Ok(())
    }

    /// Makes the emptied `half` the live one and marks the harvest done.
    fn finish(&mut self, half: u32) -> Result<(), MapReadError> {
        self.set_control(PEER_CONTROL_HARVESTING, 0)?;
        self.set_control(PEER_CONTROL_LIVE, half)?;
        self.swapped = Instant::now();
        Ok(())
    }

    /// Adds every entry of `half` to the totals (skipping what harvest `sequence` added
    /// already) and clears it; an entry of a removed interface (not `live`) is cleared without
    /// being carried. An entry whose peer finds the totals map full stays where it is,
    /// counted from the table (its CPU goes on counting into it once the half is live again),
    /// until a later harvest finds room: a count never goes backwards.
    fn empty(&mut self, half: u32, sequence: u32, live: Live<'_>) -> Result<(), MapReadError> {
        let all = self.copies(half)?;
        for (offset, copies) in (0..self.half).zip(all.chunks_exact(self.cpus)) {
            let index = half * self.half + offset;
            let mut kept = copies.to_vec();
            let mut changed = false;
            for (cpu, copy) in kept.iter_mut().enumerate() {
                if copy.key.ifindex == 0 {
                    continue;
                }
                let tag = harvest_tag(sequence, offset, u32::try_from(cpu).unwrap_or(u32::MAX));
                if !live(&copy.key) || self.carry(copy, tag)? {
                    *copy = PeerEntry::default();
                    changed = true;
                }
            }
            if changed {
                let values = PerCpuValues::try_from(kept).map_err(MapReadError::Cpus)?;
                self.table
                    .set(index, values, 0)
                    .map_err(access(PEER_TABLE_MAP))?;
            }
        }
        Ok(())
    }

    /// Adds `copy` to its peer's total unless the total includes it already (`tag`); `false`
    /// when the totals map is full and the peer has no total yet.
    fn carry(&mut self, copy: &PeerEntry, tag: u64) -> Result<bool, MapReadError> {
        let mut total = match self.totals.get(&copy.key, 0) {
            Ok(total) => total,
            Err(MapError::KeyNotFound) => PeerTotal::default(),
            Err(source) => return Err(access(PEER_TOTALS_MAP)(source)),
        };
        if total.applied >= tag {
            return Ok(true);
        }
        total.counter.add(&copy.counter);
        total.applied = tag;
        match self.totals.insert(copy.key, total, 0) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(ref e))
                if e.io_error.raw_os_error() == Some(nix::libc::E2BIG) =>
            {
                Ok(false)
            }
            Err(source) => Err(access(PEER_TOTALS_MAP)(source)),
        }
    }

    /// Forgets `key`'s total (an idle peer).
    pub(crate) fn forget(&mut self, key: &PeerKey) -> Result<(), MapReadError> {
        match self.totals.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(ref e))
                if e.io_error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(source) => Err(access(PEER_TOTALS_MAP)(source)),
        }
    }
}
