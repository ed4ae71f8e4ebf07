//! Test topologies: two namespaces joined by a veth pair, optionally with a vxlan overlay.
//!
//! All addresses and MACs are fixed (each topology lives in its own namespaces) and every
//! neighbour entry is permanent, so no ARP packet ever adds to the counts under test.

use crate::netns::NetNs;

/// Underlay address of side A (on `va`).
pub const A_IP: &str = "10.200.0.1";
/// Underlay address of side B (on `vb`).
pub const B_IP: &str = "10.200.0.2";
const A_MAC: &str = "02:00:00:00:00:0a";
const B_MAC: &str = "02:00:00:00:00:0b";
const A_VX_MAC: &str = "02:00:00:00:01:0a";
const B_VX_MAC: &str = "02:00:00:00:01:0b";

/// Two namespaces, `a` and `b`, joined by veth `va` (in `a`) — `vb` (in `b`).
#[derive(Debug)]
pub struct VethPair {
    /// Side A, holding `va`.
    pub a: NetNs,
    /// Side B, holding `vb`.
    pub b: NetNs,
}

impl VethPair {
    /// Builds the pair with addresses [`A_IP`]/[`B_IP`] and permanent neighbour entries.
    pub fn new(tag: &str) -> Self {
        let a = NetNs::new(&format!("{tag}a"));
        let b = NetNs::new(&format!("{tag}b"));
        a.ip(&[
            "link",
            "add",
            "va",
            "address",
            A_MAC,
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "address",
            B_MAC,
            "netns",
            b.name(),
        ]);
        for (ns, dev, ip, peer_ip, peer_mac) in
            [(&a, "va", A_IP, B_IP, B_MAC), (&b, "vb", B_IP, A_IP, A_MAC)]
        {
            for knob in ["all", "default"] {
                ns.exec(&[
                    "sh",
                    "-c",
                    &format!("echo 0 > /proc/sys/net/ipv4/conf/{knob}/rp_filter"),
                ]);
            }
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
            ns.permanent_neighbour(peer_ip, peer_mac, dev);
        }
        Self { a, b }
    }

    /// Adds a vxlan device `name` (VNI `vni`, port 4789) in `a` over the underlay, with `b` as
    /// its fixed remote, and brings it up.
    pub fn add_vxlan(&self, name: &str, vni: u32) {
        let vni = vni.to_string();
        self.a.ip(&[
            "link", "add", name, "type", "vxlan", "id", &vni, "local", A_IP, "remote", B_IP,
            "dstport", "4789", "dev", "va",
        ]);
        self.a.ip(&["link", "set", name, "up"]);
    }
}

/// How the vxlan devices of a [`VxlanPair`] are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VxlanMode {
    /// `external` (collect_md) devices named `cilium_vxlan` on UDP port 8472, as Cilium creates
    /// them; routes carry the tunnel key (`encap ip id 2 dst <peer>`).
    CiliumExternal,
    /// Classic devices `vx0` with VNI 42 and a fixed remote, on UDP port 4789.
    FixedRemote,
}

/// A [`VethPair`] underlay with a vxlan device on each side and overlay addresses
/// [`VxlanPair::A_OVERLAY`] / [`VxlanPair::B_OVERLAY`].
#[derive(Debug)]
pub struct VxlanPair {
    /// The underlay (and the namespaces).
    pub underlay: VethPair,
    /// Name of the vxlan device on both sides.
    pub device: &'static str,
}

impl VxlanPair {
    /// Overlay address of side A.
    pub const A_OVERLAY: &'static str = "10.202.0.1";
    /// Overlay address of side B.
    pub const B_OVERLAY: &'static str = "10.202.0.2";

    /// Builds the overlay in `mode`.
    pub fn new(tag: &str, mode: VxlanMode) -> Self {
        let underlay = VethPair::new(tag);
        let device = match mode {
            VxlanMode::CiliumExternal => "cilium_vxlan",
            VxlanMode::FixedRemote => "vx0",
        };
        let sides = [
            (
                &underlay.a,
                A_VX_MAC,
                Self::A_OVERLAY,
                Self::B_OVERLAY,
                B_VX_MAC,
                A_IP,
                B_IP,
                "va",
            ),
            (
                &underlay.b,
                B_VX_MAC,
                Self::B_OVERLAY,
                Self::A_OVERLAY,
                A_VX_MAC,
                B_IP,
                A_IP,
                "vb",
            ),
        ];
        for (ns, mac, ip, peer_ip, peer_mac, local, remote, lower) in sides {
            match mode {
                VxlanMode::CiliumExternal => {
                    ns.ip(&[
                        "link", "add", device, "address", mac, "type", "vxlan", "external",
                        "dstport", "8472",
                    ]);
                }
                VxlanMode::FixedRemote => {
                    ns.ip(&[
                        "link", "add", device, "address", mac, "type", "vxlan", "id", "42",
                        "local", local, "remote", remote, "dstport", "4789", "dev", lower,
                    ]);
                }
            }
            ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", device]);
            ns.ip(&["link", "set", device, "up"]);
            match mode {
                VxlanMode::CiliumExternal => ns.ip(&[
                    "route",
                    "add",
                    &format!("{peer_ip}/32"),
                    "encap",
                    "ip",
                    "id",
                    "2",
                    "dst",
                    remote,
                    "dev",
                    device,
                ]),
                VxlanMode::FixedRemote => {
                    ns.ip(&["route", "add", &format!("{peer_ip}/32"), "dev", device])
                }
            };
            ns.permanent_neighbour(peer_ip, peer_mac, device);
        }
        Self { underlay, device }
    }
}

mod cilium;
pub use self::cilium::CiliumNode;
