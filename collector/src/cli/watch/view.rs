//! The live view of `linkmeter watch`: per interface, one line of eBPF counts and one of the
//! kernel's (packets and bytes since the start, packets/s and bytes/s over the last interval),
//! the protocol mix and TCP flags since the start, and overlay peers with their rates. On a
//! terminal each frame replaces the last; otherwise frames follow one another.

use std::{collections::BTreeMap, fmt::Write as _, time::Instant};

use collector_common::Direction;

use crate::{
    backend::ebpf::InterfaceStats,
    cli::list::mix_line,
    metrics::{InterfaceSnapshot, Snapshot},
};

/// Clears the terminal and moves the cursor home.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// What one reading says of one attached interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reading {
    ebpf: InterfaceStats,
    /// The kernel's (rx packets, rx bytes, tx packets, tx bytes).
    kernel: [u64; 4],
}

impl Reading {
    fn of(interface: &InterfaceSnapshot) -> Option<Self> {
        let k = interface.kernel.unwrap_or_default();
        Some(Self {
            ebpf: interface.ebpf?,
            kernel: [k.rx_packets, k.rx_bytes, k.tx_packets, k.tx_bytes],
        })
    }

    /// (rx packets, rx bytes, tx packets, tx bytes) counted by eBPF.
    fn ebpf_totals(&self) -> [u64; 4] {
        let (rx, tx) = (&self.ebpf.rx, &self.ebpf.tx);
        [rx.packets(), rx.bytes(), tx.packets(), tx.bytes()]
    }
}

/// One line of the table: `totals` now, at the start and at the last reading.
fn row(
    out: &mut String,
    (name, mode, source): (&str, &str, &str),
    [now, start, last]: [[u64; 4]; 3],
    seconds: f64,
) {
    let since: [u64; 4] = std::array::from_fn(|i| now[i].wrapping_sub(start[i]));
    let rate: [f64; 4] = std::array::from_fn(|i| now[i].wrapping_sub(last[i]) as f64 / seconds);
    let _ = writeln!(
        out,
        "{name:<16} {mode:>4} {source:<6} {:>10} {:>12} {:>10} {:>12} {:>10.0} {:>10.0} {:>12.0} {:>12.0}",
        since[0], since[1], since[2], since[3], rate[0], rate[2], rate[1], rate[3],
    );
}

/// The live view's memory: each interface's first reading (for counts since the start) and its
/// last (for rates).
#[derive(Debug)]
pub(super) struct View {
    start: Instant,
    first: BTreeMap<String, Reading>,
    last: BTreeMap<String, Reading>,
    last_peers: BTreeMap<(String, Direction, String), u64>,
    last_zones: BTreeMap<(String, Direction, String), u64>,
    last_at: Instant,
    terminal: bool,
    drops: super::drops::DropRates,
}

impl View {
    /// A view starting from `snapshot`; `terminal` redraws in place.
    pub(super) fn new(snapshot: &Snapshot, terminal: bool) -> Self {
        let now = Instant::now();
        let readings: BTreeMap<String, Reading> = snapshot
            .interfaces
            .iter()
            .filter_map(|i| Some((i.name.clone(), Reading::of(i)?)))
            .collect();
        Self {
            start: now,
            first: readings.clone(),
            last: readings,
            last_peers: peer_packets(snapshot),
            last_zones: zone_packets(snapshot),
            last_at: now,
            terminal,
            drops: super::drops::DropRates::new(snapshot),
        }
    }

    /// The next frame, from `snapshot`.
    pub(super) fn render(&mut self, snapshot: &Snapshot) -> String {
        let now = Instant::now();
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let mut out = String::new();
        if self.terminal {
            out.push_str(CLEAR);
        }
        let _ = writeln!(
            out,
            "linkmeter watch: {:.1} s since start; counts since start, rates over the last {:.1} s (Ctrl-C to stop)",
            now.duration_since(self.start).as_secs_f64(),
            seconds
        );
        let _ = writeln!(
            out,
            "{:<16} {:>4} {:<6} {:>10} {:>12} {:>10} {:>12} {:>10} {:>10} {:>12} {:>12}",
            "INTERFACE",
            "MODE",
            "SOURCE",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "RX_PPS",
            "TX_PPS",
            "RX_BPS",
            "TX_BPS"
        );
        let mut mix = String::new();
        for interface in &snapshot.interfaces {
            self.interface(&mut out, &mut mix, interface, seconds);
        }
        if !mix.is_empty() {
            let _ = writeln!(
                out,
                "\nPROTOCOLS AND TCP FLAGS (packets since start)\n{mix}"
            );
        }
        self.zones(&mut out, snapshot, seconds);
        self.peers(&mut out, snapshot, seconds);
        self.drops.render(&mut out, snapshot, seconds);
        if snapshot.map_overflow.interfaces + snapshot.map_overflow.peers > 0 {
            let _ = writeln!(
                out,
                "overflow: {} packets without a counter slot, {} of peers beyond the peer map",
                snapshot.map_overflow.interfaces, snapshot.map_overflow.peers
            );
        }
        out.push('\n');
        self.last_at = now;
        out
    }

    /// The rows of one attached interface (eBPF, then the kernel), and its protocol mix lines
    /// into `mix`.
    fn interface(
        &mut self,
        out: &mut String,
        mix: &mut String,
        interface: &InterfaceSnapshot,
        seconds: f64,
    ) {
        let (Some(mode), Some(now)) = (interface.attach_mode, Reading::of(interface)) else {
            return;
        };
        let name = &interface.name;
        let first = *self.first.entry(name.clone()).or_insert(now);
        let last = self.last.insert(name.clone(), now).unwrap_or(now);
        let mode = mode.to_string();
        let ebpf = [now, first, last].map(|r| r.ebpf_totals());
        row(out, (name, &mode, "ebpf"), ebpf, seconds);
        let kernel = [now, first, last].map(|r| r.kernel);
        row(out, (name, &mode, "kernel"), kernel, seconds);
        mix_line(mix, name, "rx", &now.ebpf.rx, &first.ebpf.rx);
        mix_line(mix, name, "tx", &now.ebpf.tx, &first.ebpf.tx);
    }

    fn zones(&mut self, out: &mut String, snapshot: &Snapshot, seconds: f64) {
        if snapshot.zones.is_empty() || snapshot.peers.iter().all(|p| p.zone.is_none()) {
            return;
        }
        let _ = writeln!(
            out,
            "\nOVERLAY ZONES\n{:<16} {:>3} {:<24} {:>12} {:>14} {:>10}",
            "INTERFACE", "DIR", "ZONE", "PACKETS", "BYTES", "PPS"
        );
        for zone in &snapshot.zones {
            let key = (zone.interface.clone(), zone.direction, zone.zone.clone());
            let packets = zone.counter.packets;
            let before = self.last_zones.get(&key).copied().unwrap_or(packets);
            let _ = writeln!(
                out,
                "{:<16} {:>3} {:<24} {:>12} {:>14} {:>10.0}",
                zone.interface,
                zone.direction.as_rx_tx(),
                zone.zone,
                packets,
                zone.counter.bytes,
                packets.wrapping_sub(before) as f64 / seconds
            );
        }
        self.last_zones = zone_packets(snapshot);
    }

    fn peers(&mut self, out: &mut String, snapshot: &Snapshot, seconds: f64) {
        if snapshot.peers.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nOVERLAY PEERS\n{:<16} {:>3} {:<40} {:>12} {:>14} {:>10}",
            "INTERFACE", "DIR", "PEER", "PACKETS", "BYTES", "PPS"
        );
        let now = peer_packets(snapshot);
        for peer in &snapshot.peers {
            let key = (peer.interface.clone(), peer.direction, peer.peer.clone());
            let before = self.last_peers.get(&key).copied().unwrap_or(peer.packets);
            let _ = writeln!(
                out,
                "{:<16} {:>3} {:<40} {:>12} {:>14} {:>10.0}",
                peer.interface,
                peer.direction.as_rx_tx(),
                peer.peer,
                peer.packets,
                peer.bytes,
                peer.packets.wrapping_sub(before) as f64 / seconds
            );
        }
        self.last_peers = now;
    }
}

fn peer_packets(snapshot: &Snapshot) -> BTreeMap<(String, Direction, String), u64> {
    snapshot
        .peers
        .iter()
        .map(|p| {
            (
                (p.interface.clone(), p.direction, p.peer.clone()),
                p.packets,
            )
        })
        .collect()
}

fn zone_packets(snapshot: &Snapshot) -> BTreeMap<(String, Direction, String), u64> {
    snapshot
        .zones
        .iter()
        .map(|z| {
            (
                (z.interface.clone(), z.direction, z.zone.clone()),
                z.counter.packets,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use collector_common::{Counter, Protocol};

    use super::*;
    use crate::{
        backend::ebpf::AttachedMode,
        discovery::LinkStats,
        metrics::PeerSnapshot,
        policy::{Backend, Reason},
    };

    fn snapshot(tx_udp: u64, kernel_tx: u64, peer_packets: u64) -> Snapshot {
        let mut stats = InterfaceStats::default();
        stats.tx.protocols[Protocol::Ipv4Udp as usize] = Counter {
            packets: tx_udp,
            bytes: tx_udp * 100,
        };
        Snapshot {
            interfaces: vec![InterfaceSnapshot {
                name: "vx0".into(),
                ifindex: 3,
                kind: "vxlan".into(),
                driver: String::new(),
                backend: Backend::Ebpf,
                reason: Reason::EthtoolNoStats,
                attach_mode: Some(AttachedMode::Tc),
                programs_before: None,
                kernel: Some(LinkStats {
                    tx_packets: kernel_tx,
                    ..LinkStats::default()
                }),
                ebpf: Some(stats),
                ethtool: Vec::new(),
                speed_bytes: None,
                full_duplex: None,
            }],
            peers: vec![PeerSnapshot {
                zone: None,
                interface: "vx0".into(),
                direction: Direction::Egress,
                peer: "192.0.2.2".into(),
                packets: peer_packets,
                bytes: peer_packets * 100,
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn counts_are_since_the_start_for_ebpf_and_the_kernel_alike() {
        let mut view = View::new(&snapshot(5, 1000, 5), false);
        let frame = view.render(&snapshot(15, 1010, 15));
        let rows: Vec<Vec<&str>> = frame
            .lines()
            .filter(|l| l.starts_with("vx0 "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let [ebpf, kernel] = [&rows[0], &rows[1]];
        assert_eq!((ebpf[1], ebpf[2], kernel[2]), ("tc", "ebpf", "kernel"));
        assert_eq!((ebpf[5], ebpf[6]), ("10", "1000"), "eBPF tx since start");
        assert_eq!(kernel[5], "10", "kernel tx since start, not since boot");
        assert!(frame.contains("ipv4_udp 10"), "{frame}");
        assert!(frame.contains("192.0.2.2"), "{frame}");
        assert!(!frame.contains(CLEAR));
    }

    #[test]
    fn zones_are_shown_with_their_rates_when_there_is_a_zone_table() {
        let zoned = |packets: u64| {
            let mut s = snapshot(packets, packets, packets);
            s.peers[0].zone = Some("eu-west-1b".into());
            s.zones = vec![crate::zones::ZoneCount {
                interface: "vx0".into(),
                direction: Direction::Egress,
                zone: "eu-west-1b".into(),
                counter: Counter {
                    packets,
                    bytes: packets * 100,
                },
            }];
            s
        };
        let mut view = View::new(&zoned(5), false);
        let frame = view.render(&zoned(15));
        assert!(frame.contains("OVERLAY ZONES"), "{frame}");
        let row = frame
            .lines()
            .find(|l| l.contains("eu-west-1b") && !l.contains("192.0.2.2"))
            .unwrap_or_else(|| panic!("no zone row in {frame}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &fields[..5],
            ["vx0", "tx", "eu-west-1b", "15", "1500"],
            "{row}"
        );
        // Without a table there is no zone section.
        let plain = View::new(&snapshot(5, 5, 5), false).render(&snapshot(6, 6, 6));
        assert!(!plain.contains("OVERLAY ZONES"), "{plain}");
    }

    #[test]
    fn a_terminal_gets_each_frame_drawn_over_the_last() {
        let mut view = View::new(&snapshot(0, 0, 0), true);
        assert!(view.render(&snapshot(1, 1, 1)).starts_with(CLEAR));
    }
}
