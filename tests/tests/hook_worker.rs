//! The hook worker (the thread that attaches, detaches and checks, off the owner's thread) in the
//! real daemon, under load: an interface renamed away from eBPF while the worker is busy
//! attaching others keeps its counters until its programs are detached (no packet counted as
//! overflow), a clean SIGTERM on a busy node still detaches every legacy filter, and renames,
//! deletions and removals behind its back during a burst of TCX attaches end with exactly one
//! attachment per hook, as routed.

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{Daemon, scrape},
    kernel_tests_enabled,
    netns::{NetNs, within_named},
    topology::{A_IP, B_IP, VethPair},
};

/// Runs `ip -batch` in `ns` with `commands`, one per line.
fn ip_batch(ns: &NetNs, commands: &str) {
    let path = std::env::temp_dir().join(format!("{}.review.batch", ns.name()));
    std::fs::write(&path, commands).expect("write batch");
    ns.exec(&["ip", "-batch", path.to_str().expect("utf-8 temp dir")]);
    let _ = std::fs::remove_file(&path);
}

/// Sends UDP datagrams from `B_IP` in namespace `from` to `A_IP` until `stop` is set.
fn flood(from: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        within_named(&from, || {
            let socket = UdpSocket::bind((B_IP, 0)).expect("bind");
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                if socket.send_to(&[0u8; 64], (A_IP, 9)).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    })
}

/// Lines of `tc filter show` naming a linkmeter program, on every interface of `ns`.
fn our_filters(ns: &NetNs) -> usize {
    let links = ns.ip(&["-br", "link"]);
    let mut found = 0;
    for name in links
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n))
    {
        for hook in ["ingress", "egress"] {
            found += ns
                .tc(&["filter", "show", "dev", name, hook])
                .lines()
                .filter(|l| l.contains("linkmeter_"))
                .count();
        }
    }
    found
}

#[test]
fn renaming_an_interface_away_from_ebpf_under_traffic_counts_no_overflow() {
    if !kernel_tests_enabled() {
        return;
    }
    let pair = VethPair::new("rvo");
    let daemon = Daemon::start(
        &pair.a,
        &[
            "--attach-mode",
            "tc",
            "--override",
            "v*=ebpf",
            "--resync-interval",
            "1",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(pair.b.name().to_owned(), Arc::clone(&stop));
    thread::sleep(Duration::from_millis(500));
    // Some new eBPF-routed interfaces (well within max_interfaces) are being attached, then
    // `va` is renamed to a name routed to ethtool.
    let mut batch = String::new();
    for i in 0..60 {
        batch.push_str(&format!("link add vp{i} type veth peer name vq{i}\n"));
    }
    batch.push_str("link set va down\nlink set va name xa\nlink set xa up\n");
    ip_batch(&pair.a, &batch);
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    thread::sleep(Duration::from_millis(1500));
    let m = scrape(&pair.a);
    let used = m.value("linkmeter_ebpf_slots", &[("state", "used")]);
    let overflow = m.value("linkmeter_ebpf_map_overflow_total", &[("map", "directory")]);
    let log = daemon.log_text();
    let _ = daemon.stop();
    assert_eq!(
        overflow,
        Some(0.0),
        "{sent} datagrams sent; slots used {used:?} of 256 (the map is not full), yet packets \
         were counted as directory overflow; the log says: {:?}",
        log.lines()
            .find(|l| l.contains("no counter slot"))
            .unwrap_or("")
    );
}

#[test]
fn sigterm_on_a_busy_node_leaves_no_legacy_filter() {
    if !kernel_tests_enabled() {
        return;
    }
    let pair = VethPair::new("rvs");
    let daemon = Daemon::start(&pair.a, &["--attach-mode", "tc", "--override", "v*=ebpf"]);
    let mut batch = String::new();
    for i in 0..127 {
        batch.push_str(&format!("link add vp{i} type veth peer name vq{i}\n"));
    }
    ip_batch(&pair.a, &batch);
    // Every interface attached (255 of 256 slots).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = scrape(&pair.a).value("linkmeter_ebpf_slots", &[("state", "used")]);
        if used == Some(255.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not attached: {used:?}");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(our_filters(&pair.a) > 0);
    // A busy node: more runnable threads at the default priority than cores.
    let busy = Arc::new(AtomicBool::new(true));
    let hogs: Vec<_> = (0..12)
        .map(|_| {
            let busy = Arc::clone(&busy);
            thread::spawn(move || {
                while busy.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = daemon.stop();
    let took = started.elapsed();
    busy.store(false, Ordering::Relaxed);
    for hog in hogs {
        let _ = hog.join();
    }
    let left = our_filters(&pair.a);
    eprintln!("SIGTERM: {status} after {took:?}; filter lines left: {left}");
    assert_eq!(
        left, 0,
        "after a clean SIGTERM ({status}, {took:?}) {left} `tc filter show` lines of linkmeter \
         programs are left in the kernel"
    );
}

/// linkmeter programs attached through TCX to `hook` of `interface` in `ns`.
fn tcx_ours(ns: &NetNs, interface: &str, hook: aya::programs::TcAttachType) -> usize {
    ns.within(|| aya::programs::SchedClassifier::query_tcx(interface, hook))
        .map(|(_, programs)| {
            programs
                .iter()
                .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("linkmeter")))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn tcx_renames_removals_and_deletions_during_a_burst_leave_exactly_one_attachment_each() {
    if !kernel_tests_enabled() || !integration_tests::tcx_available() {
        return;
    }
    let pair = VethPair::new("rvt");
    let daemon = Daemon::start(
        &pair.a,
        &[
            "--attach-mode",
            "tcx",
            "--override",
            "v*=ebpf",
            "--resync-interval",
            "1",
        ],
    );
    // A burst (seconds of TCX attaches queued on the hook worker); meanwhile renames away from
    // eBPF, renames within eBPF, and deletions of interfaces whose attach is still queued.
    let mut batch = String::new();
    for i in 0..80 {
        batch.push_str(&format!("link add vp{i} type veth peer name vq{i}\n"));
    }
    for i in 0..10 {
        batch.push_str(&format!("link set vp{i} name xp{i}\n"));
        batch.push_str(&format!("link set vq{i} name vr{i}\n"));
        batch.push_str(&format!("link del vp{}\n", 40 + i));
    }
    ip_batch(&pair.a, &batch);
    // Someone detaches va's TCX link meanwhile.
    let detached = integration_tests::tcx::detach_links_of(&pair.a, "va", "linkmeter");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&pair.a);
        let used = m.value("linkmeter_ebpf_slots", &[("state", "used")]);
        // lo, va and 70 pairs; slots: va, 60 vp, 10 vr, 60 vq (the xp are not eBPF-routed).
        let routing = m.routing();
        if routing.len() == 2 + 140 && used == Some(1.0 + 60.0 + 10.0 + 60.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: used {used:?}, {} routed",
            routing.len()
        );
        thread::sleep(Duration::from_millis(300));
    }
    use aya::programs::TcAttachType::{Egress, Ingress};
    let misplaced = || {
        let mut wrong = Vec::new();
        for name in ["va".to_owned()]
            .into_iter()
            .chain(
                (10..80)
                    .filter(|i| !(40..50).contains(i))
                    .map(|i| format!("vp{i}")),
            )
            .chain((0..10).map(|i| format!("vr{i}")))
            .chain(
                (10..80)
                    .filter(|i| !(40..50).contains(i))
                    .map(|i| format!("vq{i}")),
            )
        {
            for hook in [Ingress, Egress] {
                let n = tcx_ours(&pair.a, &name, hook);
                if n != 1 {
                    wrong.push((name.clone(), format!("{hook:?}"), n));
                }
            }
        }
        for name in (0..10).map(|i| format!("xp{i}")) {
            for hook in [Ingress, Egress] {
                let n = tcx_ours(&pair.a, &name, hook);
                if n != 0 {
                    wrong.push((name.clone(), format!("{hook:?}"), n));
                }
            }
        }
        wrong
    };
    // Re-attaching what the detach removed takes a few resyncs (TCX attaches are slow).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wrong = misplaced();
    while !wrong.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        wrong = misplaced();
    }
    let _ = daemon.stop();
    assert!(detached > 0);
    assert!(
        wrong.is_empty(),
        "attachments per hook not as routed: {wrong:?}"
    );
}
