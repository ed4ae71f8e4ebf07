//! Types shared by the linkmeter eBPF program (`collector-ebpf`) and user space (`collector`).
//!
//! Everything here is `no_std` and `#[repr(C)]`: the same bytes are written by the kernel side and
//! read by user space, so the layout is part of the contract between the two halves.
//!
//! # Maps
//!
//! - [`DIRECTORY_MAP`]: a plain array (one copy) that user space fills: for each attached
//!   interface, a [`Slot`] with its ifindex, its index into the statistics, and flags. The
//!   program finds an interface's slot at position [`directory_position`] of its ifindex, probing
//!   at most [`DIRECTORY_PROBES`] positions. Array lookups are inlined by the verifier, so the
//!   hot path takes no hash lookup.
//! - [`STATS_MAP`]: a per-CPU array of [`Stats`], two per slot ([`stats_index`]).
//! - [`PEERS_MAP`]: a per-CPU hash of [`Counter`]s by [`PeerKey`]: traffic per remote tunnel
//!   endpoint on external-mode (collect_md) vxlan/geneve devices.
//! - [`OVERFLOW_MAP`]: a per-CPU array of two [`Counter`]s: packets of an interface without a
//!   slot ([`OVERFLOW_INTERFACES`]) and of a peer that found [`PEERS_MAP`] full
//!   ([`OVERFLOW_PEERS`]).
//!
//! # Byte definition
//!
//! Bytes add up `skb->len` as seen at the TC hook: the whole layer-2 frame including its
//! Ethernet header, without preamble or FCS. On veth and most physical NIC drivers this equals
//! the kernel's own `rx_bytes`/`tx_bytes`. On vxlan and geneve devices the kernel's counters leave
//! out the inner Ethernet header, so there the eBPF byte count is the kernel's plus 14 bytes per
//! packet ([`ETH_HLEN`]). linkmeter reports the TC definition everywhere rather than correcting
//! per device kind, so the same number always means the same thing. Packet sizes in the size
//! histogram are the same `skb->len`, so its sum is the byte counter and its count the packet
//! counter.

#![cfg_attr(not(test), no_std)]

mod breakdown;
mod directory;
pub mod drops;
mod peers;

pub use self::{
    breakdown::{
        PROTOCOLS, Protocol, SIZE_BOUNDS, SIZE_BUCKETS, Stats, TCP_FLAGS, TcpFlag, size_bucket,
    },
    directory::{Slot, directory_position, stats_index},
    drops::DropKey,
    peers::{
        PEER_CONTROL_ENTRIES, PEER_CONTROL_GENERATION, PEER_CONTROL_HARVESTING, PEER_CONTROL_LIVE,
        PEER_CONTROL_SEQUENCE, PEER_IPV4, PEER_IPV6, PEER_NONE, PEER_PROBES, PeerEntry, PeerKey,
        PeerTotal, harvest_tag, peer_position,
    },
};

/// Length of an Ethernet header, the difference between TC bytes and the kernel's vxlan bytes.
pub const ETH_HLEN: u64 = 14;

/// Name of the directory array (interface → [`Slot`]).
pub const DIRECTORY_MAP: &str = "LINKMETER_DIRECTORY";
/// Name of the per-CPU array of [`Stats`].
pub const STATS_MAP: &str = "LINKMETER_STATS";
/// Name of the per-CPU hash of per-peer [`Counter`]s.
pub const PEERS_MAP: &str = "LINKMETER_PEERS";
/// Name of the per-CPU array of [`PeerEntry`]s: two halves of [`PEER_TABLE_HALF_GLOBAL`]
/// entries, the programs filling the one [`PEER_CONTROL_MAP`] names.
pub const PEER_TABLE_MAP: &str = "LINKMETER_PEER_TABLE";
/// Name of the array of the peer table's control words ([`PEER_CONTROL_LIVE`] and so on).
pub const PEER_CONTROL_MAP: &str = "LINKMETER_PEER_CONTROL";
/// Name of the hash of [`PeerTotal`]s by [`PeerKey`], written by user space only.
pub const PEER_TOTALS_MAP: &str = "LINKMETER_PEER_TOTALS";
/// Name of the program's global holding the entries of one peer table half (a power of two),
/// or 0 when the table is not used.
pub const PEER_TABLE_HALF_GLOBAL: &str = "PEER_TABLE_HALF";
/// Name of the per-CPU array of overflow [`Counter`]s.
pub const OVERFLOW_MAP: &str = "LINKMETER_OVERFLOW";
/// Version of the maps' layout: the key and value types of [`DIRECTORY_MAP`], [`STATS_MAP`],
/// [`PEERS_MAP`], [`PEER_TABLE_MAP`], [`PEER_CONTROL_MAP`], [`PEER_TOTALS_MAP`] and
/// [`OVERFLOW_MAP`] and how the programs index them. Pinned maps are reused
/// by a restarted or upgraded daemon only under the same version: bump it with any change to
/// [`Slot`], [`Stats`], [`PeerKey`], [`Counter`], [`Protocol`], the size buckets or the
/// indexing (a unit test pins the sizes it was set for).
pub const MAP_LAYOUT_VERSION: u32 = 3;
/// Name of the program's global holding the directory's index mask (its size minus one).
pub const DIRECTORY_MASK_GLOBAL: &str = "DIRECTORY_MASK";
/// Name of the ingress TC program in the object.
pub const INGRESS_PROGRAM: &str = "linkmeter_ingress";
/// Name of the egress TC program in the object.
pub const EGRESS_PROGRAM: &str = "linkmeter_egress";

/// Directory entries compiled into the object; user space sets the real size at load time.
pub const DEFAULT_DIRECTORY_ENTRIES: u32 = 4096;
/// Statistics entries compiled into the object; user space sets the real size at load time.
pub const DEFAULT_STATS_ENTRIES: u32 = 2048;
/// Peer table entries (both halves) compiled into the object; user space sets the real size at
/// load time.
pub const DEFAULT_PEER_TABLE_ENTRIES: u32 = 2048;
/// Peer entries compiled into the object; user space sets the real size at load time.
pub const DEFAULT_PEER_ENTRIES: u32 = 1024;
/// How many directory positions the program probes for an ifindex. User space sizes the
/// directory at eight positions per slot, so a free one is practically always within reach.
pub const DIRECTORY_PROBES: u32 = 8;
/// Directory positions per interface slot.
pub const DIRECTORY_PER_SLOT: u32 = 8;

/// Index into [`OVERFLOW_MAP`]: packets on an interface that has no slot.
pub const OVERFLOW_INTERFACES: u32 = 0;
/// Index into [`OVERFLOW_MAP`]: packets whose peer did not fit into [`PEERS_MAP`].
pub const OVERFLOW_PEERS: u32 = 1;
/// Entries of [`OVERFLOW_MAP`].
pub const OVERFLOW_ENTRIES: u32 = 2;

/// [`Slot::flags`]: read the tunnel key of each packet and count it per peer (an external-mode
/// vxlan or geneve device).
pub const SLOT_TUNNEL: u32 = 1;
/// [`Slot::flags`]: the device has no link-layer header (packets start with the IP header).
pub const SLOT_RAW_IP: u32 = 2;

/// Direction of traffic relative to the interface the program is attached to.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received by the interface (TC ingress hook).
    Ingress = 0,
    /// Transmitted by the interface (TC egress hook).
    Egress = 1,
}

impl Direction {
    /// Both directions, ingress first.
    pub const ALL: [Self; 2] = [Self::Ingress, Self::Egress];

    /// Decodes the raw value stored in a [`PeerKey`].
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Ingress),
            1 => Some(Self::Egress),
            _ => None,
        }
    }

    /// `rx` for ingress, `tx` for egress, as used in metric labels.
    pub const fn as_rx_tx(self) -> &'static str {
        match self {
            Self::Ingress => "rx",
            Self::Egress => "tx",
        }
    }
}

/// A packet and byte counter (per CPU): a peer's traffic, or an overflow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (see the crate docs for the byte definition).
    pub bytes: u64,
}

impl Counter {
    /// Adds another counter (e.g. another CPU's share) to this one, wrapping like the kernel.
    pub const fn add(&mut self, other: &Self) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `Slot` is `#[repr(C)]`, `Copy`, has no padding (four `u32`) and every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Slot {}
    // SAFETY: `Stats` is `#[repr(C)]`, `Copy`, and has no padding: its fields are arrays of
    // `u64` and `Counter` (two `u64`) adding up to 256 bytes; every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Stats {}
    // SAFETY: `PeerKey` is `#[repr(C)]`, `Copy`, has no padding (`u32`, two `u8`, `[u8; 2]`,
    // `[u32; 4]`: 24 bytes) and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::PeerKey {}
    // SAFETY: `Counter` is `#[repr(C)]`, `Copy`, has no padding (two `u64`) and every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: `PeerEntry` is `#[repr(C)]`, `Copy`, has no padding (a 24-byte `PeerKey` then a
    // `Counter` at offset 24, 8-aligned: 40 bytes) and every bit pattern is a valid value.
    unsafe impl aya::Pod for super::PeerEntry {}
    // SAFETY: `PeerTotal` is `#[repr(C)]`, `Copy`, has no padding (a `Counter` and a `u64`) and
    // every bit pattern is a valid value.
    unsafe impl aya::Pod for super::PeerTotal {}
    // SAFETY: `DropKey` is `#[repr(C)]`, `Copy`, has no padding (two `u32`) and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for super::DropKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_version_follows_the_map_types() {
        // Changed a size here? Bump MAP_LAYOUT_VERSION, then update these numbers.
        let sizes = (
            core::mem::size_of::<Slot>(),
            core::mem::size_of::<PeerKey>(),
            core::mem::size_of::<Counter>(),
            core::mem::size_of::<Stats>(),
            core::mem::size_of::<PeerEntry>(),
            core::mem::size_of::<PeerTotal>(),
            PROTOCOLS,
            SIZE_BUCKETS,
            TCP_FLAGS,
            PEER_CONTROL_ENTRIES,
        );
        assert_eq!(
            (MAP_LAYOUT_VERSION, sizes),
            (3, (16, 24, 16, 256, 40, 24, 10, 8, 4, 4))
        );
    }

    #[test]
    fn map_types_have_no_padding() {
        assert_eq!(core::mem::size_of::<Slot>(), 16);
        assert_eq!(core::mem::size_of::<PeerKey>(), 24);
        assert_eq!(core::mem::size_of::<Counter>(), 16);
        assert_eq!(core::mem::size_of::<PeerEntry>(), 24 + 16);
        assert_eq!(core::mem::size_of::<PeerTotal>(), 16 + 8);
        assert_eq!(
            core::mem::size_of::<Stats>(),
            8 * (2 * PROTOCOLS + TCP_FLAGS + SIZE_BUCKETS)
        );
        assert_eq!(core::mem::size_of::<Stats>(), 256);
        // No counter straddles a cache line.
        assert_eq!(core::mem::offset_of!(Stats, sizes), 0);
        assert_eq!(core::mem::offset_of!(Stats, tcp_flags), 64);
        assert_eq!(core::mem::offset_of!(Stats, protocols), 96);
    }

    #[test]
    fn direction_round_trips_and_counter_wraps() {
        for direction in Direction::ALL {
            assert_eq!(Direction::from_raw(direction as u32), Some(direction));
        }
        assert_eq!(Direction::from_raw(2), None);
        let mut total = Counter {
            packets: u64::MAX,
            bytes: 10,
        };
        total.add(&Counter {
            packets: 2,
            bytes: 5,
        });
        assert_eq!((total.packets, total.bytes), (1, 15));
    }
}
