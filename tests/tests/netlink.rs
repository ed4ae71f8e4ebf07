//! The daemon's link events against the real kernel: a burst of link changes that overruns
//! the event socket is repaired by a resync, and an interface name that is not UTF-8 is
//! exported escaped without an ERROR, measured by ethtool and counted exactly by eBPF.

use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _, process::Command, time::Duration};

use integration_tests::{
    daemon::{Daemon, Metrics, scrape},
    eventually, kernel_tests_enabled,
    netns::NetNs,
    prometheus,
};
use nix::{sys::signal, unistd::Pid};

const PAIRS: usize = 100;

/// Runs `ip -n <ns> -batch -` with `commands`, one per line.
fn ip_batch(ns: &NetNs, commands: &str) {
    let path = std::env::temp_dir().join(format!("{}.batch", ns.name()));
    std::fs::write(&path, commands).expect("write batch");
    let path_arg = path.to_str().expect("utf-8 temp dir");
    ns.exec(&["ip", "-batch", path_arg]);
    let _ = std::fs::remove_file(&path);
}

/// Sends `signal` to the daemon.
fn signal(daemon: &Daemon, sig: signal::Signal) {
    let pid = Pid::from_raw(i32::try_from(daemon.pid()).expect("pid"));
    signal::kill(pid, sig).expect("signal the daemon");
}

fn resyncs(m: &Metrics, reason: &str) -> f64 {
    m.value("linkmeter_netlink_resyncs_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no linkmeter_netlink_resyncs_total{{reason={reason}}}"))
}

fn flood_names(m: &Metrics) -> Vec<(String, (String, String))> {
    m.routing()
        .into_iter()
        .filter(|(name, _)| name.starts_with("fl") || name.starts_with("fp"))
        .collect()
}

#[test]
fn a_burst_that_overruns_the_event_socket_is_followed_by_a_resync_and_routed_right() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("flood");
    // The smallest receive buffer the kernel allows: a few link messages.
    let daemon = Daemon::start(&ns, &["--event-buffer-bytes", "1024"]);
    assert_eq!(resyncs(&scrape(&ns), "events_lost"), 0.0);

    // The daemon does not read while the kernel queues the events of 200 new veths: the
    // socket overruns for sure.
    signal(&daemon, signal::Signal::SIGSTOP);
    let adds: String = (0..PAIRS)
        .map(|i| format!("link add fl{i} type veth peer fp{i}\n"))
        .collect();
    ip_batch(&ns, &adds);
    signal(&daemon, signal::Signal::SIGCONT);

    let m = eventually("every veth routed", Duration::from_secs(30), || {
        let m = scrape(&ns);
        let n = flood_names(&m).len();
        (n == 2 * PAIRS).then_some(m).ok_or(n)
    });
    assert!(resyncs(&m, "events_lost") >= 1.0, "no overrun was seen");
    for (name, route) in flood_names(&m) {
        assert_eq!(
            route,
            ("ethtool".to_owned(), "ethtool_stats".to_owned()),
            "{name}"
        );
    }

    // The same for deletions: none is left behind.
    signal(&daemon, signal::Signal::SIGSTOP);
    let dels: String = (0..PAIRS).map(|i| format!("link del fl{i}\n")).collect();
    ip_batch(&ns, &dels);
    signal(&daemon, signal::Signal::SIGCONT);
    eventually("every veth gone", Duration::from_secs(30), || {
        let n = flood_names(&scrape(&ns)).len();
        (n == 0).then_some(()).ok_or(n)
    });
    let errors = daemon.log_lines_at("ERROR");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_name_that_is_not_utf8_is_exported_escaped_and_logs_no_error() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let ns = NetNs::new("bytes");
    // Resyncs every second: link speeds (ethtool netlink) are read for the name too.
    let daemon = Daemon::start(
        &ns,
        &[
            "--resync-interval",
            "1",
            "--ethtool-stats-interfaces",
            "lm*",
        ],
    );
    let status = Command::new("ip")
        .args(["-n", ns.name(), "link", "add"])
        .arg(OsStr::from_bytes(b"lm\xff"))
        .args(["type", "veth", "peer", "lmpeer"])
        .status()
        .expect("run ip");
    assert!(status.success());
    // A vxlan (routed to eBPF) with such a name, up, with an address and a neighbour: the
    // counter is attached by ifindex, so the name is no obstacle.
    let vxlan = OsStr::from_bytes(b"vx\\\xfe");
    for (before, after) in [
        (
            &["link", "add"][..],
            &["type", "vxlan", "id", "7", "dstport", "4789"][..],
        ),
        (&["addr", "add", "10.66.0.1/24", "dev"][..], &[][..]),
        (&["link", "set"][..], &["up"][..]),
        (
            &[
                "neigh",
                "add",
                "10.66.0.2",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
            ][..],
            &["nud", "permanent"][..],
        ),
    ] {
        let status = Command::new("ip")
            .args(["-n", ns.name()])
            .args(before)
            .arg(vxlan)
            .args(after)
            .status()
            .expect("run ip");
        assert!(status.success(), "ip {before:?} {after:?}");
    }
    // Shown as `lm:xff` (the kernel refuses `:` in names: no real name looks like it).
    let m = eventually("lm:xff routed", Duration::from_secs(10), || {
        let m = scrape(&ns);
        m.routing()
            .contains_key("lm:xff")
            .then_some(m)
            .ok_or("not yet")
    });
    assert!(m.0.contains(r#"interface="lm:xff""#), "{}", m.0);
    assert_eq!(
        m.routing().get("lm:xff"),
        Some(&("ethtool".to_owned(), "ethtool_stats".to_owned())),
        "ethtool reached it by its real name"
    );
    let vx = eventually("the vxlan routed", Duration::from_secs(10), || {
        scrape(&ns)
            .routing()
            .get("vx\\:xfe")
            .cloned()
            .ok_or("not yet")
    });
    assert_eq!(vx, ("ebpf".to_owned(), "ethtool_no_stats".to_owned()));
    let socket = ns.within(|| std::net::UdpSocket::bind("10.66.0.1:0").expect("bind"));
    for _ in 0..7 {
        socket.send_to(&[0; 64], "10.66.0.2:9").expect("send");
    }
    let labels = [
        ("interface", "vx\\:xfe"),
        ("direction", "tx"),
        ("backend", "ebpf"),
    ];
    eventually("7 packets counted by eBPF", Duration::from_secs(10), || {
        let tx = scrape(&ns).value("linkmeter_interface_packets_total", &labels);
        (tx == Some(7.0)).then_some(()).ok_or(tx)
    });
    assert!(
        m.value(
            "linkmeter_ethtool_stat",
            &[("interface", "lm:xff"), ("stat", "peer_ifindex")]
        )
        .is_some()
    );
    // A valid UTF-8 name is exported exactly as the kernel has it, backslash and all (as
    // node_exporter's `device` shows it); only bytes that are not UTF-8 are escaped.
    ns.ip(&[
        "link", "add", "lm\\u", "type", "veth", "peer", "name", "lmpeer2",
    ]);
    let m = eventually("lm\\u routed", Duration::from_secs(10), || {
        let m = scrape(&ns);
        m.routing()
            .contains_key("lm\\u")
            .then_some(m)
            .ok_or("not yet")
    });
    assert!(m.0.contains(r#"interface="lm\\u""#), "{}", m.0);
    if let Err(problems) = prometheus::promtool_check(&m.0) {
        panic!("promtool: {problems}");
    }
    // A resync has read link speeds over ethtool netlink since (lmpeer's shows): the
    // message about lm:xff is skipped there (the library refuses a name that is not UTF-8; its
    // speed is missing), and nothing logs an ERROR.
    eventually("a resync's link speeds", Duration::from_secs(10), || {
        scrape(&ns)
            .value("linkmeter_link_speed_bytes", &[("interface", "lmpeer")])
            .ok_or("not yet")
    });
    let errors = daemon.log_lines_at("ERROR");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_port_leaving_a_bridge_is_not_a_deleted_interface() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("brport");
    ns.ip(&["link", "add", "br7", "type", "bridge"]);
    ns.ip(&["link", "add", "pv7", "type", "veth", "peer", "pw7"]);
    let daemon = Daemon::start(&ns, &["--resync-interval", "3600"]);
    let routed = |m: &Metrics| m.routing().get("pv7").cloned();
    let before = eventually("pv7 routed", Duration::from_secs(10), || {
        routed(&scrape(&ns)).ok_or("not yet")
    });
    // Enslaving and releasing send AF_BRIDGE RTM_NEWLINK/RTM_DELLINK about the port.
    ns.ip(&["link", "set", "pv7", "master", "br7"]);
    ns.ip(&["link", "set", "pv7", "nomaster"]);
    ns.ip(&["link", "set", "pv7", "master", "br7"]);
    ns.ip(&["link", "set", "pv7", "nomaster"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(routed(&scrape(&ns)), Some(before));
    let removed = daemon
        .log_lines()
        .iter()
        .filter(|l| {
            l["fields"]["message"] == "interface removed" && l["fields"]["interface"] == "pv7"
        })
        .count();
    assert_eq!(removed, 0, "{}", daemon.log_text());
}
