//! The traffic breakdown and the overlay peers against crafted traffic: every protocol, TCP
//! flag, size bucket and peer counter must equal what was sent, packets and bytes, on a veth
//! and on an external-mode vxlan over an IPv4 and an IPv6 underlay.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use collector::backend::ebpf::{
    Capacity, DEFAULT_MAX_INTERFACES, EbpfCounters, Framing, InterfaceStats, LoadOptions,
};
use collector_common::{Counter, Direction, Protocol, Stats, TcpFlag};
use integration_tests::{
    daemon::{Daemon, scrape},
    eventually,
    frames::{self, Expected, ethernet, flags, ipv4, ipv6, tcp, udp, vlan},
    kernel::{attach_counter, ifindex, link_stats},
    kernel_tests_enabled,
    netns::NetNs,
    overlay::{self, OverlayNode},
    raw,
    topology::VethPair,
};

const V4_A: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 1);
const V4_B: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 2);
const V6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x230, 0, 0, 0, 0, 0, 1);
const V6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x230, 0, 0, 0, 0, 0, 2);

fn load(options: &LoadOptions) -> EbpfCounters {
    EbpfCounters::load(options).expect("load the embedded eBPF object")
}

fn stats(counters: &EbpfCounters, ns: &NetNs, dev: &str) -> InterfaceStats {
    counters
        .read_stats(ifindex(ns, dev))
        .expect("read")
        .expect("the interface has a slot")
}

/// A frame and what it must count as.
fn frame(bytes: Vec<u8>, protocol: Protocol, flag: Option<TcpFlag>) -> (Vec<u8>, Expected) {
    let expected = Expected::new(protocol, flag, bytes.len(), None);
    (bytes, expected)
}

fn v4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(0x0800, &ipv4(V4_A, V4_B, proto, 0, payload))
}

fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(0x86dd, &ipv6(V6_A, V6_B, next, payload))
}

/// Frames of every class, flag and size bucket.
fn crafted() -> Vec<(Vec<u8>, Expected)> {
    use Protocol::*;
    let mut out = Vec::new();
    let mut times = |n: usize, f: (Vec<u8>, Expected)| out.extend(std::iter::repeat_n(f, n));
    times(
        3,
        frame(v4(6, &tcp(flags::SYN, 0)), Ipv4Tcp, Some(TcpFlag::Syn)),
    );
    times(
        2,
        frame(
            v4(6, &tcp(flags::SYN | flags::ACK, 100)),
            Ipv4Tcp,
            Some(TcpFlag::SynAck),
        ),
    );
    times(
        2,
        frame(
            v4(6, &tcp(flags::FIN | flags::ACK, 500)),
            Ipv4Tcp,
            Some(TcpFlag::Fin),
        ),
    );
    times(
        1,
        frame(
            v4(6, &tcp(flags::RST | flags::ACK, 0)),
            Ipv4Tcp,
            Some(TcpFlag::Rst),
        ),
    );
    times(2, frame(v4(6, &tcp(flags::ACK, 1400)), Ipv4Tcp, None));
    // A truncated TCP header (10 of its 20 bytes, the flags cut off): TCP without a flag, not
    // `other` (issue 21, guard 9; it was `other` on `main` before the fix).
    times(1, frame(v4(6, &tcp(flags::SYN, 0)[..10]), Ipv4Tcp, None));
    times(1, frame(v6(6, &tcp(flags::SYN, 0)[..10]), Ipv6Tcp, None));
    // A later fragment: no TCP header, whatever its bytes look like.
    let fragment = ipv4(V4_A, V4_B, 6, 100, &tcp(flags::SYN, 0));
    times(1, frame(ethernet(0x0800, &fragment), Ipv4Tcp, None));
    for size in [10, 200, 1000, 1460, 4000, 9000] {
        times(1, frame(v4(17, &udp(size)), Ipv4Udp, None));
    }
    times(2, frame(v4(1, &frames::echo(8, 56)), Ipv4Icmp, None));
    times(1, frame(v4(47, &[0; 30]), Ipv4Other, None));
    times(
        2,
        frame(v6(6, &tcp(flags::SYN, 0)), Ipv6Tcp, Some(TcpFlag::Syn)),
    );
    times(1, frame(v6(17, &udp(300)), Ipv6Udp, None));
    times(2, frame(v6(58, &frames::echo(128, 56)), Ipv6Icmp, None));
    // A hop-by-hop extension header is not walked.
    times(1, frame(v6(0, &[6, 0, 0, 0, 0, 0, 0, 0]), Ipv6Other, None));
    times(2, frame(frames::arp(), Arp, None));
    times(1, frame(ethernet(0x88b5, &[0; 46]), Other, None));
    let tagged = ipv4(V4_A, V4_B, 6, 0, &tcp(flags::SYN, 0));
    times(1, frame(vlan(0x0800, &tagged), Ipv4Tcp, Some(TcpFlag::Syn)));
    times(
        1,
        frame(
            vlan(0x0800, &ipv4(V4_A, V4_B, 17, 0, &udp(20))),
            Ipv4Udp,
            None,
        ),
    );
    out
}

/// What `expected` (for `bytes` as sent) counts as at an ingress hook: the receiving kernel
/// moves a VLAN tag out of the frame into the packet's metadata before TC (as drivers with VLAN
/// offload do), so tagged frames reach the hook 4 bytes shorter.
fn at_ingress(bytes: &[u8], expected: &Expected) -> Expected {
    let tagged = bytes[12..14] == [0x81, 0x00];
    Expected {
        len: expected.len - if tagged { 4 } else { 0 },
        ..expected.clone()
    }
}

/// Asserts `got` equals `want`, naming the first field that differs.
fn assert_stats(what: &str, got: &Stats, want: &Stats) {
    for p in Protocol::ALL {
        assert_eq!(
            got.protocols[p as usize],
            want.protocols[p as usize],
            "{what}: {}",
            p.as_str()
        );
    }
    for f in TcpFlag::ALL {
        assert_eq!(
            got.tcp_flags[f as usize],
            want.tcp_flags[f as usize],
            "{what}: {}",
            f.as_str()
        );
    }
    assert_eq!(got.sizes, want.sizes, "{what}: size buckets");
}

#[test]
fn veth_breakdown_equals_the_crafted_frames_both_ways() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = VethPair::new("brk");
    // Room for jumbo frames, so that every size bucket is reached.
    topo.a.ip(&["link", "set", "va", "mtu", "9100"]);
    topo.b.ip(&["link", "set", "vb", "mtu", "9100"]);
    let options = LoadOptions::default();
    let (mut a, mut b) = (load(&options), load(&options));
    let _va = attach_counter(
        &topo.a,
        &mut a,
        "va",
        collector::backend::ebpf::AttachMode::Auto,
        Framing::default(),
    )
    .expect("va");
    let _vb = attach_counter(
        &topo.b,
        &mut b,
        "vb",
        collector::backend::ebpf::AttachMode::Auto,
        Framing::default(),
    )
    .expect("vb");
    let kernel_before = link_stats(&topo.a, "va");
    let vb_before = link_stats(&topo.b, "vb");
    let crafted = crafted();
    let sent: Vec<Vec<u8>> = crafted.iter().map(|(f, _)| f.clone()).collect();
    raw::send_frames(&topo.a, "va", &sent);
    let want = frames::stats_of(crafted.iter().map(|(_, e)| e));

    let va = stats(&a, &topo.a, "va");
    assert_stats("va egress", &va.tx, &want);
    assert_eq!(va.rx, Stats::default(), "nothing came back");
    assert_eq!(
        va.tx.packets(),
        link_stats(&topo.a, "va").since(&kernel_before).tx_packets
    );
    // Tagged frames reach the ingress hook without their tag (`at_ingress`); the device's own
    // counters counted them before, with the tag.
    let received: Vec<Expected> = crafted.iter().map(|(b, e)| at_ingress(b, e)).collect();
    let want_rx = frames::stats_of(&received);
    let vb = eventually("vb received every frame", Duration::from_secs(2), || {
        let vb = stats(&b, &topo.b, "vb");
        if vb.rx.packets() == want_rx.packets() {
            Ok(vb)
        } else {
            Err(vb.rx.packets())
        }
    });
    assert_stats("vb ingress", &vb.rx, &want_rx);
    let kernel = link_stats(&topo.b, "vb").since(&vb_before);
    let tags = 4 * crafted
        .iter()
        .filter(|(bytes, _)| bytes[12..14] == [0x81, 0x00])
        .count() as u64;
    assert_eq!(
        (vb.rx.packets(), vb.rx.bytes() + tags),
        (kernel.rx_packets, kernel.rx_bytes),
        "vs the kernel"
    );
    assert_eq!(want.packets(), u64::try_from(crafted.len()).expect("small"));

    // Frames on both sides of every bucket bound, against buckets written out by hand: 64,
    // 65, 128, 129, ... 9000, 9001 bytes fall into buckets 0, 1, 1, 2, ... 6, 7.
    let before = stats(&a, &topo.a, "va").tx.sizes;
    let edges: Vec<Vec<u8>> = [64, 128, 256, 512, 1024, 1518, 9000]
        .into_iter()
        .flat_map(|bound| [bound, bound + 1])
        .map(|len| ethernet(0x88b5, &vec![0; len - 14]))
        .collect();
    raw::send_frames(&topo.a, "va", &edges);
    let after = stats(&a, &topo.a, "va").tx.sizes;
    let added: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(added, [1, 2, 2, 2, 2, 2, 2, 1], "per size bucket");
}

/// Raw IPv4 packets from the node's overlay address to `dst`, each of a class and flag.
fn routed(dst: Ipv4Addr, peer: IpAddr) -> Vec<(Vec<u8>, Expected)> {
    use Protocol::*;
    let packet = |proto, payload: Vec<u8>| ipv4(overlay::NODE_OVERLAY, dst, proto, 0, &payload);
    let mut out = Vec::new();
    let mut add = |n, p: Vec<u8>, protocol, flag| {
        let expected = Expected::new(protocol, flag, 14 + p.len(), Some(peer));
        out.extend(std::iter::repeat_n((p, expected), n));
    };
    add(
        3,
        packet(6, tcp(flags::SYN, 0)),
        Ipv4Tcp,
        Some(TcpFlag::Syn),
    );
    add(
        2,
        packet(6, tcp(flags::SYN | flags::ACK, 0)),
        Ipv4Tcp,
        Some(TcpFlag::SynAck),
    );
    add(
        2,
        packet(6, tcp(flags::FIN | flags::ACK, 700)),
        Ipv4Tcp,
        Some(TcpFlag::Fin),
    );
    add(
        1,
        packet(6, tcp(flags::RST, 0)),
        Ipv4Tcp,
        Some(TcpFlag::Rst),
    );
    add(2, packet(17, udp(1200)), Ipv4Udp, None);
    add(2, packet(1, frames::echo(8, 56)), Ipv4Icmp, None);
    out
}

/// Frames written straight onto the tunnel device: they carry no tunnel key, and the device
/// drops them without counting them.
fn keyless() -> Vec<(Vec<u8>, Expected)> {
    use Protocol::*;
    let mut out = vec![
        frame(frames::arp(), Arp, None),
        frame(ethernet(0x88b5, &[0; 46]), Other, None),
        frame(v6(6, &tcp(flags::SYN, 0)), Ipv6Tcp, Some(TcpFlag::Syn)),
        frame(
            vlan(0x0800, &ipv4(V4_A, V4_B, 17, 0, &udp(20))),
            Ipv4Udp,
            None,
        ),
    ];
    out.extend(std::iter::repeat_n(
        frame(v6(58, &frames::echo(128, 8)), Ipv6Icmp, None),
        2,
    ));
    out
}

/// (peer, direction) → counter of `ifindex`.
fn peers_of(
    counters: &EbpfCounters,
    ifindex: u32,
) -> BTreeMap<(Option<IpAddr>, Direction), Counter> {
    counters
        .peers()
        .expect("peers")
        .into_iter()
        .filter(|p| p.ifindex == ifindex)
        .map(|p| ((p.endpoint, p.direction), p.counter))
        .collect()
}

fn counter_of<'a>(frames: impl IntoIterator<Item = &'a Expected>) -> Counter {
    frames.into_iter().fold(Counter::default(), |mut c, e| {
        c.packets += 1;
        c.bytes += u64::from(e.len);
        c
    })
}

const TUNNEL: Framing = Framing {
    tunnel_peers: true,
    raw_ip: false,
};

#[test]
fn external_vxlan_counts_each_peer_over_ipv4_and_ipv6_underlays_and_the_keyless_drops() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("ovl");
    let options = LoadOptions::default();
    let mut counters = [load(&options), load(&options), load(&options)];
    let nodes = [&topo.node, &topo.v4_peer, &topo.v6_peer];
    let _attached: Vec<_> = counters
        .iter_mut()
        .zip(nodes)
        .map(|(c, ns)| {
            attach_counter(
                ns,
                c,
                overlay::DEVICE,
                collector::backend::ebpf::AttachMode::Auto,
                TUNNEL,
            )
            .expect("attach")
        })
        .collect();
    let kernel_before = link_stats(&topo.node, overlay::DEVICE);
    let to_v4 = routed(overlay::V4_PEER_OVERLAY, overlay::V4_PEER.into());
    let to_v6 = routed(overlay::V6_PEER_OVERLAY, overlay::V6_PEER.into());
    let drops = keyless();
    let packets =
        |set: &[(Vec<u8>, Expected)]| set.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    raw::send_ipv4(&topo.node, &packets(&to_v4));
    raw::send_ipv4(&topo.node, &packets(&to_v6));
    raw::send_frames(&topo.node, overlay::DEVICE, &packets(&drops));

    // Node egress: the breakdown of everything, and each peer on its own.
    let all: Vec<&Expected> = to_v4
        .iter()
        .chain(&to_v6)
        .chain(&drops)
        .map(|(_, e)| e)
        .collect();
    let node = stats(&counters[0], &topo.node, overlay::DEVICE);
    assert_stats(
        "node egress",
        &node.tx,
        &frames::stats_of(all.iter().copied()),
    );
    let index = ifindex(&topo.node, overlay::DEVICE);
    let peers = peers_of(&counters[0], index);
    let expect = |set: &[(Vec<u8>, Expected)]| counter_of(set.iter().map(|(_, e)| e));
    assert_eq!(
        peers.get(&(Some(overlay::V4_PEER.into()), Direction::Egress)),
        Some(&expect(&to_v4))
    );
    assert_eq!(
        peers.get(&(Some(overlay::V6_PEER.into()), Direction::Egress)),
        Some(&expect(&to_v6))
    );
    assert_eq!(
        peers.get(&(None, Direction::Egress)),
        Some(&expect(&drops)),
        "no tunnel key"
    );
    assert_eq!(peers.len(), 3, "{peers:?}");
    // The device counts what it sent; the keyless frames it dropped appear nowhere else.
    let kernel = link_stats(&topo.node, overlay::DEVICE).since(&kernel_before);
    assert_eq!(
        node.tx.packets(),
        kernel.tx_packets + expect(&drops).packets
    );

    // Node ingress: frames of every kind (ARP, non-IP, IPv6, VLAN-tagged, ...) from each peer,
    // encapsulated by hand on the underlay.
    let rx_before = link_stats(&topo.node, overlay::DEVICE);
    let inner: Vec<(Vec<u8>, Expected)> = crafted()
        .into_iter()
        .filter(|(bytes, _)| bytes.len() <= 1400)
        .collect();
    let from = |peer: IpAddr| -> Vec<Expected> {
        inner
            .iter()
            .map(|(bytes, e)| Expected {
                peer: Some(peer),
                ..at_ingress(bytes, e)
            })
            .collect()
    };
    let (from_v4, from_v6) = (from(overlay::V4_PEER.into()), from(overlay::V6_PEER.into()));
    let inner_frames: Vec<Vec<u8>> = inner.iter().map(|(f, _)| f.clone()).collect();
    overlay::send_encapsulated(
        &topo.v4_peer,
        overlay::V4_PEER.into(),
        overlay::NODE_V4.into(),
        &inner_frames,
    );
    overlay::send_encapsulated(
        &topo.v6_peer,
        overlay::V6_PEER.into(),
        overlay::NODE_V6.into(),
        &inner_frames,
    );
    let want = frames::stats_of(from_v4.iter().chain(&from_v6));
    let node = eventually(
        "the node received every frame",
        Duration::from_secs(2),
        || {
            let got = stats(&counters[0], &topo.node, overlay::DEVICE);
            if got.rx.packets() == want.packets() {
                Ok(got)
            } else {
                Err(got.rx.packets())
            }
        },
    );
    assert_stats("node ingress", &node.rx, &want);
    let peers = peers_of(&counters[0], index);
    for (endpoint, set) in [
        (IpAddr::from(overlay::V4_PEER), &from_v4),
        (overlay::V6_PEER.into(), &from_v6),
    ] {
        assert_eq!(
            peers.get(&(Some(endpoint), Direction::Ingress)),
            Some(&counter_of(set)),
            "from {endpoint}"
        );
    }
    assert_eq!(
        node.rx.packets(),
        link_stats(&topo.node, overlay::DEVICE)
            .since(&rx_before)
            .rx_packets,
        "vs the kernel"
    );

    // Each peer saw the node's endpoint, with exactly what was sent to it.
    for (i, (set, endpoint)) in [
        (&to_v4, IpAddr::from(overlay::NODE_V4)),
        (&to_v6, overlay::NODE_V6.into()),
    ]
    .into_iter()
    .enumerate()
    {
        let (ns, counter) = (nodes[i + 1], &counters[i + 1]);
        let received = eventually(
            "the peer received everything",
            Duration::from_secs(2),
            || {
                let got = stats(counter, ns, overlay::DEVICE);
                if got.rx.packets() == set.len() as u64 {
                    Ok(got)
                } else {
                    Err((got.rx.packets(), ns.ip(&["-s", "link"])))
                }
            },
        );
        assert_stats(
            "peer ingress",
            &received.rx,
            &frames::stats_of(set.iter().map(|(_, e)| e)),
        );
        let peers = peers_of(counter, ifindex(ns, overlay::DEVICE));
        assert_eq!(
            peers.get(&(Some(endpoint), Direction::Ingress)),
            Some(&expect(set))
        );
        assert_eq!(peers.len(), 1, "{peers:?}");
    }
}

#[test]
fn a_full_peer_map_counts_the_overflow_exactly() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("pov");
    let options = LoadOptions {
        capacity: Capacity::new(DEFAULT_MAX_INTERFACES, 1).expect("capacity"),
        ..LoadOptions::default()
    };
    let mut counters = load(&options);
    let _attached = attach_counter(
        &topo.node,
        &mut counters,
        overlay::DEVICE,
        collector::backend::ebpf::AttachMode::Auto,
        TUNNEL,
    )
    .expect("attach");
    let to_v4 = routed(overlay::V4_PEER_OVERLAY, overlay::V4_PEER.into());
    let to_v6 = routed(overlay::V6_PEER_OVERLAY, overlay::V6_PEER.into());
    let packets =
        |set: &[(Vec<u8>, Expected)]| set.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    raw::send_ipv4(&topo.node, &packets(&to_v4));
    raw::send_ipv4(&topo.node, &packets(&to_v6));
    let peers = peers_of(&counters, ifindex(&topo.node, overlay::DEVICE));
    let expect = |set: &[(Vec<u8>, Expected)]| counter_of(set.iter().map(|(_, e)| e));
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers.get(&(Some(overlay::V4_PEER.into()), Direction::Egress)),
        Some(&expect(&to_v4))
    );
    let overflow = counters.overflow().expect("overflow");
    assert_eq!(
        overflow.peers,
        expect(&to_v6),
        "the second peer did not fit"
    );
    assert_eq!(overflow.interfaces, Counter::default());
}

#[test]
fn the_daemon_exports_peers_and_forgets_idle_ones() {
    if !kernel_tests_enabled() {
        return;
    }
    let topo = OverlayNode::new("age");
    let daemon = Daemon::start(&topo.node, &["--peer-idle", "2", "--resync-interval", "1"]);
    let to_v4 = routed(overlay::V4_PEER_OVERLAY, overlay::V4_PEER.into());
    raw::send_ipv4(
        &topo.node,
        &to_v4.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
    );
    let peer = [
        ("interface", overlay::DEVICE),
        ("direction", "tx"),
        ("peer", "10.210.0.2"),
    ];
    let m = scrape(&topo.node);
    assert_eq!(
        m.value("linkmeter_overlay_packets_total", &peer),
        Some(to_v4.len() as f64),
        "{}",
        daemon.log_text()
    );
    let syn = [
        ("interface", overlay::DEVICE),
        ("direction", "tx"),
        ("flag", "syn"),
    ];
    assert_eq!(
        m.value("linkmeter_interface_tcp_flags_total", &syn),
        Some(3.0)
    );
    // Idle for two seconds: gone from the map and the exposition at a resync, while a peer
    // that keeps receiving stays.
    let active = [
        ("interface", overlay::DEVICE),
        ("direction", "tx"),
        ("peer", "fd00:210::3"),
    ];
    let keep_alive = routed(overlay::V6_PEER_OVERLAY, overlay::V6_PEER.into());
    let mut kept = 0;
    eventually(
        "the idle peer is forgotten",
        Duration::from_secs(10),
        || {
            raw::send_ipv4(&topo.node, &[keep_alive[0].0.clone()]);
            kept += 1;
            let m = scrape(&topo.node);
            match m.value("linkmeter_overlay_packets_total", &peer) {
                None => Ok(()),
                Some(v) => Err(v),
            }
        },
    );
    let m = scrape(&topo.node);
    assert_eq!(
        m.value("linkmeter_overlay_packets_total", &active),
        Some(f64::from(kept)),
        "the active peer stays, with every packet"
    );
    assert!(kept >= 2, "the idle one lasted at least a resync");
    assert!(daemon.log_text().contains("forgot idle overlay peers"));
}

#[test]
fn a_layer3_device_is_parsed_from_the_ip_header() {
    if !kernel_tests_enabled() {
        return;
    }
    use Protocol::*;
    let ns = NetNs::new("l3d");
    let mut queue = raw::tun(&ns, "tun0", "10.240.0.1/24");
    let mut counters = load(&LoadOptions::default());
    let raw_ip = Framing {
        tunnel_peers: false,
        raw_ip: true,
    };
    let _attached = attach_counter(
        &ns,
        &mut counters,
        "tun0",
        collector::backend::ebpf::AttachMode::Auto,
        raw_ip,
    )
    .expect("attach");
    // Ingress: IP packets written to the queue arrive on the device, without a link header.
    let (remote, local) = (Ipv4Addr::new(10, 240, 0, 2), Ipv4Addr::new(10, 240, 0, 1));
    let packets = [
        (ipv4(remote, local, 17, 0, &udp(100)), Ipv4Udp, None),
        (
            ipv4(remote, local, 6, 0, &tcp(flags::RST, 0)),
            Ipv4Tcp,
            Some(TcpFlag::Rst),
        ),
        (ipv6(V6_A, V6_B, 58, &frames::echo(128, 8)), Ipv6Icmp, None),
        (
            ipv6(V6_A, V6_B, 6, &tcp(flags::SYN, 0)),
            Ipv6Tcp,
            Some(TcpFlag::Syn),
        ),
    ];
    for (packet, _, _) in &packets {
        std::io::Write::write_all(&mut queue, packet).expect("write to the tun queue");
    }
    let want = frames::stats_of(
        &packets
            .iter()
            .map(|(p, protocol, flag)| Expected::new(*protocol, *flag, p.len(), None))
            .collect::<Vec<_>>(),
    );
    // The device hands written packets to the stack's backlog: wait for all of them.
    let rx = eventually(
        "the tun received every packet",
        Duration::from_secs(2),
        || {
            let rx = stats(&counters, &ns, "tun0").rx;
            if rx.packets() == want.packets() {
                Ok(rx)
            } else {
                Err(rx.packets())
            }
        },
    );
    assert_stats("tun ingress", &rx, &want);

    // Egress: a datagram the namespace routes out of the device.
    let socket = ns
        .within(|| std::net::UdpSocket::bind((local, 0)))
        .expect("bind");
    socket.send_to(&[0; 50], (remote, 9)).expect("send");
    let tx = eventually("the datagram went out", Duration::from_secs(2), || {
        let tx = stats(&counters, &ns, "tun0").tx;
        if tx.protocols[Ipv4Udp as usize].packets == 1 {
            Ok(tx)
        } else {
            Err(tx.packets())
        }
    });
    let ipv4_udp = tx.protocols[Ipv4Udp as usize];
    assert_eq!((ipv4_udp.packets, ipv4_udp.bytes), (1, 20 + 8 + 50));
    // Besides it, only the kernel's port unreachable for the UDP packet written above.
    assert_eq!(tx.protocols[Ipv4Icmp as usize].packets, 1);
    assert_eq!(tx.packets(), 2, "{tx:?}");
}
