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
