//! The Cilium-like node: an external-mode `cilium_vxlan` to two remote nodes, pods behind
//! `lxc` veths, `cilium_host`/`cilium_net`, NIC-like underlays and a bridge.

use crate::netns::NetNs;

/// A Cilium-like node (namespace `node`) as linkmeter sees it on a real cluster:
///
/// - `cilium_vxlan`: external (collect_md) vxlan on UDP 8472, routes with tunnel keys to two
///   remote nodes (namespaces `remotes`, overlay addresses [`CiliumNode::REMOTE_OVERLAYS`]);
/// - `cilium_host` / `cilium_net`: a veth pair, `cilium_host` holding the node's overlay address;
/// - `lxc1111`, `lxc2222`: veths whose peers (`eth0`) sit in pod namespaces `pods[0]`, `pods[1]`
///   with [`CiliumNode::POD_IPS`]; the node forwards between them and to the overlay;
/// - `eth1`, `eth2`: the NIC-like underlay veths to the remote nodes
///   ([`CiliumNode::REMOTE_UNDERLAYS`]);
/// - `br0`: a bridge; `lo`.
#[derive(Debug)]
pub struct CiliumNode {
    /// The node's namespace (where linkmeter runs).
    pub node: NetNs,
    /// The remote nodes across the vxlan overlay.
    pub remotes: [NetNs; 2],
    /// The two pods.
    pub pods: [NetNs; 2],
}

impl CiliumNode {
    /// Pod addresses.
    pub const POD_IPS: [&'static str; 2] = ["10.0.1.11", "10.0.1.12"];
    /// The remote nodes' overlay addresses.
    pub const REMOTE_OVERLAYS: [&'static str; 2] = ["10.0.2.1", "10.0.3.1"];
    /// The remote nodes' underlay addresses: the tunnel endpoints, so the `peer` label.
    pub const REMOTE_UNDERLAYS: [&'static str; 2] = ["192.168.50.2", "192.168.51.2"];
    /// The node's underlay address towards each remote node.
    pub const LOCAL_UNDERLAYS: [&'static str; 2] = ["192.168.50.1", "192.168.51.1"];
    /// Lxc interface names on the node, per pod.
    pub const LXC: [&'static str; 2] = ["lxc1111", "lxc2222"];
    const NODE_VXLAN_MAC: &'static str = "02:00:00:00:60:01";

    /// Builds the topology.
    pub fn new(tag: &str) -> Self {
        let node = NetNs::new(&format!("{tag}n"));
        let remotes = [
            NetNs::new(&format!("{tag}r1")),
            NetNs::new(&format!("{tag}r2")),
        ];
        let pods = [
            NetNs::new(&format!("{tag}p1")),
            NetNs::new(&format!("{tag}p2")),
        ];
        node.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        let topo = Self {
            node,
            remotes,
            pods,
        };
        topo.node.ip(&[
            "link",
            "add",
            "cilium_vxlan",
            "address",
            Self::NODE_VXLAN_MAC,
            "type",
            "vxlan",
            "external",
            "dstport",
            "8472",
        ]);
        topo.node.ip(&["link", "set", "cilium_vxlan", "up"]);
        for i in 0..topo.remotes.len() {
            topo.underlay(i);
            topo.overlay(i);
        }
        topo.host_devices();
        topo.pods();
        topo.node.ip(&["link", "add", "br0", "type", "bridge"]);
        topo.node.ip(&["link", "set", "br0", "up"]);
        topo
    }

    /// `eth{i+1}` (node) <-> `eth1` (remote `i`), 192.168.{50+i}.0/24.
    fn underlay(&self, i: usize) {
        let (node, remote) = (&self.node, &self.remotes[i]);
        let local_dev = format!("eth{}", i + 1);
        let (node_mac, remote_mac) = (
            format!("02:00:00:00:5{i}:01"),
            format!("02:00:00:00:5{i}:02"),
        );
        node.ip(&[
            "link",
            "add",
            &local_dev,
            "address",
            &node_mac,
            "type",
            "veth",
            "peer",
            "name",
            "eth1",
            "address",
            &remote_mac,
            "netns",
            remote.name(),
        ]);
        let (local, far) = (Self::LOCAL_UNDERLAYS[i], Self::REMOTE_UNDERLAYS[i]);
        for (ns, dev, ip, peer_ip, peer_mac) in [
            (node, local_dev.as_str(), local, far, &remote_mac),
            (remote, "eth1", far, local, &node_mac),
        ] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
            ns.permanent_neighbour(peer_ip, peer_mac, dev);
        }
    }

    /// Remote `i`'s `cilium_vxlan` and the tunnel-keyed routes both ways.
    fn overlay(&self, i: usize) {
        let (node, remote) = (&self.node, &self.remotes[i]);
        let remote_vx = format!("02:00:00:00:6{}:02", i + 1);
        remote.ip(&[
            "link",
            "add",
            "cilium_vxlan",
            "address",
            &remote_vx,
            "type",
            "vxlan",
            "external",
            "dstport",
            "8472",
        ]);
        remote.ip(&["link", "set", "cilium_vxlan", "up"]);
        let overlay = Self::REMOTE_OVERLAYS[i];
        let subnet = format!("10.0.{}.0/24", i + 2);
        let remote_id = (i + 2).to_string();
        node.ip(&[
            "route",
            "add",
            &subnet,
            "encap",
            "ip",
            "id",
            &remote_id,
            "dst",
            Self::REMOTE_UNDERLAYS[i],
            "dev",
            "cilium_vxlan",
        ]);
        node.permanent_neighbour(overlay, &remote_vx, "cilium_vxlan");
        remote.ip(&[
            "addr",
            "add",
            &format!("{overlay}/32"),
            "dev",
            "cilium_vxlan",
        ]);
        remote.ip(&[
            "route",
            "add",
            "10.0.1.0/24",
            "encap",
            "ip",
            "id",
            "1",
            "dst",
            Self::LOCAL_UNDERLAYS[i],
            "dev",
            "cilium_vxlan",
        ]);
        for ip in Self::POD_IPS {
            remote.permanent_neighbour(ip, Self::NODE_VXLAN_MAC, "cilium_vxlan");
        }
    }

    /// `cilium_host` / `cilium_net`.
    fn host_devices(&self) {
        let node = &self.node;
        node.ip(&[
            "link",
            "add",
            "cilium_host",
            "type",
            "veth",
            "peer",
            "name",
            "cilium_net",
        ]);
        node.ip(&["addr", "add", "10.0.1.1/32", "dev", "cilium_host"]);
        node.ip(&["link", "set", "cilium_host", "up"]);
        node.ip(&["link", "set", "cilium_net", "up"]);
    }

    /// The pods behind their `lxc` veths.
    fn pods(&self) {
        let node = &self.node;
        let pods = &self.pods;
        for (i, pod) in pods.iter().enumerate() {
            let lxc = Self::LXC[i];
            let lxc_mac = format!("02:00:00:00:70:0{i}");
            let pod_mac = format!("02:00:00:00:71:0{i}");
            node.ip(&[
                "link",
                "add",
                lxc,
                "address",
                &lxc_mac,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                &pod_mac,
                "netns",
                pod.name(),
            ]);
            node.ip(&["link", "set", lxc, "up"]);
            node.ip(&[
                "route",
                "add",
                &format!("{}/32", Self::POD_IPS[i]),
                "dev",
                lxc,
            ]);
            node.permanent_neighbour(Self::POD_IPS[i], &pod_mac, lxc);
            pod.ip(&[
                "addr",
                "add",
                &format!("{}/32", Self::POD_IPS[i]),
                "dev",
                "eth0",
            ]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "10.0.0.0/8", "dev", "eth0"]);
            for peer in [
                Self::POD_IPS[1 - i],
                Self::REMOTE_OVERLAYS[0],
                Self::REMOTE_OVERLAYS[1],
            ] {
                pod.permanent_neighbour(peer, &lxc_mac, "eth0");
            }
        }
    }
}

impl CiliumNode {
    /// Asserts what the eBPF counter on `cilium_vxlan` reports in `m`: `tx`/`rx` packets, equal
    /// to the kernel's link counters, bytes equal to the kernel's plus the Ethernet header the
    /// kernel leaves out, and `per_peer` packets out to each remote node and in from the second
    /// (none from the first): the traffic of the daemon and image tests.
    pub fn assert_vxlan_counted(
        &self,
        m: &crate::daemon::Metrics,
        tx: u64,
        rx: u64,
        per_peer: f64,
    ) {
        let kernel = crate::kernel::link_stats(&self.node, "cilium_vxlan");
        let ebpf = |name: &str, direction: &str| {
            let labels = [
                ("interface", "cilium_vxlan"),
                ("direction", direction),
                ("backend", "ebpf"),
            ];
            m.value(name, &labels)
                .unwrap_or_else(|| panic!("no eBPF {name} {direction} for cilium_vxlan"))
                as u64
        };
        let packets = "linkmeter_interface_packets_total";
        let bytes = "linkmeter_interface_bytes_total";
        let counted = (ebpf(packets, "tx"), ebpf(packets, "rx"));
        assert_eq!(counted, (tx, rx));
        assert_eq!(counted, (kernel.tx_packets, kernel.rx_packets));
        let eth = collector_common::ETH_HLEN;
        assert_eq!(ebpf(bytes, "tx"), kernel.tx_bytes + eth * kernel.tx_packets);
        assert_eq!(ebpf(bytes, "rx"), kernel.rx_bytes + eth * kernel.rx_packets);
        let overlay = |direction: &str, peer: &str| {
            m.value(
                "linkmeter_overlay_packets_total",
                &[
                    ("interface", "cilium_vxlan"),
                    ("direction", direction),
                    ("peer", peer),
                ],
            )
        };
        let [underlay1, underlay2] = Self::REMOTE_UNDERLAYS;
        assert_eq!(overlay("tx", underlay1), Some(per_peer));
        assert_eq!(overlay("tx", underlay2), Some(per_peer));
        assert_eq!(overlay("rx", underlay2), Some(per_peer));
        assert_eq!(overlay("rx", underlay1), None);
    }
}
