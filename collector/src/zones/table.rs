//! The zone table: `CIDR=ZONE` entries, the longest prefix naming a peer's zone.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

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
