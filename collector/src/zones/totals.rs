//! Per-zone counts of overlay traffic, kept monotonic while their peers come and go.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use collector_common::{Counter, Direction};

use super::ZoneTable;

/// One tunnel device's traffic in one direction to or from one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneCount {
    /// The tunnel device.
    pub interface: String,
    /// The direction.
    pub direction: Direction,
    /// The zone ([`UNKNOWN_ZONE`](super::table::UNKNOWN_ZONE) and
    /// [`NO_ZONE`](super::table::NO_ZONE) included).
    pub zone: String,
    /// Packets and bytes.
    pub counter: Counter,
}

/// Per-zone counters kept monotonic while their peers come and go: a zone's count is what its
/// peers count now plus the last count of each peer that left (forgotten when idle), so the
/// zones of a device and direction add up to what its peers ever counted.
#[derive(Debug, Default)]
pub struct ZoneTotals {
    /// The last count of every peer, by (device, direction, endpoint), with its zone.
    last: HashMap<(String, Direction, Option<IpAddr>), (String, Counter)>,
    /// What peers that left had counted, by (device, direction, zone).
    left: BTreeMap<(String, Direction, String), Counter>,
}

impl ZoneTotals {
    /// Takes a reading of every peer — (device, direction, endpoint, count); `None`: packets
    /// without a tunnel key — and returns the zones' counts, sorted. A peer missing from this
    /// reading that was in the last one has left: its last count stays with its zone, unless
    /// its device is not in `devices` (removed: its zones go with it).
    pub fn update<'a>(
        &mut self,
        table: &ZoneTable,
        peers: impl IntoIterator<Item = (&'a str, Direction, Option<IpAddr>, Counter)>,
        devices: &BTreeSet<&str>,
    ) -> Vec<ZoneCount> {
        let mut now = HashMap::new();
        let mut counts: BTreeMap<(String, Direction, String), Counter> = BTreeMap::new();
        for (device, direction, endpoint, counter) in peers {
            let zone = table.label(endpoint).to_owned();
            counts
                .entry((device.to_owned(), direction, zone.clone()))
                .or_default()
                .add(&counter);
            now.insert((device.to_owned(), direction, endpoint), (zone, counter));
        }
        for ((device, direction, endpoint), (zone, counter)) in std::mem::take(&mut self.last) {
            if !now.contains_key(&(device.clone(), direction, endpoint)) {
                self.left
                    .entry((device, direction, zone))
                    .or_default()
                    .add(&counter);
            }
        }
        self.left
            .retain(|(device, _, _), _| devices.contains(device.as_str()));
        for (key, counter) in &self.left {
            counts.entry(key.clone()).or_default().add(counter);
        }
        self.last = now;
        counts
            .into_iter()
            .map(|((interface, direction, zone), counter)| ZoneCount {
                interface,
                direction,
                zone,
                counter,
            })
            .collect()
    }
}
