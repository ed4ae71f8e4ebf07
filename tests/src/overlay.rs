//! A node with an external-mode (collect_md) `cilium_vxlan` and two remote nodes, one over an
//! IPv4 underlay and one over an IPv6 underlay, as Cilium's tunnel mode builds them: every
//! packet carries its own tunnel key, set by the encap route to its peer.
//!
//! The remote nodes have no overlay address, so they drop what arrives (after their TC ingress
//! hook saw it) and never answer: counts stay exactly what the test sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::netns::NetNs;

/// The tunnel device's name on every node.
pub const DEVICE: &str = "cilium_vxlan";

/// The node's overlay address.
pub const NODE_OVERLAY: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 1);
/// The overlay address routed to the IPv4-underlay peer.
pub const V4_PEER_OVERLAY: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 2);
/// The overlay address routed to the IPv6-underlay peer.
pub const V6_PEER_OVERLAY: Ipv4Addr = Ipv4Addr::new(10, 220, 0, 3);
/// The node's IPv4 underlay address.
pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 1);
/// The IPv4-underlay peer's address: its tunnel endpoint.
pub const V4_PEER: Ipv4Addr = Ipv4Addr::new(10, 210, 0, 2);
/// The node's IPv6 underlay address.
pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x210, 0, 0, 0, 0, 0, 1);
/// The IPv6-underlay peer's address: its tunnel endpoint.
pub const V6_PEER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x210, 0, 0, 0, 0, 0, 3);

const VX_MAC: [&str; 3] = [
    "02:00:00:00:d0:01",
    "02:00:00:00:d0:02",
    "02:00:00:00:d0:03",
];

/// The node and its two peers.
#[derive(Debug)]
pub struct OverlayNode {
    /// The node (where linkmeter counts).
    pub node: NetNs,
    /// The peer over the IPv4 underlay.
    pub v4_peer: NetNs,
    /// The peer over the IPv6 underlay.
    pub v6_peer: NetNs,
}

impl OverlayNode {
    /// Attaches `counters` to the node's tunnel device with `mode`, counting per peer.
    ///
    /// # Panics
    ///
    /// When attaching fails.
    pub fn attach_tunnel(
        &self,
        counters: &mut collector::backend::ebpf::EbpfCounters,
        mode: collector::backend::ebpf::AttachMode,
    ) -> collector::backend::ebpf::InterfaceAttachment {
        let framing = collector::backend::ebpf::Framing {
            tunnel_peers: true,
            raw_ip: false,
        };
        crate::kernel::attach_counter(&self.node, counters, DEVICE, mode, framing)
            .expect("attach to the tunnel device")
    }

    /// Builds the three nodes.
    pub fn new(tag: &str) -> Self {
        let topo = Self {
            node: NetNs::new(&format!("{tag}n")),
            v4_peer: NetNs::new(&format!("{tag}4")),
            v6_peer: NetNs::new(&format!("{tag}6")),
        };
        topo.underlays();
        for (ns, mac) in [&topo.node, &topo.v4_peer, &topo.v6_peer]
            .into_iter()
            .zip(VX_MAC)
        {
            // The encap routes set no checksum flag, so IPv6 underlay packets carry a zero UDP
            // checksum, which a receiver accepts only with udp6zerocsumrx.
            ns.ip(&[
                "link",
                "add",
                DEVICE,
                "address",
                mac,
                "type",
                "vxlan",
                "external",
                "dstport",
                "8472",
                "udp6zerocsumrx",
            ]);
            ns.ip(&["link", "set", DEVICE, "up"]);
        }
        let node = &topo.node;
        node.ip(&["addr", "add", &format!("{NODE_OVERLAY}/32"), "dev", DEVICE]);
        for (overlay, family, endpoint, mac) in [
            (V4_PEER_OVERLAY, "ip", IpAddr::from(V4_PEER), VX_MAC[1]),
            (V6_PEER_OVERLAY, "ip6", IpAddr::from(V6_PEER), VX_MAC[2]),
        ] {
            node.ip(&[
                "route",
                "add",
                &format!("{overlay}/32"),
                "encap",
                family,
                "id",
                "2",
                "dst",
                &endpoint.to_string(),
                "dev",
                DEVICE,
            ]);
            node.permanent_neighbour(&overlay.to_string(), mac, DEVICE);
        }
        topo
    }

    /// `u4` (node) — `u4` (IPv4 peer) and `u6` (node) — `u6` (IPv6 peer), with permanent
    /// neighbours. IPv6 is enabled on the `u6` pair only, without DAD.
    fn underlays(&self) {
        let link = |peer: &NetNs, name: &str, macs: [&str; 2]| {
            self.node.ip(&[
                "link",
                "add",
                name,
                "address",
                macs[0],
                "type",
                "veth",
                "peer",
                "name",
                name,
                "address",
                macs[1],
                "netns",
                peer.name(),
            ]);
        };
        link(
            &self.v4_peer,
            "u4",
            ["02:00:00:00:d4:01", "02:00:00:00:d4:02"],
        );
        link(
            &self.v6_peer,
            "u6",
            ["02:00:00:00:d6:01", "02:00:00:00:d6:03"],
        );
        for (ns, own, peer, peer_mac) in [
            (&self.node, NODE_V4, V4_PEER, "02:00:00:00:d4:02"),
            (&self.v4_peer, V4_PEER, NODE_V4, "02:00:00:00:d4:01"),
        ] {
            ns.ip(&["addr", "add", &format!("{own}/24"), "dev", "u4"]);
            ns.ip(&["link", "set", "u4", "up"]);
            ns.permanent_neighbour(&peer.to_string(), peer_mac, "u4");
        }
        for (ns, own, peer, peer_mac) in [
            (&self.node, NODE_V6, V6_PEER, "02:00:00:00:d6:03"),
            (&self.v6_peer, V6_PEER, NODE_V6, "02:00:00:00:d6:01"),
        ] {
            ns.exec(&[
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv6/conf/u6/disable_ipv6",
            ]);
            ns.ip(&["addr", "add", &format!("{own}/64"), "dev", "u6", "nodad"]);
            ns.ip(&["link", "set", "u6", "up"]);
            ns.permanent_neighbour(&peer.to_string(), peer_mac, "u6");
        }
    }
}

/// The VXLAN network identifier the encapsulated frames carry (an external-mode device takes
/// any).
const VNI: u32 = 2;

/// Sends each of `frames` (complete Ethernet frames) from `src` in `ns` to the VXLAN port of
/// `dst`, encapsulated by hand (a VXLAN header in a UDP datagram), as a remote node's tunnel
/// device would: the receiving external-mode device decapsulates them with `src` as the tunnel
/// key's remote endpoint, whatever the frames hold (ARP, non-IP, IPv6, VLAN tags, ...).
///
/// # Panics
///
/// When the socket cannot be opened or a datagram is not sent whole.
pub fn send_encapsulated(ns: &NetNs, src: IpAddr, dst: IpAddr, frames: &[Vec<u8>]) {
    let socket = ns
        .within(|| std::net::UdpSocket::bind((src, 0)))
        .expect("bind the underlay socket");
    for frame in frames {
        // Flags (VNI present), 24 reserved bits, the VNI, 8 reserved bits.
        let mut datagram = vec![0x08, 0, 0, 0];
        datagram.extend_from_slice(&(VNI << 8).to_be_bytes());
        datagram.extend_from_slice(frame);
        let sent = socket
            .send_to(&datagram, (dst, 8472))
            .expect("send an encapsulated frame");
        assert_eq!(sent, datagram.len());
    }
}

/// An IPv4 VXLAN datagram (header included, for [`crate::raw::send_ipv4`]) from `src` — any
/// address, forged — to the node's VXLAN port, carrying `frame`: what a remote node's tunnel
/// device would send. Thousands of distinct endpoints without an address each; the node needs
/// a route back to `src` through the underlay for reverse-path checks.
pub fn forged(src: Ipv4Addr, frame: &[u8]) -> Vec<u8> {
    let mut vxlan = vec![0x08, 0, 0, 0];
    vxlan.extend_from_slice(&(VNI << 8).to_be_bytes());
    vxlan.extend_from_slice(frame);
    let length = u16::try_from(8 + vxlan.len()).expect("fits");
    let mut datagram = Vec::with_capacity(8 + vxlan.len());
    datagram.extend_from_slice(&40000u16.to_be_bytes());
    datagram.extend_from_slice(&8472u16.to_be_bytes());
    datagram.extend_from_slice(&length.to_be_bytes());
    // No UDP checksum (allowed over IPv4).
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(&vxlan);
    crate::frames::ipv4(src, NODE_V4, 17, 0, &datagram)
}

/// A 100-byte inner frame (UDP from a remote pod to the node's overlay address).
pub fn inner_frame() -> Vec<u8> {
    crate::frames::ethernet(
        0x0800,
        &crate::frames::ipv4(
            Ipv4Addr::new(10, 220, 9, 9),
            NODE_OVERLAY,
            17,
            0,
            &crate::frames::udp(100 - 14 - 20 - 8),
        ),
    )
}

/// Adds `n` tunnel endpoint addresses on the IPv4-underlay peer, from 10.210.0.`first` on.
///
/// # Panics
///
/// When `ip` fails.
pub fn endpoints(topo: &OverlayNode, first: u8, n: u8) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|i| {
            let address = Ipv4Addr::new(10, 210, 0, first + i);
            topo.v4_peer
                .ip(&["addr", "add", &format!("{address}/24"), "dev", "u4"]);
            address
        })
        .collect()
}

/// Sends `packets` encapsulated frames of 100 bytes (UDP inside) from the IPv4-underlay peer's
/// address `endpoint` to the node: ingress peer traffic of that endpoint.
///
/// # Panics
///
/// As [`send_encapsulated`].
pub fn send_from(topo: &OverlayNode, endpoint: Ipv4Addr, packets: usize) {
    let frame = inner_frame();
    send_encapsulated(
        &topo.v4_peer,
        endpoint.into(),
        NODE_V4.into(),
        &vec![frame; packets],
    );
}

/// Ingress peers of tunnel device `ifindex` as `counters` reads them: endpoint → counter.
///
/// # Panics
///
/// When the peers cannot be read.
pub fn ingress_peers(
    counters: &collector::backend::ebpf::EbpfCounters,
    ifindex: u32,
) -> std::collections::BTreeMap<IpAddr, collector_common::Counter> {
    counters
        .peers()
        .expect("peers")
        .into_iter()
        .filter(|p| p.ifindex == ifindex && p.direction == collector_common::Direction::Ingress)
        .filter_map(|p| Some((p.endpoint?, p.counter)))
        .collect()
}
