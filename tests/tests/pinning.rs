//! Counters that survive restarts: with `--pin`, the maps and links stay in a bpffs, the
//! programs keep counting while no daemon runs, and the next daemon continues the same counters
//! (atomically replacing the program on the existing links). Checked exactly against the kernel
//! over continuous traffic through SIGTERM, SIGKILL and restarts; `linkmeter cleanup` leaves
//! nothing behind.

use std::{
    net::UdpSocket,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::programs::{SchedClassifier, TcAttachType};
use collector_common::MAP_LAYOUT_VERSION;
use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, Metrics, binary, scrape},
    kernel::link_stats,
    kernel_tests_enabled,
    netns::NetNs,
    topology::{VxlanMode, VxlanPair},
};

/// UDP datagrams sent every millisecond from `src` to `dst` until stopped.
struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flow {
    fn start(src: &NetNs, src_ip: &str, dst: &NetNs, dst_ip: &str) -> Self {
        let receiver = dst.within(|| UdpSocket::bind((dst_ip, 0)).expect("bind receiver"));
        let to = receiver.local_addr().expect("address");
        let sender = src.within(|| UdpSocket::bind((src_ip, 0)).expect("bind sender"));
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stopping, counting) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let _receiver = receiver;
            while !stopping.load(Ordering::Relaxed) {
                if sender.send_to(&[0u8; 100], to).is_ok() {
                    counting.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("flow thread");
        }
        self.sent()
    }
}

/// Lets the flow run for a moment and checks that packets did flow.
fn flowing(flows: &[&Flow]) {
    let before: Vec<u64> = flows.iter().map(|f| f.sent()).collect();
    std::thread::sleep(Duration::from_millis(300));
    for (flow, before) in flows.iter().zip(before) {
        assert!(flow.sent() > before + 10, "traffic stalled");
    }
}

fn ebpf_packets(m: &Metrics, direction: &str) -> u64 {
    m.value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", "vx0"),
            ("direction", direction),
            ("backend", "ebpf"),
        ],
    )
    .unwrap_or_else(|| panic!("no eBPF {direction} packets for vx0")) as u64
}

/// linkmeter programs on each hook of vx0: TCX programs or legacy filters.
fn on_hooks(ns: &NetNs, mode: &str) -> (usize, usize) {
    let count = |hook: TcAttachType, name: &str| {
        if mode == "tcx" {
            ns.within(|| SchedClassifier::query_tcx("vx0", hook))
                .expect("query_tcx")
                .1
                .iter()
                .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("linkmeter")))
                .count()
        } else {
            ns.tc(&["filter", "show", "dev", "vx0", name])
                .lines()
                .filter(|l| l.contains("linkmeter_"))
                .count()
        }
    };
    (
        count(TcAttachType::Ingress, "ingress"),
        count(TcAttachType::Egress, "egress"),
    )
}

fn counters_continue_across_sigterm_sigkill_and_restarts(mode: &str) {
    let bpffs = BpfFs::mount(mode);
    let pins = bpffs.join("linkmeter");
    let topo = VxlanPair::new(&format!("pin{mode}"), VxlanMode::FixedRemote);
    let (a, b) = (&topo.underlay.a, &topo.underlay.b);
    let args = ["--pin", "--pin-path", &pins, "--attach-mode", mode];
    let before = link_stats(a, "vx0");
    assert_eq!((before.tx_packets, before.rx_packets), (0, 0));

    let daemon = Daemon::start(a, &args);
    let out = Flow::start(a, VxlanPair::A_OVERLAY, b, VxlanPair::B_OVERLAY);
    let back = Flow::start(b, VxlanPair::B_OVERLAY, a, VxlanPair::A_OVERLAY);
    flowing(&[&out, &back]);
    assert!(daemon.stop().success());
    // No daemon: the pinned program goes on counting.
    assert_eq!(on_hooks(a, mode), (1, 1));
    flowing(&[&out, &back]);

    let daemon = Daemon::start(a, &args);
    assert_eq!(
        on_hooks(a, mode),
        (1, 1),
        "the program was replaced, not added"
    );
    flowing(&[&out, &back]);
    daemon.kill();
    flowing(&[&out, &back]);

    let daemon = Daemon::start(a, &args);
    assert_eq!(on_hooks(a, mode), (1, 1));
    flowing(&[&out, &back]);
    let (sent_out, sent_back) = (out.stop(), back.stop());
    std::thread::sleep(Duration::from_millis(100));

    let m = scrape(a);
    let kernel = link_stats(a, "vx0");
    assert_eq!(kernel.tx_packets, sent_out);
    assert_eq!(ebpf_packets(&m, "tx"), kernel.tx_packets);
    assert_eq!(ebpf_packets(&m, "rx"), kernel.rx_packets);
    assert!(kernel.rx_packets >= sent_back.min(1), "{kernel:?}");

    // While it runs, `linkmeter cleanup` refuses to pull the pins from under it.
    let busy = Command::new("ip")
        .args(["netns", "exec", a.name()])
        .arg(binary())
        .args(["cleanup", "--pin-path", &pins])
        .output()
        .expect("run cleanup");
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use by another linkmeter process"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert_eq!(on_hooks(a, mode), (1, 1));
    // Stopped, the daemon leaves its pins; `linkmeter cleanup` removes them and the programs.
    assert!(daemon.stop().success());
    assert!(std::path::Path::new(&pins).exists());
    let out = Command::new("ip")
        .args(["netns", "exec", a.name()])
        .arg(binary())
        .args(["cleanup", "--pin-path", &pins])
        .output()
        .expect("run cleanup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::path::Path::new(&pins).exists());
    assert_eq!(on_hooks(a, mode), (0, 0));
    // Nothing is left in the bpffs but what the kernel puts in every one.
    let left: Vec<String> = std::fs::read_dir(bpffs.path())
        .expect("read bpffs")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".debug"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn tcx_counters_continue_across_sigterm_sigkill_and_restarts() {
    if !kernel_tests_enabled() {
        return;
    }
    if !integration_tests::tcx_available() {
        return;
    }
    counters_continue_across_sigterm_sigkill_and_restarts("tcx");
}

#[test]
fn legacy_tc_counters_continue_across_sigterm_sigkill_and_restarts() {
    if !kernel_tests_enabled() {
        return;
    }
    counters_continue_across_sigterm_sigkill_and_restarts("tc");
}

#[test]
fn a_daemon_with_another_map_layout_replaces_the_old_pins_without_leaking_them() {
    if !kernel_tests_enabled() || !integration_tests::tcx_available() {
        return;
    }
    let bpffs = BpfFs::mount("layout");
    let pins = bpffs.join("linkmeter");
    let topo = VxlanPair::new("pinlay", VxlanMode::FixedRemote);
    let a = &topo.underlay.a;
    let old = Daemon::start(
        a,
        &["--pin", "--pin-path", &pins, "--max-interfaces", "100"],
    );
    assert!(old.stop().success());
    let layouts = || {
        let mut names: Vec<String> = std::fs::read_dir(&pins)
            .expect("pin dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    let layout = |interfaces| format!("v{MAP_LAYOUT_VERSION}-i{interfaces}-p10240");
    assert_eq!(layouts(), [layout(100)]);
    // Another capacity is another layout: the old maps cannot be reused, so they and their
    // links go, and the new daemon attaches once.
    let new = Daemon::start(a, &["--pin", "--pin-path", &pins]);
    assert_eq!(layouts(), [layout(256)]);
    assert_eq!(on_hooks(a, "tcx"), (1, 1));
    assert!(
        new.log_text().contains("another map layout or capacity"),
        "{}",
        new.log_text()
    );
    assert!(new.stop().success());
}

#[test]
fn without_a_bpffs_the_daemon_counts_without_pins_and_says_so() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VxlanPair::new("nobpffs", VxlanMode::FixedRemote);
    let a = &topo.underlay.a;
    let dir = std::env::temp_dir().join(format!("lmt-notbpffs-{}", std::process::id()));
    let daemon = Daemon::start(a, &["--pin", "--pin-path", dir.to_str().expect("utf-8")]);
    assert_eq!(
        scrape(a).routing().get("vx0").map(|r| r.0.as_str()),
        Some("ebpf")
    );
    assert!(
        daemon.log_text().contains("pinning unavailable"),
        "{}",
        daemon.log_text()
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
