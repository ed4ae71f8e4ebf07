//! Pinned counters are continued only for the same device (issue 21, defect 2): after a
//! SIGKILL, a vxlan deleted and made again with the same ifindex, or moved to another network
//! namespace and replaced by a new one of that index, starts from zero — before the fix the
//! next daemon continued the old device's counters (309 packets reported on a vxlan whose
//! kernel counters said 7). Failed on `main` before the fix. The pinned links of the old device
//! are let go (unpinned), so nothing counts a device no daemon measures.

use std::net::UdpSocket;

use integration_tests::{
    bpffs::BpfFs,
    daemon::{Daemon, scrape},
    kernel::{ifindex, link_stats},
    kernel_tests_enabled,
    netns::NetNs,
    topology::{A_IP, B_IP, VxlanMode, VxlanPair},
    traffic::udp_exchange,
};

/// Makes `vx0` in `ns` again with index `index`, as `VxlanPair` made it but with VNI `vni`
/// (a device moved to another namespace keeps its VNI in use here).
fn make_vx0(ns: &NetNs, index: u32, vni: u32) {
    ns.ip(&[
        "link",
        "add",
        "vx0",
        "index",
        &index.to_string(),
        "address",
        "02:00:00:00:01:0a",
        "type",
        "vxlan",
        "id",
        &vni.to_string(),
        "local",
        A_IP,
        "remote",
        B_IP,
        "dstport",
        "4789",
        "dev",
        "va",
    ]);
    ns.ip(&[
        "addr",
        "add",
        &format!("{}/32", VxlanPair::A_OVERLAY),
        "dev",
        "vx0",
    ]);
    ns.ip(&["link", "set", "vx0", "up"]);
    ns.ip(&[
        "route",
        "add",
        &format!("{}/32", VxlanPair::B_OVERLAY),
        "dev",
        "vx0",
    ]);
    ns.ip(&[
        "neigh",
        "replace",
        VxlanPair::B_OVERLAY,
        "lladdr",
        "02:00:00:00:01:0b",
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
}

/// Sends `count` datagrams out of `vx0` (to the permanent neighbour `B_OVERLAY`).
fn send(ns: &NetNs, count: u64) {
    let socket = ns.within(|| UdpSocket::bind((VxlanPair::A_OVERLAY, 0)).expect("bind"));
    for _ in 0..count {
        socket
            .send_to(&[0; 64], (VxlanPair::B_OVERLAY, 9))
            .expect("send");
    }
}

fn ebpf_tx(ns: &NetNs) -> Option<f64> {
    scrape(ns).value(
        "linkmeter_interface_packets_total",
        &[
            ("interface", "vx0"),
            ("direction", "tx"),
            ("backend", "ebpf"),
        ],
    )
}

/// `replace` turns the killed daemon's vx0 into another device of the same index.
fn another_device_of_the_same_index_starts_from_zero(tag: &str, replace: impl Fn(&VxlanPair, u32)) {
    let bpffs = BpfFs::mount(tag);
    let pins = bpffs.join("linkmeter");
    let topo = VxlanPair::new(tag, VxlanMode::FixedRemote);
    let (a, b) = (&topo.underlay.a, &topo.underlay.b);
    let args = ["--pin", "--pin-path", &pins, "--attach-mode", "tcx"];
    let daemon = Daemon::start(a, &args);
    udp_exchange(a, VxlanPair::A_OVERLAY, b, VxlanPair::B_OVERLAY, 30);
    assert_eq!(ebpf_tx(a), Some(30.0));
    daemon.kill();

    let index = ifindex(a, "vx0");
    replace(&topo, index);
    assert_eq!(ifindex(a, "vx0"), index, "the same index again");
    send(a, 7);
    let daemon = Daemon::start(a, &args);
    assert_eq!(link_stats(a, "vx0").tx_packets, 7);
    // Nothing counted yet on the new device: the old device's 30 are not continued.
    assert_eq!(ebpf_tx(a), Some(0.0), "{}", daemon.log_text());
    send(a, 5);
    assert_eq!(ebpf_tx(a), Some(5.0));
    assert_eq!(link_stats(a, "vx0").tx_packets, 12);
    assert!(daemon.stop().success());
}

#[test]
fn a_vxlan_deleted_and_made_again_with_its_index_starts_from_zero() {
    if !kernel_tests_enabled() {
        return;
    }
    another_device_of_the_same_index_starts_from_zero("adre", |topo, index| {
        topo.underlay.a.ip(&["link", "del", "vx0"]);
        make_vx0(&topo.underlay.a, index, 42);
    });
}

#[test]
fn a_vxlan_moved_to_another_namespace_is_not_continued_on_its_successor() {
    if !kernel_tests_enabled() {
        return;
    }
    let elsewhere = NetNs::new("admv");
    another_device_of_the_same_index_starts_from_zero("admo", |topo, index| {
        // The old device, still up and linked, now in another namespace (its link follows it).
        topo.underlay
            .a
            .ip(&["link", "set", "vx0", "netns", elsewhere.name()]);
        make_vx0(&topo.underlay.a, index, 43);
    });
}
