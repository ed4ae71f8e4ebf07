//! What `linkmeter list` shows of the eBPF breakdown: per attached interface and direction the
//! protocols, TCP flags and packet sizes, and the overlay peers (JSON fields, and sections below
//! the table).

use std::{collections::BTreeMap, fmt::Write as _};

use collector_common::{Protocol, SIZE_BOUNDS, Stats, TcpFlag};
use serde::Serialize;

use crate::metrics::{InterfaceSnapshot, Snapshot};

/// Packets and bytes.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Count {
    packets: u64,
    bytes: u64,
}

/// One direction's breakdown.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Direction {
    /// Per protocol class.
    protocols: BTreeMap<&'static str, Count>,
    /// Per TCP flag combination.
    tcp_flags: BTreeMap<&'static str, u64>,
    /// Packets per size bucket, by upper bound (`+Inf` last); not cumulative.
    sizes: Vec<(String, u64)>,
}

impl From<&Stats> for Direction {
    fn from(s: &Stats) -> Self {
        let bounds = SIZE_BOUNDS
            .iter()
            .map(ToString::to_string)
            .chain(std::iter::once("+Inf".to_owned()));
        Self {
            protocols: Protocol::ALL
                .iter()
                .map(|p| {
                    let c = s.protocols[*p as usize];
                    (
                        p.as_str(),
                        Count {
                            packets: c.packets,
                            bytes: c.bytes,
                        },
                    )
                })
                .collect(),
            tcp_flags: TcpFlag::ALL
                .iter()
                .map(|f| (f.as_str(), s.tcp_flags[*f as usize]))
                .collect(),
            sizes: bounds.zip(s.sizes).collect(),
        }
    }
}

/// The breakdown of one interface.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Breakdown {
    rx: Direction,
    tx: Direction,
}

/// The breakdown of `interface`, when the eBPF counter measured it.
pub(super) fn of(interface: &InterfaceSnapshot) -> Option<Breakdown> {
    let stats = interface.ebpf?;
    Some(Breakdown {
        rx: Direction::from(&stats.rx),
        tx: Direction::from(&stats.tx),
    })
}

/// One overlay peer of an interface.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Peer {
    direction: &'static str,
    peer: String,
    /// With a zone table only.
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    packets: u64,
    bytes: u64,
}

/// One interface's overlay traffic to or from one zone.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Zone {
    direction: &'static str,
    zone: String,
    packets: u64,
    bytes: u64,
}

/// The overlay zones of `interface` in `snapshot`.
pub(super) fn zones_of(snapshot: &Snapshot, interface: &str) -> Vec<Zone> {
    snapshot
        .zones
        .iter()
        .filter(|z| z.interface == interface)
        .map(|z| Zone {
            direction: z.direction.as_rx_tx(),
            zone: z.zone.clone(),
            packets: z.counter.packets,
            bytes: z.counter.bytes,
        })
        .collect()
}

/// The overlay peers of `interface` in `snapshot`.
pub(super) fn peers_of(snapshot: &Snapshot, interface: &str) -> Vec<Peer> {
    snapshot
        .peers
        .iter()
        .filter(|p| p.interface == interface)
        .map(|p| Peer {
            direction: p.direction.as_rx_tx(),
            peer: p.peer.clone(),
            zone: p.zone.clone(),
            packets: p.packets,
            bytes: p.bytes,
        })
        .collect()
}

/// One line for `name` and `direction` when it has traffic between `before` and `now`: the
/// protocols that saw packets and the TCP flags that were counted, with their packets.
pub(in crate::cli) fn mix_line(
    out: &mut String,
    name: &str,
    direction: &str,
    now: &Stats,
    before: &Stats,
) {
    let mut parts = Vec::new();
    for p in Protocol::ALL {
        let n = now.protocols[p as usize]
            .packets
            .wrapping_sub(before.protocols[p as usize].packets);
        if n > 0 {
            parts.push(format!("{} {n}", p.as_str()));
        }
    }
    for f in TcpFlag::ALL {
        let n = now.tcp_flags[f as usize].wrapping_sub(before.tcp_flags[f as usize]);
        if n > 0 {
            parts.push(format!("{} {n}", f.as_str()));
        }
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "{name:<16} {direction}  {}", parts.join("  "));
    }
}

/// The sections below the table: the protocols and flags that saw packets, and the peers.
pub(super) fn sections(snapshot: &Snapshot) -> String {
    let mut mix = String::new();
    for interface in &snapshot.interfaces {
        let Some(stats) = interface.ebpf else {
            continue;
        };
        for (direction, s) in [("rx", &stats.rx), ("tx", &stats.tx)] {
            mix_line(&mut mix, &interface.name, direction, s, &Stats::default());
        }
    }
    let mut out = String::new();
    if !mix.is_empty() {
        let _ = write!(out, "\nPROTOCOLS AND TCP FLAGS (packets)\n{mix}");
    }
    let zoned = snapshot.peers.iter().any(|p| p.zone.is_some());
    if zoned && !snapshot.zones.is_empty() {
        let _ = writeln!(
            out,
            "\nOVERLAY ZONES\n{:<16} {:<3} {:<24} {:>12} {:>14}",
            "INTERFACE", "DIR", "ZONE", "PACKETS", "BYTES"
        );
        for z in &snapshot.zones {
            let _ = writeln!(
                out,
                "{:<16} {:<3} {:<24} {:>12} {:>14}",
                z.interface,
                z.direction.as_rx_tx(),
                z.zone,
                z.counter.packets,
                z.counter.bytes
            );
        }
    }
    if !snapshot.drops.is_empty() {
        let _ = writeln!(
            out,
            "\nDROPS BY KERNEL DROP REASON (packets while counting)\n{:<16} {:<32} {:>12}",
            "INTERFACE", "REASON", "PACKETS"
        );
        for d in &snapshot.drops {
            let _ = writeln!(
                out,
                "{:<16} {:<32} {:>12}",
                d.interface, d.reason, d.packets
            );
        }
    }
    if !snapshot.peers.is_empty() {
        let _ = writeln!(
            out,
            "\nOVERLAY PEERS\n{:<16} {:<3} {:<40} {:<24} {:>12} {:>14}",
            "INTERFACE", "DIR", "PEER", "ZONE", "PACKETS", "BYTES"
        );
        for p in &snapshot.peers {
            let _ = writeln!(
                out,
                "{:<16} {:<3} {:<40} {:<24} {:>12} {:>14}",
                p.interface,
                p.direction.as_rx_tx(),
                p.peer,
                p.zone.as_deref().unwrap_or("-"),
                p.packets,
                p.bytes
            );
        }
    }
    out
}
