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

/// A tunnel device: its name and ifindex (a device deleted and made again under its name gets
/// another ifindex, and its zones start from zero, as its other counters do).
pub type Device<'a> = (&'a str, u32);

/// A peer of a device: (device name, ifindex, direction, endpoint).
type PeerAt = (String, u32, Direction, Option<IpAddr>);

/// A zone of a device: (device name, ifindex, direction, zone).
type ZoneAt = (String, u32, Direction, String);

/// Per-zone counters kept monotonic while their peers come and go: a zone's count is what its
/// peers count now plus the last count of each peer that left (forgotten when idle), so the
/// zones of a device and direction add up to what its peers ever counted.
#[derive(Debug, Default)]
pub struct ZoneTotals {
    /// The last count of every peer, by (device, ifindex, direction, endpoint), with its zone.
    last: HashMap<PeerAt, (String, Counter)>,
    /// What peers that left had counted, by (device, ifindex, direction, zone).
    left: BTreeMap<ZoneAt, Counter>,
}

impl ZoneTotals {
    /// Takes a reading of every peer — (device, direction, endpoint, count); `None`: packets
    /// without a tunnel key — and returns the zones' counts, sorted. A peer missing from this
    /// reading that was in the last one has left: its last count stays with its zone, unless
    /// its device is not in `devices` (removed: its zones go with it).
    pub fn update<'a>(
        &mut self,
        table: &ZoneTable,
        peers: impl IntoIterator<Item = (Device<'a>, Direction, Option<IpAddr>, Counter)>,
        devices: &BTreeSet<Device<'_>>,
    ) -> Vec<ZoneCount> {
        let mut now = HashMap::new();
        let mut counts: BTreeMap<ZoneAt, Counter> = BTreeMap::new();
        for ((name, ifindex), direction, endpoint, counter) in peers {
            let zone = table.label(endpoint).to_owned();
            counts
                .entry((name.to_owned(), ifindex, direction, zone.clone()))
                .or_default()
                .add(&counter);
            now.insert(
                (name.to_owned(), ifindex, direction, endpoint),
                (zone, counter),
            );
        }
        for ((name, ifindex, direction, endpoint), (zone, counter)) in
            std::mem::take(&mut self.last)
        {
            if !now.contains_key(&(name.clone(), ifindex, direction, endpoint)) {
                self.left
                    .entry((name, ifindex, direction, zone))
                    .or_default()
                    .add(&counter);
            }
        }
        self.left
            .retain(|(name, ifindex, _, _), _| devices.contains(&(name.as_str(), *ifindex)));
        for (key, counter) in &self.left {
            counts.entry(key.clone()).or_default().add(counter);
        }
        self.last = now;
        counts
            .into_iter()
            .map(|((interface, _, direction, zone), counter)| ZoneCount {
                interface,
                direction,
                zone,
                counter,
            })
            .collect()
    }
}
