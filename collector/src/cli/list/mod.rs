//! `linkmeter list`: one row per interface, without a running daemon; with `--attach`, the eBPF
//! breakdown and the overlay peers too.

mod breakdown;

pub(super) use breakdown::mix_line;

use std::time::Duration;

use serde::Serialize;

use crate::{
    backend::ebpf::unattached_if_loadable,
    cli::{Failure, once, runtime},
    config::{Config, PolicyArgs},
    metrics::{InterfaceSnapshot, Snapshot},
    policy::Backend,
};

/// Examples shown by `linkmeter list --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  linkmeter list
  linkmeter list --output json | jq '.[] | select(.backend == \"ebpf\")'
  linkmeter list --attach --duration 5";

/// Output format of `list`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// An aligned table for a terminal.
    #[default]
    Table,
    /// A JSON array, one object per interface.
    Json,
}

/// Options of `linkmeter list`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Attach the eBPF counter to eBPF-routed interfaces for --duration and report its counts
    /// (otherwise they show "not attached").
    #[arg(long)]
    attach: bool,
    /// Seconds to count with --attach.
    #[arg(long, default_value_t = 2.0, value_parser = crate::cli::seconds_in(0.0..=3600.0))]
    duration: f64,
    /// Routing configuration, as for `linkmeter run`.
    #[command(flatten)]
    config: PolicyArgs,
}

/// One interface as `list --output json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Row {
    /// Name.
    interface: String,
    /// Index.
    ifindex: u32,
    /// Link kind (empty for NICs).
    kind: String,
    /// Driver (empty when ethtool does not answer).
    driver: String,
    /// Backend.
    backend: String,
    /// Why.
    reason: String,
    /// Counts from the backend; `null` when not measured (not attached, or `none`).
    rx_packets: Option<u64>,
    /// See `rx_packets`.
    tx_packets: Option<u64>,
    /// See `rx_packets`.
    rx_bytes: Option<u64>,
    /// See `rx_packets`.
    tx_bytes: Option<u64>,
    /// `tcx` or `tc` for attached eBPF interfaces, else `null`.
    attach_mode: Option<String>,
    /// The eBPF breakdown (protocols, TCP flags, sizes) per direction, where the counter is
    /// attached; else `null`.
    breakdown: Option<breakdown::Breakdown>,
    /// Traffic per remote tunnel endpoint (external-mode tunnel devices).
    peers: Vec<breakdown::Peer>,
    /// With a zone table only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    zones: Vec<breakdown::Zone>,
    /// Packets dropped while counting (`--attach`), by kernel drop reason.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    drops: std::collections::BTreeMap<String, u64>,
}

impl Row {
    fn new(i: &InterfaceSnapshot, snapshot: &Snapshot) -> Self {
        let (packets, bytes) = (i.packets(), i.bytes());
        Self {
            interface: i.name.clone(),
            ifindex: i.ifindex,
            kind: i.kind.clone(),
            driver: i.driver.clone(),
            backend: i.backend.to_string(),
            reason: i.reason.to_string(),
            rx_packets: packets.map(|p| p.rx),
            tx_packets: packets.map(|p| p.tx),
            rx_bytes: bytes.map(|b| b.rx),
            tx_bytes: bytes.map(|b| b.tx),
            attach_mode: i.attach_mode.map(|m| m.to_string()),
            breakdown: breakdown::of(i),
            peers: breakdown::peers_of(snapshot, &i.name),
            zones: breakdown::zones_of(snapshot, &i.name),
            drops: snapshot
                .drops
                .iter()
                .filter(|d| d.interface == i.name)
                .map(|d| (d.reason.clone(), d.packets))
                .collect(),
        }
    }
}

/// Runs `linkmeter list`.
///
/// # Errors
///
/// Bad configuration (status 2), or netlink / ethtool unusable (status 1).
pub(crate) fn execute(args: &ListArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config.clone().into()).map_err(|e| Failure::config(&e))?;
    let sample = Duration::from_secs_f64(args.duration);
    let snapshot = runtime()?.block_on(async {
        if args.attach {
            once::collect_attached(&config, sample).await
        } else {
            let ebpf = unattached_if_loadable(&once::command_options(&config));
            once::collect(&config, ebpf, Duration::ZERO, false).await
        }
    })?;
    let out = match args.output {
        Output::Json => {
            let rows: Vec<Row> = snapshot
                .interfaces
                .iter()
                .map(|i| Row::new(i, &snapshot))
                .collect();
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::runtime(e.to_string()))? + "\n"
        }
        Output::Table => table(&snapshot) + &breakdown::sections(&snapshot),
    };
    print!("{out}");
    Ok(())
}

/// Renders the table: one row per interface, columns sized to their content.
fn table(snapshot: &Snapshot) -> String {
    let header = [
        "INTERFACE",
        "IFINDEX",
        "KIND",
        "DRIVER",
        "BACKEND",
        "REASON",
        "RX_PACKETS",
        "TX_PACKETS",
        "RX_BYTES",
        "TX_BYTES",
        "ATTACH",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for i in &snapshot.interfaces {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let counts: [String; 4] = match (i.packets(), i.bytes()) {
            (Some(p), Some(b)) => [p.rx, p.tx, b.rx, b.tx].map(|v| v.to_string()),
            _ if i.backend == Backend::Ebpf => ["not attached", "", "", ""].map(str::to_owned),
            _ => ["-", "-", "-", "-"].map(str::to_owned),
        };
        let mut row = vec![
            i.name.clone(),
            i.ifindex.to_string(),
            dash(&i.kind),
            dash(&i.driver),
            i.backend.to_string(),
            i.reason.to_string(),
        ];
        row.extend(counts);
        row.push(
            i.attach_mode
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        backend::ebpf::{AttachedMode, InterfaceStats, fake::udp_stats},
        policy::Reason,
    };

    fn iface(name: &str, backend: Backend, reason: Reason, counts: bool) -> InterfaceSnapshot {
        InterfaceSnapshot {
            name: name.into(),
            ifindex: 3,
            kind: "vxlan".into(),
            driver: String::new(),
            backend,
            reason,
            attach_mode: counts.then_some(AttachedMode::Tcx),
            programs_before: None,
            kernel: None,
            ebpf: counts.then_some(InterfaceStats {
                rx: udp_stats(1),
                tx: udp_stats(2),
            }),
            ethtool: Vec::new(),
            speed_bytes: None,
            full_duplex: None,
        }
    }

    #[test]
    fn table_marks_unattached_ebpf_interfaces_and_aligns_columns() {
        let snapshot = Snapshot {
            interfaces: vec![
                iface(
                    "cilium_vxlan",
                    Backend::Ebpf,
                    Reason::EthtoolUnsupported,
                    false,
                ),
                iface("vx1", Backend::Ebpf, Reason::EthtoolNoStats, true),
                iface("lo", Backend::None, Reason::Excluded, false),
            ],
            ..Snapshot::default()
        };
        let text = table(&snapshot);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("INTERFACE     IFINDEX  KIND   DRIVER  BACKEND"),
            "{text}"
        );
        assert!(lines[1].contains("not attached"), "{text}");
        assert!(lines[2].ends_with("tcx"), "{text}");
        assert!(
            lines[3].starts_with("lo ") && lines[3].contains("none"),
            "{text}"
        );
        let json =
            serde_json::to_value(Row::new(&snapshot.interfaces[0], &snapshot)).expect("json");
        assert!(json["rx_packets"].is_null() && json["attach_mode"].is_null());
        assert_eq!(
            serde_json::to_value(Row::new(&snapshot.interfaces[1], &snapshot)).expect("json")["attach_mode"],
            "tcx"
        );
    }

    #[test]
    fn attached_interfaces_show_their_breakdown_and_peers() {
        let mut snapshot = Snapshot {
            interfaces: vec![iface("vx1", Backend::Ebpf, Reason::EthtoolNoStats, true)],
            ..Snapshot::default()
        };
        snapshot.peers.push(crate::metrics::PeerSnapshot {
            zone: None,
            interface: "vx1".into(),
            direction: collector_common::Direction::Egress,
            peer: "192.0.2.2".into(),
            packets: 2,
            bytes: 200,
        });
        let json =
            serde_json::to_value(Row::new(&snapshot.interfaces[0], &snapshot)).expect("json");
        let tx = &json["breakdown"]["tx"];
        assert_eq!(tx["protocols"]["ipv4_udp"]["packets"], 2);
        assert_eq!(tx["protocols"]["arp"]["packets"], 0);
        assert_eq!(tx["sizes"][1], serde_json::json!(["128", 2]));
        assert_eq!(tx["tcp_flags"]["rst"], 0);
        assert_eq!(json["peers"][0]["peer"], "192.0.2.2");
        let text = breakdown::sections(&snapshot);
        assert!(text.contains("vx1              tx  ipv4_udp 2"), "{text}");
        assert!(
            text.contains("OVERLAY PEERS") && text.contains("192.0.2.2"),
            "{text}"
        );
        assert!(json.get("zones").is_none() && json["peers"][0].get("zone").is_none());
        assert!(!text.contains("OVERLAY ZONES"), "{text}");
        // With a zone table: each peer's zone, and the interface's zones.
        snapshot.peers[0].zone = Some("eu-west-1b".into());
        snapshot.zones.push(crate::zones::ZoneCount {
            interface: "vx1".into(),
            direction: collector_common::Direction::Egress,
            zone: "eu-west-1b".into(),
            counter: collector_common::Counter {
                packets: 2,
                bytes: 200,
            },
        });
        let json =
            serde_json::to_value(Row::new(&snapshot.interfaces[0], &snapshot)).expect("json");
        assert_eq!(json["peers"][0]["zone"], "eu-west-1b");
        assert_eq!(json["zones"][0]["zone"], "eu-west-1b");
        assert_eq!(json["zones"][0]["packets"], 2);
        let text = breakdown::sections(&snapshot);
        assert!(
            text.contains("OVERLAY ZONES") && text.contains("vx1              tx  eu-west-1b"),
            "{text}"
        );
        assert!(
            json.get("drops").is_none() && !text.contains("DROPS"),
            "{text}"
        );
        // Drops by reason, in the row and in their section.
        snapshot.drops.push(crate::metrics::DropSnapshot {
            interface: "vx1".into(),
            reason: "no_socket".into(),
            packets: 7,
        });
        let json =
            serde_json::to_value(Row::new(&snapshot.interfaces[0], &snapshot)).expect("json");
        assert_eq!(json["drops"]["no_socket"], 7);
        let text = breakdown::sections(&snapshot);
        assert!(
            text.contains("DROPS BY KERNEL DROP REASON")
                && text.contains("vx1              no_socket                                   7"),
            "{text}"
        );
    }
}
