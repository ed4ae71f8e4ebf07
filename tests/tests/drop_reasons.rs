//! Drops by kernel drop reason, on the real kernel: datagrams to a closed port are `no_socket`
//! and an nftables `drop` rule's packets `netfilter_drop`, exactly, on the interface they came
//! in on; normal traffic adds nothing, nor do datagrams freed from a closed socket's queue; drops in another namespace on a device with the same
//! ifindex are not counted; every reason label is a name of the running kernel's BTF (read with
//! `bpftool`); the series go with the interface; `drop_reasons = false` turns it all off.

use std::{collections::BTreeMap, net::UdpSocket, time::Duration};

use integration_tests::{
    daemon::{Daemon, Metrics, scrape},
    eventually,
    kernel::ifindex,
    kernel_tests_enabled,
    netns::{NetNs, run},
    topology::{A_IP, B_IP, VethPair},
    traffic::udp_exchange,
};

const DROPS: &str = "linkmeter_interface_drops_total";

/// A veth pair without IPv6 (no router solicitations or MLD reports to drop meanwhile), the
/// daemon in `b`.
fn quiet_pair(tag: &str) -> VethPair {
    let pair = VethPair::new(tag);
    for ns in [&pair.a, &pair.b] {
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    }
    pair
}

/// Sends `count` datagrams from `src` (`A_IP`) to `B_IP:port`, which no socket receives.
fn send_unanswered(src: &NetNs, port: u16, count: u64) {
    let socket = src.within(|| UdpSocket::bind((A_IP, 0)).expect("bind sender"));
    for seq in 0..count {
        socket
            .send_to(&seq.to_be_bytes(), (B_IP, port))
            .expect("send");
    }
}

/// `interface`'s drops by reason.
fn drops_of(m: &Metrics, interface: &str) -> BTreeMap<String, f64> {
    m.samples(DROPS)
        .into_iter()
        .filter(|(l, _)| l.get("interface").map(String::as_str) == Some(interface))
        .map(|(l, v)| (l["reason"].clone(), v))
        .collect()
}

/// Waits until `vb`'s `reason` count is `expected` and returns `vb`'s drops then.
fn until(ns: &NetNs, reason: &str, expected: f64) -> BTreeMap<String, f64> {
    eventually(
        &format!("{expected} drops for {reason} on vb"),
        Duration::from_secs(10),
        || {
            let drops = drops_of(&scrape(ns), "vb");
            if drops.get(reason).copied().unwrap_or(0.0) == expected {
                Ok(drops)
            } else {
                Err(drops)
            }
        },
    )
}

/// The reason names of the running kernel's `enum skb_drop_reason`, as linkmeter labels them,
/// read with `bpftool btf dump` (independently of linkmeter's own BTF reader).
fn kernel_reason_names() -> Vec<String> {
    let dump = run(
        "bpftool",
        &[
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "c",
        ],
    );
    let body = dump
        .split("enum skb_drop_reason {")
        .nth(1)
        .and_then(|rest| rest.split("};").next())
        .expect("enum skb_drop_reason in the kernel's BTF");
    body.lines()
        .filter_map(|l| l.trim().split(" = ").next())
        .filter_map(|n| n.strip_prefix("SKB_DROP_REASON_"))
        .map(str::to_ascii_lowercase)
        .collect()
}

#[test]
fn closed_port_and_nftables_drops_are_counted_exactly_by_reason_on_their_interface() {
    if !kernel_tests_enabled() {
        return;
    }
    let pair = quiet_pair("drp");
    let daemon = Daemon::start(&pair.b, &[]);
    let m = scrape(&pair.b);
    assert_eq!(m.value("linkmeter_drop_reasons_available", &[]), Some(1.0));
    // The drop map's kernel memory is accounted like the counter's maps.
    let bytes = m.value("linkmeter_ebpf_map_bytes", &[("map", "drops")]);
    assert!(bytes.is_some_and(|b| b > 0.0), "{bytes:?}");

    // Normal traffic is consumed, not dropped: nothing for vb.
    let before = drops_of(&m, "vb");
    udp_exchange(&pair.a, A_IP, &pair.b, B_IP, 40);
    assert_eq!(drops_of(&scrape(&pair.b), "vb"), before);

    // Datagrams freed from a UDP socket's queue (closed with them unread) are left out: the
    // kernel reuses their device field there. Nothing on any interface, and no overflow.
    let queued = pair
        .b
        .within(|| UdpSocket::bind((B_IP, 0)).expect("bind receiver"));
    let port = queued.local_addr().expect("address").port();
    send_unanswered(&pair.a, port, 5);
    std::thread::sleep(Duration::from_millis(200));
    drop(queued);
    std::thread::sleep(Duration::from_millis(200));
    let m = scrape(&pair.b);
    assert_eq!(drops_of(&m, "vb"), before);
    assert_eq!(
        m.value("linkmeter_ebpf_map_overflow_total", &[("map", "drops")]),
        Some(0.0),
        "{}",
        m.0
    );

    send_unanswered(&pair.a, 9, 50);
    let after = until(&pair.b, "no_socket", 50.0);
    let others = |d: &BTreeMap<String, f64>| {
        d.iter()
            .filter(|(r, _)| !["no_socket", "netfilter_drop"].contains(&r.as_str()))
            .map(|(r, v)| (r.clone(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(others(&after), others(&before), "only no_socket moved");

    // An nftables drop rule on the input hook: exactly its packets.
    pair.b.exec(&[
        "nft",
        "add table inet lmtest; add chain inet lmtest input { type filter hook input priority 0; }; add rule inet lmtest input udp dport 7777 counter drop",
    ]);
    send_unanswered(&pair.a, 7777, 30);
    let after = until(&pair.b, "netfilter_drop", 30.0);
    assert_eq!(after.get("no_socket"), Some(&50.0));
    let ruleset = pair.b.exec(&["nft", "list table inet lmtest"]);
    assert!(ruleset.contains("packets 30 "), "{ruleset}");

    // The drop happened on vb, not on the sender's va (in another namespace) nor lo.
    let m = scrape(&pair.b);
    assert!(drops_of(&m, "lo").is_empty());
    // Every label is a name of the running kernel's BTF.
    let names = kernel_reason_names();
    for (labels, _) in m.samples(DROPS) {
        assert!(
            names.contains(&labels["reason"]),
            "{} is not named by the kernel's BTF",
            labels["reason"]
        );
    }
    assert!(
        names.contains(&"no_socket".to_owned()) && names.contains(&"netfilter_drop".to_owned())
    );

    // The series go with the interface.
    pair.b.ip(&["link", "del", "vb"]);
    eventually("vb's drop series gone", Duration::from_secs(10), || {
        let m = scrape(&pair.b);
        if drops_of(&m, "vb").is_empty() {
            Ok(())
        } else {
            Err(m.0)
        }
    });
    assert!(daemon.stop().success());
}

#[test]
fn drops_in_another_namespace_on_the_same_ifindex_are_not_counted() {
    if !kernel_tests_enabled() {
        return;
    }
    let ours = quiet_pair("dro");
    let theirs = quiet_pair("drt");
    assert_eq!(
        ifindex(&ours.b, "vb"),
        ifindex(&theirs.b, "vb"),
        "the test needs the same ifindex in both namespaces"
    );
    let daemon = Daemon::start(&ours.b, &[]);
    send_unanswered(&theirs.a, 9, 25);
    send_unanswered(&ours.a, 9, 5);
    until(&ours.b, "no_socket", 5.0);
    // The other namespace's 25 came before ours: had they counted, the 5 would be 30.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        drops_of(&scrape(&ours.b), "vb").get("no_socket"),
        Some(&5.0)
    );
    assert!(daemon.stop().success());
}

#[test]
fn drop_reasons_off_loads_nothing_and_exports_no_drop_series() {
    if !kernel_tests_enabled() {
        return;
    }
    let pair = quiet_pair("drf");
    let daemon = Daemon::start(&pair.b, &["--drop-reasons=false"]);
    send_unanswered(&pair.a, 9, 10);
    let m = scrape(&pair.b);
    assert_eq!(m.value("linkmeter_drop_reasons_available", &[]), Some(0.0));
    assert!(m.samples(DROPS).is_empty(), "{}", m.0);
    assert!(
        m.value("linkmeter_ebpf_map_overflow_total", &[("map", "drops")])
            .is_none()
    );
    assert!(daemon.stop().success());
}
