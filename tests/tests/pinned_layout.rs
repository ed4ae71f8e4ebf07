//! A pinned map that is not what this build creates is replaced, never used (issue 21, defect
//! 1): before the check, a `stats` map pinned with 1,024-byte values made the first scrape abort
//! the daemon (`free(): corrupted unsorted chunks`: the kernel copied 1,024 bytes per CPU into
//! buffers of 256), and one with 64-byte values made the verifier refuse the programs, the
//! interface falling back with a reason about privileges. Failed on `main` before the fix.

use collector_common::MAP_LAYOUT_VERSION;
use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, Metrics, scrape},
    kernel_tests_enabled,
    netns::run,
    topology::{VxlanMode, VxlanPair},
    traffic::udp_exchange,
};

/// Packets counted on `vx0`'s transmit side by the eBPF backend.
fn tx_packets(m: &Metrics) -> Option<f64> {
    m.value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", "vx0"),
            ("direction", "tx"),
            ("backend", "ebpf"),
        ],
    )
}

/// Pins a per-CPU array `stats` with `value`-byte values where the daemon's layout directory
/// (`--max-interfaces 8 --max-peers 64`) keeps its statistics, then runs a daemon over it:
/// it must replace the map, say so once, and count exactly.
fn foreign_stats_map_is_replaced(value: u32, tag: &str) {
    let bpffs = BpfFs::mount(tag);
    let pins = bpffs.join("linkmeter");
    let dir = format!("{pins}/v{MAP_LAYOUT_VERSION}-i8-p64");
    std::fs::create_dir_all(&dir).expect("layout directory");
    run(
        "bpftool",
        &[
            "map",
            "create",
            &format!("{dir}/stats"),
            "type",
            "percpu_array",
            "key",
            "4",
            "value",
            &value.to_string(),
            "entries",
            "16",
            "name",
            "foreign",
        ],
    );
    let topo = VxlanPair::new(tag, VxlanMode::FixedRemote);
    let (a, b) = (&topo.underlay.a, &topo.underlay.b);
    let args = [
        "--pin",
        "--pin-path",
        &pins,
        "--max-interfaces",
        "8",
        "--max-peers",
        "64",
    ];
    let mut daemon = Daemon::start(a, &args);
    let sent = udp_exchange(a, VxlanPair::A_OVERLAY, b, VxlanPair::B_OVERLAY, 25);
    for _ in 0..3 {
        assert_eq!(
            tx_packets(&scrape(a)),
            Some(sent.packets as f64),
            "{}",
            daemon.log_text()
        );
    }
    assert!(daemon.exited().is_none(), "{}", daemon.log_text());
    let said: Vec<String> = daemon
        .log_lines_at("WARN")
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned))
        .filter(|m| m.contains("pinned map is not what this build creates"))
        .collect();
    assert_eq!(said.len(), 1, "{}", daemon.log_text());
    assert!(
        daemon.log_text().contains(&format!("value {value} B")),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop().success());
    // The replacement is what the next daemon adopts, silently.
    let daemon = Daemon::start(a, &args);
    assert_eq!(tx_packets(&scrape(a)), Some(sent.packets as f64));
    assert!(
        !daemon
            .log_text()
            .contains("pinned map is not what this build creates"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_pinned_stats_map_with_larger_values_is_replaced_not_read() {
    if !kernel_tests_enabled() {
        return;
    }
    foreign_stats_map_is_replaced(1024, "plbig");
}

#[test]
fn a_pinned_stats_map_with_smaller_values_is_replaced_not_a_verifier_failure() {
    if !kernel_tests_enabled() {
        return;
    }
    foreign_stats_map_is_replaced(64, "plsmall");
}
