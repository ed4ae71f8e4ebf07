//! Zones of overlay peers: a table of `CIDR=ZONE` entries (`peer_zones`) that names the zone of
//! a tunnel endpoint by its underlay address, the longest matching prefix winning. Node
//! addresses come from per-zone subnets on every major cloud, so the table is stable and needs
//! no API access.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use collector_common::{Counter, Direction};

/// The zone of a peer in no CIDR of the table.
pub const UNKNOWN_ZONE: &str = "unknown";
/// The zone of packets without a tunnel key (egress packets the device drops).
pub const NO_ZONE: &str = "none";

/// Why a `peer_zones` entry was refused; each names the entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    /// Not `CIDR=ZONE`.
    #[error("{entry:?}: expected CIDR=ZONE, e.g. 10.0.0.0/20=eu-west-1a")]
    Syntax {
        /// The entry.
        entry: String,
    },
    /// The CIDR does not parse, or its prefix length is too long for its family.
    #[error("{entry:?}: {cidr:?} is not a CIDR (ADDRESS/LENGTH, IPv4 or IPv6)")]
    Cidr {
        /// The entry.
        entry: String,
        /// The CIDR part.
        cidr: String,
    },
    /// Bits are set after the prefix (`10.0.0.1/8`): a typo, or a host address meant as `/32`.
    #[error("{entry:?}: {cidr:?} has host bits set; the network is {network}")]
    HostBits {
        /// The entry.
        entry: String,
        /// The CIDR part.
        cidr: String,
        /// The network it would be.
        network: String,
    },
    /// The zone is empty, or one of the names linkmeter uses itself.
    #[error("{entry:?}: the zone must be a non-empty name other than \"unknown\" and \"none\"")]
    Zone {
        /// The entry.
        entry: String,
    },
    /// Two entries have the same prefix: which zone it is would be ambiguous.
    #[error(
        "{entry:?}: the same prefix as {earlier:?} (overlapping entries must differ in length)"
    )]
    Duplicate {
        /// The entry.
        entry: String,
        /// The earlier entry with that prefix.
        earlier: String,
    },
}

/// The table: prefixes by family and length, each naming a zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneTable {
    /// IPv4 prefixes: by length (longest first when looked up), network → zone.
    v4: BTreeMap<u8, HashMap<u32, String>>,
    /// IPv6 prefixes, the same way.
    v6: BTreeMap<u8, HashMap<u128, String>>,
    /// The entries as written, by prefix (for messages).
    written: HashMap<(bool, u128, u8), String>,
}

/// `bits` with only the first `len` of its `width` bits kept.
const fn masked(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = u128::MAX << (width - len);
        bits & (keep & (u128::MAX >> (128 - width as u32)))
    }
}

impl ZoneTable {
    /// Parses `CIDR=ZONE` entries (IPv4 or IPv6; whitespace around either part is ignored).
    ///
    /// # Errors
    ///
    /// The first bad entry: see [`ZoneError`].
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ZoneError> {
        let mut table = Self::default();
        for entry in entries {
            table.insert(entry.as_ref())?;
        }
        Ok(table)
    }

    fn insert(&mut self, entry: &str) -> Result<(), ZoneError> {
        let owned = || entry.to_owned();
        let (cidr, zone) = entry
            .split_once('=')
            .ok_or_else(|| ZoneError::Syntax { entry: owned() })?;
        let (cidr, zone) = (cidr.trim(), zone.trim());
        if zone.is_empty() || zone == UNKNOWN_ZONE || zone == NO_ZONE {
            return Err(ZoneError::Zone { entry: owned() });
        }
        let bad_cidr = || ZoneError::Cidr {
            entry: owned(),
            cidr: cidr.to_owned(),
        };
        let (address, len) = cidr.split_once('/').ok_or_else(bad_cidr)?;
        let address: IpAddr = address.parse().map_err(|_| bad_cidr())?;
        let len: u8 = len.parse().map_err(|_| bad_cidr())?;
        let (v6, bits, width) = match address {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        if len > width {
            return Err(bad_cidr());
        }
        let network = masked(bits, len, width);
        if network != bits {
            let shown = if v6 {
                IpAddr::from(network.to_be_bytes())
            } else {
                IpAddr::from(u32::try_from(network).unwrap_or(0).to_be_bytes())
            };
            return Err(ZoneError::HostBits {
                entry: owned(),
                cidr: cidr.to_owned(),
                network: format!("{shown}/{len}"),
            });
        }
        if let Some(earlier) = self.written.get(&(v6, network, len)) {
            return Err(ZoneError::Duplicate {
                entry: owned(),
                earlier: earlier.clone(),
            });
        }
        self.written.insert((v6, network, len), owned());
        if v6 {
            self.v6
                .entry(len)
                .or_default()
                .insert(network, zone.to_owned());
        } else {
            let network = u32::try_from(network).unwrap_or(0);
            self.v4
                .entry(len)
                .or_default()
                .insert(network, zone.to_owned());
        }
        Ok(())
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// The zone of `address`: the zone of the longest prefix holding it, if any.
    pub fn zone_of(&self, address: IpAddr) -> Option<&str> {
        match address {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4.iter().rev().find_map(|(&len, networks)| {
                    let network = u32::try_from(masked(u128::from(bits), len, 32)).ok()?;
                    networks.get(&network).map(String::as_str)
                })
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6.iter().rev().find_map(|(&len, networks)| {
                    networks.get(&masked(bits, len, 128)).map(String::as_str)
                })
            }
        }
    }

    /// The zone a peer is exported under: its zone, [`UNKNOWN_ZONE`] when the table has
    /// none for it, [`NO_ZONE`] for packets without a tunnel key (`None`).
    pub fn label(&self, endpoint: Option<IpAddr>) -> &str {
        match endpoint {
            None => NO_ZONE,
            Some(address) => self.zone_of(address).unwrap_or(UNKNOWN_ZONE),
        }
    }
}

/// Which overlay series `/metrics` carries (`overlay_series`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverlaySeries {
    /// Per zone only: a fixed number of series, whatever the size of the cluster.
    Zone,
    /// Per peer only (N series per node, N² per cluster); the default without a zone table.
    #[default]
    Peer,
    /// Both.
    Both,
}

impl OverlaySeries {
    /// Parses `zone`, `peer` or `both`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "zone" => Some(Self::Zone),
            "peer" => Some(Self::Peer),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// The default: per zone with a table, per peer without one.
    pub fn default_for(table: &ZoneTable) -> Self {
        if table.is_empty() {
            Self::Peer
        } else {
            Self::Zone
        }
    }

    /// Whether the per-peer series are shown.
    pub const fn peers(self) -> bool {
        matches!(self, Self::Peer | Self::Both)
    }

    /// Whether the per-zone series are shown.
    pub const fn zones(self) -> bool {
        matches!(self, Self::Zone | Self::Both)
    }
}

/// What the overlay series show: the zone table, this node's zone, which series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// `peer_zones`.
    pub zones: ZoneTable,
    /// `node_zone`.
    pub node_zone: Option<String>,
    /// `overlay_series`.
    pub series: OverlaySeries,
}

/// One tunnel device's traffic in one direction to or from one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneCount {
    /// The tunnel device.
    pub interface: String,
    /// The direction.
    pub direction: Direction,
    /// The zone ([`UNKNOWN_ZONE`], [`NO_ZONE`] included).
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

/// Where this node's zone comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeZone {
    /// `node_zone`.
    Configured(String),
    /// The zone of the node's own `address`, found in the table.
    Found {
        /// The zone.
        zone: String,
        /// The address it was found by.
        address: IpAddr,
    },
    /// The node's addresses lie in several zones of the table: none is taken.
    Ambiguous(Vec<(IpAddr, String)>),
    /// No zone: no table, or none of the node's addresses is in it.
    Unknown,
}

impl NodeZone {
    /// The zone, when there is one.
    pub fn zone(&self) -> Option<&str> {
        match self {
            Self::Configured(zone) | Self::Found { zone, .. } => Some(zone),
            Self::Ambiguous(_) | Self::Unknown => None,
        }
    }

    /// What it is and where it comes from, for `check` and the log.
    pub fn describe(&self) -> String {
        match self {
            Self::Configured(zone) => format!("{zone} (node_zone)"),
            Self::Found { zone, address } => format!("{zone} (the node's address {address})"),
            Self::Ambiguous(found) => {
                let found: Vec<String> = found.iter().map(|(a, z)| format!("{a} in {z}")).collect();
                format!(
                    "unknown: the node's addresses are in several zones ({}); set node_zone",
                    found.join(", ")
                )
            }
            Self::Unknown => "unknown: none of the node's addresses is in peer_zones".to_owned(),
        }
    }
}

/// This node's zone: `configured` when set, else the one zone of the table that holds the
/// node's own `addresses` (loopback and link-local addresses left out).
pub fn node_zone(configured: Option<&str>, table: &ZoneTable, addresses: &[IpAddr]) -> NodeZone {
    if let Some(zone) = configured {
        return NodeZone::Configured(zone.to_owned());
    }
    let local = |a: &IpAddr| match a {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    let found: Vec<(IpAddr, String)> = addresses
        .iter()
        .filter(|a| !local(a))
        .filter_map(|&a| Some((a, table.zone_of(a)?.to_owned())))
        .collect();
    let zones: BTreeSet<&str> = found.iter().map(|(_, z)| z.as_str()).collect();
    match (zones.len(), found.first()) {
        (1, Some((address, zone))) => NodeZone::Found {
            zone: zone.clone(),
            address: *address,
        },
        (0, _) | (_, None) => NodeZone::Unknown,
        _ => NodeZone::Ambiguous(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_longest_prefix_wins_over_both_families() {
        let table = ZoneTable::parse(&[
            "10.0.0.0/16=eu-west-1a",
            "10.0.16.0/20 = eu-west-1b",
            "10.0.16.128/25=eu-west-1c",
            "0.0.0.0/0=elsewhere",
            "fd00:10::/32=eu-west-1a",
            "fd00:10:0:16::/64=eu-west-1b",
        ])
        .expect("valid");
        assert_eq!(table.zone_of(ip("10.0.1.9")), Some("eu-west-1a"));
        assert_eq!(table.zone_of(ip("10.0.17.9")), Some("eu-west-1b"));
        assert_eq!(table.zone_of(ip("10.0.16.200")), Some("eu-west-1c"));
        assert_eq!(table.zone_of(ip("192.0.2.1")), Some("elsewhere"));
        assert_eq!(table.zone_of(ip("fd00:10:0:16::7")), Some("eu-west-1b"));
        assert_eq!(table.zone_of(ip("fd00:10:0:17::7")), Some("eu-west-1a"));
        assert_eq!(table.zone_of(ip("2001:db8::1")), None);
        assert_eq!(table.label(Some(ip("2001:db8::1"))), UNKNOWN_ZONE);
        assert_eq!(table.label(None), NO_ZONE);
        // A /32 and a /128 name single hosts.
        let hosts = ZoneTable::parse(&["192.0.2.7/32=a", "2001:db8::7/128=b"]).expect("valid");
        assert_eq!(hosts.zone_of(ip("192.0.2.7")), Some("a"));
        assert_eq!(hosts.zone_of(ip("192.0.2.8")), None);
        assert_eq!(hosts.zone_of(ip("2001:db8::7")), Some("b"));
        assert!(ZoneTable::parse::<&str>(&[]).expect("empty").is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        let error = |entry: &str| ZoneTable::parse(&[entry]).expect_err(entry).to_string();
        assert!(error("10.0.0.0/16").contains("expected CIDR=ZONE"));
        assert!(error("10.0.0.0/16=").contains("non-empty name"));
        assert!(error("10.0.0.0/16=unknown").contains("non-empty name"));
        assert!(error("10.0.0.0/16=none").contains("non-empty name"));
        assert!(error("10.0.0.0=a").contains("is not a CIDR"));
        assert!(error("10.0.0.0/33=a").contains("is not a CIDR"));
        assert!(error("fd00::/129=a").contains("is not a CIDR"));
        assert!(error("10.0.0/16=a").contains("is not a CIDR"));
        assert!(error("10.0.0.0/x=a").contains("\"10.0.0.0/x\""));
        assert_eq!(
            error("10.0.0.1/8=a"),
            "\"10.0.0.1/8=a\": \"10.0.0.1/8\" has host bits set; the network is 10.0.0.0/8"
        );
        assert!(error("fd00::1/64=a").contains("the network is fd00::/64"));
        let duplicate = ZoneTable::parse(&["10.0.0.0/16=a", "10.0.0.0/16=b"])
            .expect_err("duplicate")
            .to_string();
        assert!(
            duplicate.contains("\"10.0.0.0/16=b\": the same prefix as \"10.0.0.0/16=a\""),
            "{duplicate}"
        );
    }

    #[test]
    fn zone_counts_stay_monotonic_while_peers_leave_and_return() {
        let table = ZoneTable::parse(&["10.0.0.0/16=a", "10.1.0.0/16=b"]).expect("valid");
        let mut totals = ZoneTotals::default();
        let devices: BTreeSet<&str> = ["vx"].into_iter().collect();
        let c = |packets| Counter {
            packets,
            bytes: packets * 100,
        };
        let peer = |last: u8, zone_b: bool, packets| {
            let address = IpAddr::from([10, u8::from(zone_b), 0, last]);
            ("vx", Direction::Ingress, Some(address), c(packets))
        };
        let zone = |counts: &[ZoneCount], name: &str| {
            counts
                .iter()
                .find(|z| z.zone == name)
                .map(|z| z.counter.packets)
        };
        let first = totals.update(
            &table,
            [
                peer(1, false, 5),
                peer(2, false, 7),
                peer(1, true, 3),
                ("vx", Direction::Egress, None, c(2)),
                (
                    "vx",
                    Direction::Ingress,
                    Some(IpAddr::from([192, 0, 2, 1])),
                    c(4),
                ),
            ],
            &devices,
        );
        assert_eq!(zone(&first, "a"), Some(12));
        assert_eq!(zone(&first, "b"), Some(3));
        assert_eq!(zone(&first, NO_ZONE), Some(2));
        assert_eq!(zone(&first, UNKNOWN_ZONE), Some(4));
        // 10.0.0.2 leaves (idle), 10.0.0.1 moves on: zone a keeps the 7.
        let second = totals.update(&table, [peer(1, false, 6), peer(1, true, 3)], &devices);
        assert_eq!(zone(&second, "a"), Some(13));
        assert_eq!(zone(&second, NO_ZONE), Some(2));
        // It comes back from zero: still monotonic.
        let third = totals.update(
            &table,
            [peer(1, false, 6), peer(2, false, 1), peer(1, true, 3)],
            &devices,
        );
        assert_eq!(zone(&third, "a"), Some(14));
        // The device is removed: its zones go.
        let gone = totals.update(&table, [], &BTreeSet::new());
        assert!(gone.is_empty());
    }

    #[test]
    fn the_series_default_follows_the_table() {
        let empty = ZoneTable::default();
        let table = ZoneTable::parse(&["10.0.0.0/8=a"]).expect("valid");
        assert_eq!(OverlaySeries::default_for(&empty), OverlaySeries::Peer);
        assert_eq!(OverlaySeries::default_for(&table), OverlaySeries::Zone);
        assert_eq!(OverlaySeries::parse("both"), Some(OverlaySeries::Both));
        assert_eq!(OverlaySeries::parse("zones"), None);
        assert!(OverlaySeries::Both.peers() && OverlaySeries::Both.zones());
        assert!(!OverlaySeries::Zone.peers() && !OverlaySeries::Peer.zones());
    }

    #[test]
    fn the_node_zone_is_configured_or_found_by_the_nodes_addresses() {
        let table =
            ZoneTable::parse(&["10.0.0.0/16=a", "10.1.0.0/16=b", "127.0.0.0/8=lo"]).expect("valid");
        let found = node_zone(
            None,
            &table,
            &[ip("127.0.0.1"), ip("192.0.2.1"), ip("10.0.3.4")],
        );
        assert_eq!(found.zone(), Some("a"));
        assert_eq!(found.describe(), "a (the node's address 10.0.3.4)");
        assert_eq!(
            node_zone(Some("z"), &table, &[ip("10.0.3.4")]).describe(),
            "z (node_zone)"
        );
        let two = node_zone(None, &table, &[ip("10.0.3.4"), ip("10.1.0.9")]);
        assert_eq!(two.zone(), None);
        assert!(
            two.describe().contains("10.0.3.4 in a, 10.1.0.9 in b"),
            "{}",
            two.describe()
        );
        assert_eq!(
            node_zone(None, &table, &[ip("192.0.2.1")]),
            NodeZone::Unknown
        );
        assert_eq!(
            node_zone(None, &ZoneTable::default(), &[]),
            NodeZone::Unknown
        );
    }
}
