//! Reading the counters the eBPF programs maintain.
//!
//! The kernel keeps one value per possible CPU for each key; a reading is their sum, which is
//! exact (each CPU's share is written only by that CPU).

use std::{collections::BTreeMap, io::ErrorKind};

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use collector_common::{COUNTERS_MAP, Counter, CounterKey, Direction, OVERFLOW_MAP};

/// Errors from reading or pruning the counter maps.
#[derive(Debug, thiserror::Error)]
pub enum MapReadError {
    /// A map lookup or iteration failed.
    #[error("reading map {map}")]
    Read {
        /// Name of the map.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
    /// Deleting an entry failed.
    #[error("removing ifindex {ifindex} from map {map}")]
    Remove {
        /// Name of the map.
        map: &'static str,
        /// The interface whose entries were being removed.
        ifindex: u32,
        /// The underlying error.
        #[source]
        source: MapError,
    },
}

/// Per-direction totals of one interface, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Received (TC ingress).
    pub rx: Counter,
    /// Transmitted (TC egress).
    pub tx: Counter,
}

impl InterfaceCounters {
    fn slot_mut(&mut self, direction: Direction) -> &mut Counter {
        match direction {
            Direction::Ingress => &mut self.rx,
            Direction::Egress => &mut self.tx,
        }
    }
}

/// The two maps of the counting programs, owned by user space.
pub(crate) struct CounterMaps {
    counters: PerCpuHashMap<MapData, CounterKey, Counter>,
    overflow: PerCpuArray<MapData, Counter>,
}

fn sum(values: &PerCpuValues<Counter>) -> Counter {
    values.iter().fold(Counter::default(), |mut total, cpu| {
        total.add(cpu);
        total
    })
}

impl CounterMaps {
    pub(crate) const fn new(
        counters: PerCpuHashMap<MapData, CounterKey, Counter>,
        overflow: PerCpuArray<MapData, Counter>,
    ) -> Self {
        Self { counters, overflow }
    }

    /// Counters of one interface; zero when the programs have not seen a packet yet.
    pub(crate) fn interface(&self, ifindex: u32) -> Result<InterfaceCounters, MapReadError> {
        let mut out = InterfaceCounters::default();
        for direction in Direction::ALL {
            match self.counters.get(&CounterKey::new(ifindex, direction), 0) {
                Ok(values) => *out.slot_mut(direction) = sum(&values),
                Err(MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(MapReadError::Read {
                        map: COUNTERS_MAP,
                        source,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Counters of every interface that has an entry, keyed by ifindex.
    pub(crate) fn all(&self) -> Result<BTreeMap<u32, InterfaceCounters>, MapReadError> {
        let mut out: BTreeMap<u32, InterfaceCounters> = BTreeMap::new();
        for entry in self.counters.iter() {
            let (key, values) = match entry {
                Ok(entry) => entry,
                // The entry was deleted while iterating: skip it.
                Err(MapError::KeyNotFound) => continue,
                Err(source) => {
                    return Err(MapReadError::Read {
                        map: COUNTERS_MAP,
                        source,
                    });
                }
            };
            if let Some(direction) = Direction::from_raw(key.direction) {
                *out.entry(key.ifindex).or_default().slot_mut(direction) = sum(&values);
            }
        }
        Ok(out)
    }

    /// Packets (and their bytes) that were not counted per interface because the map was full.
    pub(crate) fn overflow(&self) -> Result<Counter, MapReadError> {
        self.overflow
            .get(&0, 0)
            .map(|values| sum(&values))
            .map_err(|source| MapReadError::Read {
                map: OVERFLOW_MAP,
                source,
            })
    }

    /// Frees both entries of `ifindex` (a missing entry is fine).
    pub(crate) fn remove(&mut self, ifindex: u32) -> Result<(), MapReadError> {
        for direction in Direction::ALL {
            match self.counters.remove(&CounterKey::new(ifindex, direction)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(ref e)) if e.io_error.kind() == ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(MapReadError::Remove {
                        map: COUNTERS_MAP,
                        ifindex,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}
