//! Zones of overlay peers: a table of `CIDR=ZONE` entries (`peer_zones`) that names the zone of
//! a tunnel endpoint by its underlay address, the longest matching prefix winning. Node
//! addresses come from per-zone subnets on every major cloud, so the table is stable and needs
//! no API access.

mod table;
#[cfg(test)]
mod tests;
mod totals;

use std::{collections::BTreeSet, net::IpAddr};

pub use self::{
    table::ZoneTable,
    totals::{ZoneCount, ZoneTotals},
};

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
