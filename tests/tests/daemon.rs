//! `linkmeter run` on a Cilium-like node in network namespaces: routing, exact eBPF counts for
//! `cilium_vxlan`, logging, live interface changes, and the exposition as Prometheus sees it.

use std::{collections::BTreeMap, net::UdpSocket, time::Duration};

use integration_tests::{
    daemon::{Daemon, LISTEN, Metrics, WITHOUT_BPF_CAPS, scrape},
    eventually,
    kernel::link_stats,
    kernel_tests_enabled,
    netns::NetNs,
    prometheus::{self, Prometheus},
    topology::{A_IP, B_IP, CiliumNode, VethPair},
    traffic::udp_exchange,
};

const PACKETS: &str = "linkmeter_interface_packets_total";
const INFO: &str = "linkmeter_interface_info";

fn counter(m: &Metrics, name: &str, interface: &str, direction: &str) -> u64 {
    m.value(name, &[("interface", interface), ("direction", direction)])
        .unwrap_or_else(|| panic!("no {name} for {interface} {direction}")) as u64
}

/// Lines of the JSON log at `level` whose message starts with `prefix`, per interface.
fn log_count(daemon: &Daemon, level: &str, prefix: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in daemon.log_lines() {
        let fields = &line["fields"];
        if line["level"] == level
            && fields["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        {
            *out.entry(fields["interface"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
        }
    }
    out
}

#[test]
fn cilium_like_node_is_routed_per_policy_and_cilium_vxlan_counted_exactly() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = CiliumNode::new("cil");
    let [pod1, pod2] = &topo.pods;
    let daemon = Daemon::start(&topo.node, &[]);

    let [remote1, remote2] = &topo.remotes;
    let [overlay1, overlay2] = CiliumNode::REMOTE_OVERLAYS;
    for _ in 0..20 {
        udp_exchange(pod1, CiliumNode::POD_IPS[0], remote1, overlay1, 5);
        udp_exchange(pod1, CiliumNode::POD_IPS[0], remote2, overlay2, 5);
        udp_exchange(remote2, overlay2, pod1, CiliumNode::POD_IPS[0], 5);
        udp_exchange(
            pod1,
            CiliumNode::POD_IPS[0],
            pod2,
            CiliumNode::POD_IPS[1],
            10,
        );
        let m = scrape(&topo.node);
        assert!(m.value(INFO, &[("interface", "cilium_vxlan")]).is_some());
    }
    let m = scrape(&topo.node);

    let route = m.routing();
    let expect = |iface: &str, backend: &str, reason: &str| {
        assert_eq!(
            route.get(iface),
            Some(&(backend.to_owned(), reason.to_owned())),
            "{iface}: {route:?}"
        );
    };
    expect("lo", "none", "excluded");
    expect("cilium_vxlan", "ebpf", "ethtool_no_stats");
    expect("br0", "ebpf", "ethtool_no_stats");
    for veth in [
        "cilium_host",
        "cilium_net",
        "lxc1111",
        "lxc2222",
        "eth1",
        "eth2",
    ] {
        expect(veth, "ethtool", "ethtool_stats");
    }

    // cilium_vxlan: eBPF counts equal the kernel's, and the traffic sent (20 x 10 out, 20 x 5 in).
    let backend = m.value(
        PACKETS,
        &[
            ("interface", "cilium_vxlan"),
            ("direction", "tx"),
            ("backend", "ebpf"),
        ],
    );
    assert!(
        backend.is_some(),
        "cilium_vxlan packets come from the ebpf backend"
    );
    // Per remote node: 20 x 5 out to each, 20 x 5 in from the second.
    topo.assert_vxlan_counted(&m, 200, 100, 100.0);
    // ethtool-routed interfaces report the kernel's link stats.
    let lxc = link_stats(&topo.node, "lxc1111");
    assert_eq!(counter(&m, PACKETS, "lxc1111", "rx"), lxc.rx_packets);
    assert_eq!(lxc.rx_packets, 400);
    // Raw driver statistics only for device-backed interfaces by default: none for veths.
    assert_eq!(m.samples("linkmeter_ethtool_stat").len(), 0);
    // Drop series come and go with whatever the kernel drops (IPv6 neighbour discovery, say):
    // counted apart, one per (interface, reason).
    let counted = |l: &&str| {
        !l.starts_with('#') && !l.is_empty() && !l.starts_with("linkmeter_interface_drops_total")
    };
    let series = |name: &str| {
        let label = format!("interface=\"{name}\"");
        m.0.lines()
            .filter(counted)
            .filter(|l| l.contains(&label))
            .count()
    };
    let total = m.0.lines().filter(counted).count();
    // The series count of this Cilium-like node, pinned (README "Series per node"): a veth
    // measured by ethtool 11, cilium_vxlan (eBPF, 3 overlay peer entries) 83, br0 (eBPF) 77,
    // lo 1, and 31 about linkmeter itself. Scraped before the first periodic resync (60 s), so
    // without the 2 `linkmeter_ebpf_programs_before` series per eBPF interface it adds.
    assert_eq!(
        (series("lxc1111"), series("cilium_host"), series("eth1")),
        (11, 11, 11)
    );
    assert_eq!(
        (series("cilium_vxlan"), series("br0"), series("lo")),
        (83, 77, 1)
    );
    assert_eq!(total, 258, "{}", m.0);

    // Link speed and duplex over ethtool netlink (veth reports 10 Gb/s, full duplex).
    let speed = m.value("linkmeter_link_speed_bytes", &[("interface", "lxc1111")]);
    assert_eq!(speed, Some(1_250_000_000.0));
    let duplex = m.value("linkmeter_link_full_duplex", &[("interface", "lxc1111")]);
    assert_eq!(duplex, Some(1.0));

    // Exactly one WARN per interface without ethtool stats, none for the others, no ERROR.
    let warns = log_count(&daemon, "WARN", "interface has no ethtool statistics");
    assert_eq!(
        warns,
        BTreeMap::from([("br0".to_owned(), 1), ("cilium_vxlan".to_owned(), 1)]),
        "{}",
        daemon.log_text()
    );
    let errors = daemon.log_lines_at("ERROR");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(daemon.stop().success());
}

/// Scrapes until `done` holds, for at most `limit`; returns that scrape.
fn scrape_until(
    ns: &NetNs,
    what: &str,
    limit: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Metrics {
    eventually(what, limit, || {
        let m = scrape(ns);
        if done(&m) { Ok(m) } else { Err(m.0) }
    })
}

#[test]
fn interfaces_created_and_deleted_while_running_come_and_go_within_a_second() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("dyn");
    let daemon = Daemon::start(&topo.a, &[]);
    let second = Duration::from_secs(1);
    let create = || {
        topo.a.ip(&[
            "link", "add", "vxdyn", "type", "vxlan", "id", "77", "local", A_IP, "remote", B_IP,
            "dstport", "4789", "dev", "va",
        ]);
        topo.a.ip(&["addr", "add", "10.203.0.1/24", "dev", "vxdyn"]);
        topo.a.ip(&[
            "neigh",
            "replace",
            "10.203.0.2",
            "lladdr",
            "02:00:00:00:77:02",
            "dev",
            "vxdyn",
            "nud",
            "permanent",
        ]);
        topo.a.ip(&["link", "set", "vxdyn", "up"]);
    };
    let ifindex_of = |m: &Metrics| {
        m.samples(INFO)
            .into_iter()
            .find(|(l, _)| l["interface"] == "vxdyn")
            .map(|(l, _)| l["ifindex"].clone())
    };

    create();
    scrape_until(&topo.a, "vxdyn appears", second, |m| {
        m.value(PACKETS, &[("interface", "vxdyn"), ("backend", "ebpf")])
            .is_some()
    });
    let sender = topo
        .a
        .within(|| UdpSocket::bind("10.203.0.1:0"))
        .expect("bind");
    for _ in 0..5 {
        sender.send_to(b"linkmeter", "10.203.0.2:9").expect("send");
    }
    let m = scrape(&topo.a);
    assert_eq!(counter(&m, PACKETS, "vxdyn", "tx"), 5);
    assert_eq!(
        counter(&m, PACKETS, "vxdyn", "tx"),
        link_stats(&topo.a, "vxdyn").tx_packets
    );
    let first_ifindex = ifindex_of(&m).expect("vxdyn listed");

    topo.a.ip(&["link", "del", "vxdyn"]);
    scrape_until(&topo.a, "vxdyn leaves", second, |m| {
        !m.0.contains("interface=\"vxdyn\"")
    });

    create();
    scrape_until(&topo.a, "vxdyn comes back", second, |m| {
        m.value(PACKETS, &[("interface", "vxdyn"), ("backend", "ebpf")])
            .is_some()
    });
    let m = scrape(&topo.a);
    assert_eq!(
        counter(&m, PACKETS, "vxdyn", "tx"),
        0,
        "a new lifetime counts from zero"
    );
    assert_ne!(ifindex_of(&m).expect("vxdyn listed"), first_ifindex);
    // Probed and routed again, but warned about only once.
    assert_eq!(
        log_count(&daemon, "INFO", "interface routed").get("vxdyn"),
        Some(&2)
    );
    assert_eq!(
        log_count(&daemon, "WARN", "interface has no ethtool statistics").get("vxdyn"),
        Some(&1)
    );
}

#[test]
fn exposition_passes_promtool_and_a_real_prometheus_scrapes_it() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let topo = CiliumNode::new("prm");
    let _daemon = Daemon::start(&topo.node, &[]);
    udp_exchange(
        &topo.pods[0],
        CiliumNode::POD_IPS[0],
        &topo.remotes[0],
        CiliumNode::REMOTE_OVERLAYS[0],
        20,
    );
    let m = scrape(&topo.node);
    if let Err(problems) = prometheus::promtool_check(&m.0) {
        panic!("promtool check metrics failed:\n{problems}\n{}", m.0);
    }

    let server = Prometheus::start(&topo.node, LISTEN);
    let up = server.wait_for("up{job=\"linkmeter\"} == 1", Duration::from_secs(60));
    assert_eq!(up.len(), 1);
    let vxlan = server.wait_for(
        "linkmeter_interface_packets_total{interface=\"cilium_vxlan\",direction=\"tx\",backend=\"ebpf\"}",
        Duration::from_secs(30),
    );
    assert_eq!(vxlan[0]["value"][1], "20");
    let routed = server.wait_for(
        "linkmeter_interface_info{backend=\"ebpf\"}",
        Duration::from_secs(10),
    );
    assert_eq!(routed.len(), 2, "cilium_vxlan and br0: {routed:?}");
}

#[test]
fn a_removed_legacy_filter_is_reattached_by_the_resync_and_counted() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("rea");
    topo.add_vxlan("vxr", 5);
    let daemon = Daemon::start(&topo.a, &["--attach-mode", "tc", "--resync-interval", "1"]);
    let ours = |hook: &str| {
        topo.a
            .tc(&["filter", "show", "dev", "vxr", hook])
            .contains("linkmeter_")
    };
    assert!(ours("ingress") && ours("egress"));
    assert_eq!(
        scrape(&topo.a).value("linkmeter_ebpf_reattach_total", &[]),
        Some(0.0)
    );

    // Someone (e.g. Cilium's TCX migration) deletes our filter.
    topo.a.tc(&[
        "filter", "del", "dev", "vxr", "ingress", "pref", "1", "handle", "0x4c4d", "bpf",
    ]);
    assert!(!ours("ingress"));
    eventually("re-attached", Duration::from_secs(10), || {
        if ours("ingress") {
            Ok(())
        } else {
            Err(daemon.log_text())
        }
    });
    let m = scrape(&topo.a);
    assert_eq!(m.value("linkmeter_ebpf_reattach_total", &[]), Some(1.0));
    assert!(ours("egress"));
    let warns: usize = log_count(&daemon, "WARN", "eBPF counter was removed")
        .values()
        .sum();
    assert_eq!(warns, 1);
}

#[test]
fn without_bpf_privileges_interfaces_fall_back_to_kernel_stats_and_the_daemon_serves() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("nob");
    topo.add_vxlan("vxn", 6);
    let daemon = Daemon::start_with_prefix(&topo.a, WITHOUT_BPF_CAPS, &[]);
    let m = scrape(&topo.a);
    assert_eq!(
        m.routing().get("vxn"),
        Some(&("netdev".to_owned(), "ebpf_unavailable".to_owned()))
    );
    assert_eq!(
        m.routing().get("va"),
        Some(&("ethtool".to_owned(), "ethtool_stats".to_owned()))
    );
    assert_eq!(m.value("linkmeter_ebpf_available", &[]), Some(0.0));
    assert!(
        m.value(PACKETS, &[("interface", "vxn"), ("backend", "netdev")])
            .is_some()
    );
    let unavailable = daemon.log_lines().into_iter().filter(|l| {
        l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|s| s.starts_with("eBPF backend unavailable"))
    });
    assert_eq!(unavailable.count(), 1, "{}", daemon.log_text());
}

#[test]
fn a_removed_tcx_link_is_reattached_by_the_resync_and_counted() {
    if !kernel_tests_enabled() || !integration_tests::tcx_available() {
        return;
    }
    let topo = VethPair::new("ret");
    topo.add_vxlan("vxt", 8);
    let daemon = Daemon::start(&topo.a, &["--attach-mode", "tcx", "--resync-interval", "1"]);
    assert_eq!(
        integration_tests::tcx::detach_links_of(&topo.a, "vxt", "linkmeter_"),
        1
    );
    eventually("re-attached", Duration::from_secs(10), || {
        let m = scrape(&topo.a);
        if m.value("linkmeter_ebpf_reattach_total", &[]) == Some(1.0) {
            Ok(())
        } else {
            Err(daemon.log_text())
        }
    });
    // Counting again: packets over vxt reach the eBPF counter.
    let before = counter(&scrape(&topo.a), PACKETS, "vxt", "tx");
    topo.a.ip(&["addr", "add", "10.204.0.1/24", "dev", "vxt"]);
    topo.a.ip(&[
        "neigh",
        "replace",
        "10.204.0.2",
        "lladdr",
        "02:00:00:00:78:02",
        "dev",
        "vxt",
        "nud",
        "permanent",
    ]);
    let sender = topo
        .a
        .within(|| UdpSocket::bind("10.204.0.1:0"))
        .expect("bind");
    for _ in 0..3 {
        sender.send_to(b"x", "10.204.0.2:9").expect("send");
    }
    assert_eq!(counter(&scrape(&topo.a), PACKETS, "vxt", "tx") - before, 3);
}

#[test]
fn an_interface_beyond_max_interfaces_falls_back_with_ebpf_map_full_then_gets_a_freed_slot() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("full");
    topo.add_vxlan("vxf1", 11);
    let daemon = Daemon::start(
        &topo.a,
        &["--max-interfaces", "1", "--resync-interval", "1"],
    );
    topo.add_vxlan("vxf2", 12);
    let route = |m: &Metrics, name: &str| m.routing().get(name).cloned();
    let m = eventually("vxf2 routed", Duration::from_secs(10), || {
        let m = scrape(&topo.a);
        route(&m, "vxf2").map(|_| m).ok_or("not yet")
    });
    let ebpf = ("ebpf".to_owned(), "ethtool_no_stats".to_owned());
    assert_eq!(route(&m, "vxf1"), Some(ebpf.clone()));
    assert_eq!(
        route(&m, "vxf2"),
        Some(("netdev".to_owned(), "ebpf_map_full".to_owned()))
    );
    let slots = |state| m.value("linkmeter_ebpf_slots", &[("state", state)]);
    assert_eq!((slots("used"), slots("free")), (Some(1.0), Some(0.0)));
    // Kernel link stats meanwhile, not zeros from a counter that is not there.
    assert!(
        m.value(PACKETS, &[("interface", "vxf2"), ("backend", "netdev")])
            .is_some()
    );
    // vxf1 leaves: vxf2 gets the slot at a later resync.
    topo.a.ip(&["link", "del", "vxf1"]);
    eventually("vxf2 on eBPF", Duration::from_secs(20), || {
        let m = scrape(&topo.a);
        (route(&m, "vxf2") == Some(ebpf.clone()))
            .then_some(())
            .ok_or(m.routing())
    });
    drop(daemon);
}
