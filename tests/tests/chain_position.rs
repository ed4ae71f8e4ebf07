//! Our place in the hook's chain (issue 21, guard 8). A program placed before ours that ends
//! the chain — as Cilium's do when it restarts and re-attaches, or an operator's tool — hides
//! every packet from our counts (retina#1958). At each resync the daemon finds it
//! (`linkmeter_ebpf_programs_before`), says so once at WARN, moves ours back to the head
//! (`linkmeter_ebpf_reanchor_total`) and counts exactly again; the other program keeps running
//! behind ours. TCX (pinned and not) and legacy tc, where the newest filter of a priority runs
//! first. Failed on `main` before the guard: nothing moved, and every packet after the other
//! program arrived went uncounted.

use std::time::Duration;

use collector::backend::ebpf::AttachedMode;
use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, Metrics, scrape},
    eventually,
    kernel::link_stats,
    kernel_tests_enabled, tcx_available,
    testprogs::{Kind, TestProgs},
    topology::{A_IP, B_IP, VethPair},
    traffic::udp_exchange,
};

/// eBPF packets counted on `va` in `direction`.
fn packets(m: &Metrics, direction: &str) -> u64 {
    m.value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", "va"),
            ("direction", direction),
            ("backend", "ebpf"),
        ],
    )
    .unwrap_or_else(|| panic!("no eBPF {direction} packets for va\n{}", m.0)) as u64
}

fn programs_before(m: &Metrics, direction: &str) -> Option<f64> {
    m.value(
        "linkmeter_ebpf_programs_before",
        &[("interface", "va"), ("direction", direction)],
    )
}

/// Traffic both ways over the veth pair, and what our counters and the kernel's say of it.
fn exchange_and_compare(topo: &VethPair) -> ((u64, u64), (u64, u64)) {
    let (kernel_before, ours_before) = (link_stats(&topo.a, "va"), scrape(&topo.a));
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 20);
    udp_exchange(&topo.b, B_IP, &topo.a, A_IP, 15);
    let (kernel, ours) = (
        link_stats(&topo.a, "va").since(&kernel_before),
        scrape(&topo.a),
    );
    (
        (
            packets(&ours, "rx") - packets(&ours_before, "rx"),
            packets(&ours, "tx") - packets(&ours_before, "tx"),
        ),
        (kernel.rx_packets, kernel.tx_packets),
    )
}

fn chain_ending_program_placed_first_is_found_and_ours_moved_back(
    mode: AttachedMode,
    pinned: bool,
    tag: &str,
) {
    let topo = VethPair::new(tag);
    let bpffs = pinned.then(|| BpfFs::mount(tag));
    let pin_path = bpffs.as_ref().map(|fs| fs.join("lm"));
    let mut args = vec![
        "--attach-mode",
        if mode == AttachedMode::Tcx {
            "tcx"
        } else {
            "tc"
        },
        "--override",
        "va=ebpf",
        "--resync-interval",
        "1",
    ];
    if let Some(path) = &pin_path {
        args.extend(["--pin", "--pin-path", path]);
    }
    let daemon = Daemon::start(&topo.a, &args);
    eventually("the first check", Duration::from_secs(10), || {
        let m = scrape(&topo.a);
        let found = (programs_before(&m, "rx"), programs_before(&m, "tx"));
        (found == (Some(0.0), Some(0.0))).then_some(()).ok_or(found)
    });
    let (ours, kernel) = exchange_and_compare(&topo);
    assert_eq!(ours, kernel, "exact while first");

    // Another program that ends the chain goes before ours on both hooks.
    let mut other = TestProgs::load();
    topo.a.within(|| match mode {
        AttachedMode::Tcx => other.attach_tcx(Kind::ChainEnd, "va", true),
        AttachedMode::Tc => other.attach(Kind::ChainEnd, "va", AttachedMode::Tc),
    });
    let m = eventually("moved back to the head", Duration::from_secs(15), || {
        let m = scrape(&topo.a);
        let moved = m.value("linkmeter_ebpf_reanchor_total", &[]);
        (moved == Some(2.0)).then_some(m).ok_or(moved)
    });
    assert_eq!(
        (programs_before(&m, "rx"), programs_before(&m, "tx")),
        (Some(0.0), Some(0.0)),
        "{}",
        m.0
    );
    assert_eq!(
        m.value("linkmeter_ebpf_reattach_total", &[]),
        Some(0.0),
        "moved, not re-attached"
    );

    // Exact again, and the other program still runs, behind ours.
    let other_before = other.packets(Kind::ChainEnd);
    let (ours, kernel) = exchange_and_compare(&topo);
    assert_eq!(ours, kernel, "exact after the move\n{}", daemon.log_text());
    let other_after = other.packets(Kind::ChainEnd);
    assert_eq!(
        (
            other_after.0 - other_before.0,
            other_after.1 - other_before.1
        ),
        kernel,
        "the other program sees every packet too"
    );
    let warned: Vec<serde_json::Value> = daemon
        .log_lines_at("WARN")
        .into_iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("placed before linkmeter's"))
        })
        .collect();
    assert_eq!(warned.len(), 1, "said once: {}", daemon.log_text());
    assert_eq!(warned[0]["fields"]["programs_before"], 1, "{warned:?}");

    if let Some(path) = &pin_path {
        // The pins hold the moved links: they are what the next daemon adopts.
        for hook in ["ingress", "egress"] {
            let ifindex = integration_tests::kernel::ifindex(&topo.a, "va");
            let layout = std::fs::read_dir(path)
                .expect("pin path")
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().starts_with('v'))
                .expect("layout directory");
            assert!(
                layout
                    .path()
                    .join(format!("links/{ifindex}-{hook}"))
                    .exists()
            );
        }
    }
    assert!(daemon.stop().success());
    drop(other);
}

/// linkmeter's own copies ahead (`watch` attaches first, counting into its own maps) are no reason
/// to move: the daemon neither moves nor warns (from an adversarial review: before, each `watch`
/// beside the daemon cost two moves, their lost packets and a WARN).
fn watch_beside_the_daemon_is_no_reason_to_move(mode: &str, tag: &str) {
    let topo = VethPair::new(tag);
    let args = [
        "--attach-mode",
        mode,
        "--override",
        "va=ebpf",
        "--resync-interval",
        "1",
    ];
    let daemon = Daemon::start(&topo.a, &args);
    let watch = std::process::Command::new("ip")
        .args(["netns", "exec", topo.a.name()])
        .arg(integration_tests::daemon::binary())
        .args([
            "watch",
            "-i",
            "va",
            "--attach-mode",
            mode,
            "--interval",
            "0.5",
        ])
        .args(["--count", "8"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start watch");
    let out = watch.wait_with_output().expect("watch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = scrape(&topo.a);
    assert_eq!(
        m.value("linkmeter_ebpf_reanchor_total", &[]),
        Some(0.0),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        (programs_before(&m, "rx"), programs_before(&m, "tx")),
        (Some(0.0), Some(0.0))
    );
    assert!(
        daemon.log_lines_at("WARN").is_empty(),
        "{}",
        daemon.log_text()
    );
    let (ours, kernel) = exchange_and_compare(&topo);
    assert_eq!(ours, kernel);
    assert!(daemon.stop().success());
}

#[test]
fn watch_beside_the_daemon_is_no_reason_to_move_tcx() {
    if kernel_tests_enabled() && tcx_available() {
        watch_beside_the_daemon_is_no_reason_to_move("tcx", "cwx");
    }
}

#[test]
fn watch_beside_the_daemon_is_no_reason_to_move_legacy_tc() {
    if kernel_tests_enabled() {
        watch_beside_the_daemon_is_no_reason_to_move("tc", "cwt");
    }
}

/// Under legacy tc, a TCX program runs before every filter and cannot be passed: reported, said
/// once, never moved for (from an adversarial review: before, a TCX chain end ahead of a legacy
/// daemon hid every packet and programs_before said 0).
#[test]
fn a_tcx_program_ahead_of_a_legacy_filter_is_reported_not_moved_for() {
    if !kernel_tests_enabled() || !tcx_available() {
        return;
    }
    let topo = VethPair::new("cpl");
    let args = [
        "--attach-mode",
        "tc",
        "--override",
        "va=ebpf",
        "--resync-interval",
        "1",
    ];
    let daemon = Daemon::start(&topo.a, &args);
    let mut other = TestProgs::load();
    topo.a
        .within(|| other.attach_tcx(Kind::ChainEnd, "va", true));
    let m = eventually("reported", Duration::from_secs(15), || {
        let m = scrape(&topo.a);
        let found = (programs_before(&m, "rx"), programs_before(&m, "tx"));
        (found == (Some(1.0), Some(1.0))).then_some(m).ok_or(found)
    });
    assert_eq!(m.value("linkmeter_ebpf_reanchor_total", &[]), Some(0.0));
    let said: Vec<_> = daemon
        .log_lines_at("WARN")
        .into_iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot be passed"))
        })
        .collect();
    assert_eq!(said.len(), 1, "once per attachment: {}", daemon.log_text());
    assert!(daemon.stop().success());
    drop(other);
}

#[test]
fn a_program_placed_before_ours_is_found_and_ours_moved_back_tcx() {
    if kernel_tests_enabled() && tcx_available() {
        chain_ending_program_placed_first_is_found_and_ours_moved_back(
            AttachedMode::Tcx,
            false,
            "cpx",
        );
    }
}

#[test]
fn a_program_placed_before_ours_is_found_and_ours_moved_back_tcx_pinned() {
    if kernel_tests_enabled() && tcx_available() {
        chain_ending_program_placed_first_is_found_and_ours_moved_back(
            AttachedMode::Tcx,
            true,
            "cpp",
        );
    }
}

#[test]
fn a_filter_placed_before_ours_is_found_and_ours_moved_back_legacy_tc() {
    if kernel_tests_enabled() {
        chain_ending_program_placed_first_is_found_and_ours_moved_back(
            AttachedMode::Tc,
            false,
            "cpt",
        );
    }
}
