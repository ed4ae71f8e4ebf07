//! Who owns an attachment, in legacy tc mode: commands run beside the daemon never disturb its
//! filters and leave nothing behind, even when interrupted; another tool's filter at our handle
//! is reported and ours goes beside it; a daemon killed with SIGKILL leaves filters that the
//! next one (or `linkmeter cleanup`) removes on every interface, whatever its routing.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use aya::programs::tc::TcHandle;
use integration_tests::{
    daemon::{Daemon, Metrics, binary, scrape},
    eventually,
    kernel::link_stats,
    kernel_tests_enabled,
    netns::NetNs,
    testprogs::{Kind, TestProgs},
    topology::{A_IP, B_IP, VethPair},
    traffic::udp_exchange,
};
use nix::{sys::signal, unistd::Pid};

/// The daemon in legacy tc mode with `va` routed to eBPF (a veth gives exact counts).
const DAEMON_ARGS: [&str; 6] = [
    "--attach-mode",
    "tc",
    "--override",
    "va=ebpf",
    "--resync-interval",
    "3600",
];

/// linkmeter filters on `va`'s `hook`: their `tc filter show` lines.
fn linkmeter_filters(ns: &NetNs, interface: &str, hook: &str) -> Vec<String> {
    ns.tc(&["filter", "show", "dev", interface, hook])
        .lines()
        .filter(|l| l.contains("linkmeter_"))
        .map(str::to_owned)
        .collect()
}

fn packets(m: &Metrics, direction: &str) -> u64 {
    m.value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", "va"),
            ("direction", direction),
            ("backend", "ebpf"),
        ],
    )
    .unwrap_or_else(|| panic!("no eBPF {direction} packets for va")) as u64
}

/// Starts `linkmeter <args>` in `ns` in the background.
fn spawn(ns: &NetNs, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start linkmeter")
}

fn interrupt(child: &Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    signal::kill(pid, signal::Signal::SIGINT).expect("SIGINT");
}

fn output(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn commands_beside_the_daemon_never_disturb_it_and_leave_nothing_even_interrupted() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("own");
    let before = link_stats(&topo.a, "va");
    let daemon = Daemon::start(&topo.a, &DAEMON_ARGS);
    let daemons_filters = |hook| linkmeter_filters(&topo.a, "va", hook);
    let (ingress, egress) = (daemons_filters("ingress"), daemons_filters("egress"));
    assert_eq!(
        (ingress.len(), egress.len()),
        (1, 1),
        "{ingress:?} {egress:?}"
    );
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 10);

    // `list --attach` on the same interface, to its end.
    let list = spawn(
        &topo.a,
        &[
            "list",
            "--attach",
            "--duration",
            "0.5",
            "--attach-mode",
            "tc",
            "--override",
            "va=ebpf",
        ],
    );
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 10);
    let (code, stderr) = output(list);
    assert_eq!(code, Some(0), "{stderr}");

    // `watch`, interrupted with SIGINT while traffic flows.
    let watch = spawn(&topo.a, &["watch", "-i", "va", "--attach-mode", "tc"]);
    eventually("watch attached", Duration::from_secs(10), || {
        let n = linkmeter_filters(&topo.a, "va", "ingress").len();
        (n == 2).then_some(()).ok_or(n)
    });
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 10);
    interrupt(&watch);
    let (code, stderr) = output(watch);
    assert_eq!(code, Some(0), "{stderr}");

    // `dump`, interrupted in the middle of its sample: it detaches and says so.
    let dump = spawn(
        &topo.a,
        &[
            "dump",
            "--duration",
            "60",
            "--attach-mode",
            "tc",
            "--override",
            "va=ebpf",
        ],
    );
    eventually("dump attached", Duration::from_secs(10), || {
        let n = linkmeter_filters(&topo.a, "va", "egress").len();
        (n == 2).then_some(()).ok_or(n)
    });
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 10);
    interrupt(&dump);
    let (code, stderr) = output(dump);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    // Only the daemon's filters are left, untouched, and it counted every packet.
    assert_eq!(daemons_filters("ingress"), ingress);
    assert_eq!(daemons_filters("egress"), egress);
    let m = scrape(&topo.a);
    let kernel = link_stats(&topo.a, "va");
    assert_eq!(packets(&m, "tx"), kernel.tx_packets - before.tx_packets);
    assert_eq!(packets(&m, "rx"), kernel.rx_packets - before.rx_packets);
    assert_eq!(packets(&m, "tx"), 40);
    assert_eq!(m.value("linkmeter_ebpf_reattach_total", &[]), Some(0.0));
    assert!(daemon.stop().success());
    assert!(linkmeter_filters(&topo.a, "va", "ingress").is_empty());
    assert!(linkmeter_filters(&topo.a, "va", "egress").is_empty());
}

#[test]
fn another_tools_filter_at_our_handle_is_reported_and_ours_goes_beside_it() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("foreign");
    let mut other = TestProgs::load();
    topo.a
        .within(|| other.attach_legacy_at(Kind::Observer, "va", TcHandle::new(0, 0x4c4d)));
    let before = link_stats(&topo.a, "va");
    let daemon = Daemon::start(&topo.a, &DAEMON_ARGS);
    for hook in ["ingress", "egress"] {
        let ours = linkmeter_filters(&topo.a, "va", hook);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(ours[0].contains("handle 0x14c4d"), "{ours:?}");
        let shown = topo.a.tc(&["filter", "show", "dev", "va", hook]);
        assert!(
            shown.contains("handle 0x4c4d"),
            "the other filter stays: {shown}"
        );
    }
    let warned = daemon
        .log_lines()
        .iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("another tool's tc filter"))
        })
        .count();
    assert_eq!(warned, 2, "one per hook: {}", daemon.log_text());

    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 25);
    let m = scrape(&topo.a);
    let kernel = link_stats(&topo.a, "va");
    assert_eq!(packets(&m, "tx"), kernel.tx_packets - before.tx_packets);
    assert_eq!(packets(&m, "rx"), kernel.rx_packets - before.rx_packets);
    assert_eq!(packets(&m, "tx"), 25);
    // The other tool's program still sees every packet too.
    assert_eq!(
        other.packets(Kind::Observer),
        (kernel.rx_packets - before.rx_packets, 25)
    );
    drop(daemon);
}

#[test]
fn filters_a_killed_daemon_left_are_removed_at_the_next_start_and_by_cleanup() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("stale");
    topo.add_vxlan("vxs", 8);
    let daemon = Daemon::start(&topo.a, &DAEMON_ARGS);
    daemon.kill();
    let left = |interface| {
        ["ingress", "egress"]
            .iter()
            .map(|hook| linkmeter_filters(&topo.a, interface, hook).len())
            .sum::<usize>()
    };
    assert_eq!(
        (left("va"), left("vxs")),
        (2, 2),
        "SIGKILL leaves legacy filters"
    );

    // The next daemon routes va to ethtool (no override), yet removes what was left there.
    let daemon = Daemon::start(&topo.a, &["--attach-mode", "tc"]);
    assert_eq!(left("va"), 0);
    assert_eq!(left("vxs"), 2, "only its own, fresh filters on vxs");
    assert_eq!(
        scrape(&topo.a).routing().get("va").map(|r| r.0.as_str()),
        Some("ethtool")
    );
    daemon.kill();

    // `linkmeter cleanup` removes what the second one left.
    let out = Command::new("ip")
        .args(["netns", "exec", topo.a.name()])
        .arg(binary())
        .arg("cleanup")
        .output()
        .expect("run cleanup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("removed 2 linkmeter tc filter(s)"),
        "{stdout}"
    );
    assert_eq!((left("va"), left("vxs")), (0, 0));
}

#[test]
fn a_filter_replaced_at_our_handle_while_running_stays_and_ours_is_reattached_beside_it() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("swap");
    let daemon = Daemon::start(
        &topo.a,
        &[
            "--attach-mode",
            "tc",
            "--override",
            "va=ebpf",
            "--resync-interval",
            "1",
        ],
    );
    // Another tool deletes our filters and puts its own at our handle, in one instant as far as
    // the daemon can tell: frozen meanwhile, it cannot resync in between and take the handle
    // back first.
    let mut other = TestProgs::load();
    {
        let _frozen = daemon.frozen();
        for hook in ["ingress", "egress"] {
            topo.a.tc(&[
                "filter", "del", "dev", "va", hook, "pref", "1", "handle", "0x4c4d", "bpf",
            ]);
        }
        topo.a
            .within(|| other.attach_legacy_at(Kind::Observer, "va", TcHandle::new(0, 0x4c4d)));
    }
    eventually("re-attached beside it", Duration::from_secs(10), || {
        let ours = linkmeter_filters(&topo.a, "va", "egress");
        (ours.len() == 1 && ours[0].contains("handle 0x14c4d"))
            .then_some(())
            .ok_or(ours)
    });
    let m = scrape(&topo.a);
    assert_eq!(m.value("linkmeter_ebpf_reattach_total", &[]), Some(1.0));
    let tx_before = packets(&m, "tx");
    udp_exchange(&topo.a, A_IP, &topo.b, B_IP, 15);
    assert_eq!(packets(&scrape(&topo.a), "tx"), tx_before + 15);
    // Their filter is untouched, while the daemon runs and after it stops.
    assert!(daemon.stop().success());
    for hook in ["ingress", "egress"] {
        let shown = topo.a.tc(&["filter", "show", "dev", "va", hook]);
        assert!(shown.contains("handle 0x4c4d"), "{hook}: {shown}");
        assert!(!shown.contains("linkmeter_"), "{hook}: {shown}");
    }
    assert_eq!(other.packets(Kind::Observer).1, 15);
}
