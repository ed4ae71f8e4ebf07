//! The kernel's own interface counters (`IFLA_STATS64`, read through `ip -j -s link`).

use collector::backend::ebpf::{
    AttachError, AttachMode, EbpfCounters, Framing, InterfaceAttachment,
};

use crate::netns::NetNs;

/// Kernel link counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Received packets.
    pub rx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
}

impl LinkStats {
    /// `self - earlier`, field by field.
    pub const fn since(&self, earlier: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets - earlier.rx_packets,
            rx_bytes: self.rx_bytes - earlier.rx_bytes,
            tx_packets: self.tx_packets - earlier.tx_packets,
            tx_bytes: self.tx_bytes - earlier.tx_bytes,
        }
    }
}

/// Reads `IFLA_STATS64` of `interface` in `ns`.
pub fn link_stats(ns: &NetNs, interface: &str) -> LinkStats {
    let json = ns.ip(&["-j", "-s", "link", "show", "dev", interface]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output is JSON");
    let s = &v[0]["stats64"];
    let get = |dir: &str, field: &str| {
        s[dir][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.{field} in {json}"))
    };
    LinkStats {
        rx_packets: get("rx", "packets"),
        rx_bytes: get("rx", "bytes"),
        tx_packets: get("tx", "packets"),
        tx_bytes: get("tx", "bytes"),
    }
}

/// The ifindex of `interface` in `ns`.
pub fn ifindex(ns: &NetNs, interface: &str) -> u32 {
    let json = ns.ip(&["-j", "link", "show", "dev", interface]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output is JSON");
    v[0]["ifindex"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .expect("ifindex")
}

/// Attaches linkmeter's counter with `counters` to `interface` of `ns`, by the ifindex it has
/// there (the library attaches by index, in the calling thread's network namespace).
///
/// # Errors
///
/// What attaching answered.
pub fn attach_counter(
    ns: &NetNs,
    counters: &mut EbpfCounters,
    interface: &str,
    mode: AttachMode,
    framing: Framing,
) -> Result<InterfaceAttachment, AttachError> {
    let index = ifindex(ns, interface);
    ns.within(|| counters.attach(index, mode, framing))
}
