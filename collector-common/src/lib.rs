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

/// Length of an Ethernet header, the difference between TC bytes and the kernel's vxlan bytes.
pub const ETH_HLEN: u64 = 14;

/// Name of the directory array (interface → [`Slot`]).
pub const DIRECTORY_MAP: &str = "LINKMETER_DIRECTORY";
/// Name of the per-CPU array of [`Stats`].
pub const STATS_MAP: &str = "LINKMETER_STATS";
/// Name of the per-CPU hash of per-peer [`Counter`]s.
pub const PEERS_MAP: &str = "LINKMETER_PEERS";
/// Name of the per-CPU array of overflow [`Counter`]s.
pub const OVERFLOW_MAP: &str = "LINKMETER_OVERFLOW";
/// Version of the maps' layout: the key and value types of [`DIRECTORY_MAP`], [`STATS_MAP`],
/// [`PEERS_MAP`] and [`OVERFLOW_MAP`] and how the programs index them. Pinned maps are reused
/// by a restarted or upgraded daemon only under the same version: bump it with any change to
/// [`Slot`], [`Stats`], [`PeerKey`], [`Counter`], [`Protocol`], the size buckets or the
/// indexing (a unit test pins the sizes it was set for).
pub const MAP_LAYOUT_VERSION: u32 = 1;
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

/// The `probe`-th directory position of `ifindex` in a directory of `mask + 1` (a power of
/// two) entries: linear probing from a multiplicative hash, so that the dense runs of
/// consecutive ifindexes do not pile up where a later ifindex starts probing.
pub const fn directory_position(ifindex: u32, probe: u32, mask: u32) -> u32 {
    ifindex.wrapping_mul(0x9e37_79b1).wrapping_add(probe) & mask
}

/// The index into [`STATS_MAP`] of `slot` in `direction`.
pub const fn stats_index(slot: u32, direction: Direction) -> u32 {
    slot.wrapping_mul(2).wrapping_add(direction as u32)
}

/// A directory entry: where the statistics of interface `ifindex` are. `ifindex` 0 marks a free
/// entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// The interface (0: free entry).
    pub ifindex: u32,
    /// Its slot: its statistics are at [`stats_index`]`(index, direction)`.
    pub index: u32,
    /// [`SLOT_TUNNEL`], [`SLOT_RAW_IP`].
    pub flags: u32,
    /// Zero.
    pub reserved: u32,
}

/// The protocol classes of the traffic breakdown. One 802.1Q/802.1ad tag is looked through;
/// IPv6 extension headers are not walked (such packets count as [`Protocol::Ipv6Other`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// IPv4 TCP.
    Ipv4Tcp = 0,
    /// IPv4 UDP.
    Ipv4Udp = 1,
    /// IPv4 ICMP.
    Ipv4Icmp = 2,
    /// Other IPv4.
    Ipv4Other = 3,
    /// IPv6 TCP.
    Ipv6Tcp = 4,
    /// IPv6 UDP.
    Ipv6Udp = 5,
    /// ICMPv6.
    Ipv6Icmp = 6,
    /// Other IPv6 (including packets with extension headers).
    Ipv6Other = 7,
    /// ARP.
    Arp = 8,
    /// Anything else (other ethertypes, frames too short to classify).
    Other = 9,
}

/// Number of [`Protocol`] classes.
pub const PROTOCOLS: usize = 10;

impl Protocol {
    /// Every class, in index order.
    pub const ALL: [Self; PROTOCOLS] = [
        Self::Ipv4Tcp,
        Self::Ipv4Udp,
        Self::Ipv4Icmp,
        Self::Ipv4Other,
        Self::Ipv6Tcp,
        Self::Ipv6Udp,
        Self::Ipv6Icmp,
        Self::Ipv6Other,
        Self::Arp,
        Self::Other,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4Tcp => "ipv4_tcp",
            Self::Ipv4Udp => "ipv4_udp",
            Self::Ipv4Icmp => "ipv4_icmp",
            Self::Ipv4Other => "ipv4_other",
            Self::Ipv6Tcp => "ipv6_tcp",
            Self::Ipv6Udp => "ipv6_udp",
            Self::Ipv6Icmp => "ipv6_icmp",
            Self::Ipv6Other => "ipv6_other",
            Self::Arp => "arp",
            Self::Other => "other",
        }
    }

    /// The class of an IPv4 packet carrying IP protocol `proto`.
    pub const fn ipv4(proto: u8) -> Self {
        match proto {
            6 => Self::Ipv4Tcp,
            17 => Self::Ipv4Udp,
            1 => Self::Ipv4Icmp,
            _ => Self::Ipv4Other,
        }
    }

    /// The class of an IPv6 packet whose first next-header is `next`.
    pub const fn ipv6(next: u8) -> Self {
        match next {
            6 => Self::Ipv6Tcp,
            17 => Self::Ipv6Udp,
            58 => Self::Ipv6Icmp,
            _ => Self::Ipv6Other,
        }
    }
}

/// The TCP flag combinations counted.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpFlag {
    /// SYN without ACK: a connection attempt.
    Syn = 0,
    /// SYN with ACK: an accepted connection attempt.
    SynAck = 1,
    /// FIN (with or without ACK).
    Fin = 2,
    /// RST (with or without ACK).
    Rst = 3,
}

/// Number of [`TcpFlag`] combinations.
pub const TCP_FLAGS: usize = 4;

impl TcpFlag {
    /// Every combination, in index order.
    pub const ALL: [Self; TCP_FLAGS] = [Self::Syn, Self::SynAck, Self::Fin, Self::Rst];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Syn => "syn",
            Self::SynAck => "syn_ack",
            Self::Fin => "fin",
            Self::Rst => "rst",
        }
    }
}

/// Upper bounds (inclusive, bytes) of the packet-size histogram's buckets, RMON style; an
/// eighth bucket takes what is larger.
pub const SIZE_BOUNDS: [u32; 7] = [64, 128, 256, 512, 1024, 1518, 9000];
/// Number of size buckets ([`SIZE_BOUNDS`] plus +Inf).
pub const SIZE_BUCKETS: usize = 8;

/// The bucket of a packet of `len` bytes.
#[inline(always)]
pub const fn size_bucket(len: u32) -> usize {
    if len <= 256 {
        if len <= 64 {
            0
        } else if len <= 128 {
            1
        } else {
            2
        }
    } else if len <= 1024 {
        if len <= 512 { 3 } else { 4 }
    } else if len <= 1518 {
        5
    } else if len <= 9000 {
        6
    } else {
        7
    }
}

/// Everything counted for one interface in one direction (per CPU): 256 bytes, the size buckets
/// first, then the TCP flags, then the protocols' counters (the kernel aligns per-CPU map values
/// to 8 bytes only, so no stronger alignment is claimed). Totals are not stored: the packets are
/// the sum of the protocols' (and of the size buckets'), the bytes the sum of the protocols'.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets per size bucket ([`size_bucket`]); not cumulative.
    pub sizes: [u64; SIZE_BUCKETS],
    /// TCP segments per [`TcpFlag`] combination.
    pub tcp_flags: [u64; TCP_FLAGS],
    /// Packets and bytes per [`Protocol`]; a GSO/TSO super-packet counts once, as in the
    /// kernel's counters. Bytes follow the byte definition (crate docs).
    pub protocols: [Counter; PROTOCOLS],
}

impl Stats {
    /// Adds another CPU's share, wrapping like the kernel.
    pub fn add(&mut self, other: &Self) {
        for (t, p) in self.protocols.iter_mut().zip(&other.protocols) {
            t.add(p);
        }
        let sum = |total: &mut [u64], part: &[u64]| {
            for (t, p) in total.iter_mut().zip(part) {
                *t = t.wrapping_add(*p);
            }
        };
        sum(&mut self.tcp_flags, &other.tcp_flags);
        sum(&mut self.sizes, &other.sizes);
    }

    /// Packets, all protocols.
    pub fn packets(&self) -> u64 {
        self.protocols
            .iter()
            .fold(0, |total, c| total.wrapping_add(c.packets))
    }

    /// Bytes, all protocols.
    pub fn bytes(&self) -> u64 {
        self.protocols
            .iter()
            .fold(0, |total, c| total.wrapping_add(c.bytes))
    }
}

/// [`PeerKey::family`] of a packet without a tunnel key.
pub const PEER_NONE: u8 = 0;
/// [`PeerKey::family`] of an IPv4 tunnel endpoint.
pub const PEER_IPV4: u8 = 4;
/// [`PeerKey::family`] of an IPv6 tunnel endpoint.
pub const PEER_IPV6: u8 = 6;

/// Key of [`PEERS_MAP`]: an interface, a direction and the remote tunnel endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// The tunnel device.
    pub ifindex: u32,
    /// A [`Direction`] as `u8`.
    pub direction: u8,
    /// [`PEER_NONE`], [`PEER_IPV4`] or [`PEER_IPV6`].
    pub family: u8,
    /// Zero.
    pub reserved: [u8; 2],
    /// The endpoint's address bytes in network order (an IPv4 address in the first four,
    /// zeros after it), held as four native-endian words so that the eBPF program writes it
    /// with four stores; zero for [`PEER_NONE`]. See [`PeerKey::addr_bytes`].
    pub addr: [u32; 4],
}

impl PeerKey {
    /// The address bytes in network order.
    #[must_use]
    pub fn addr_bytes(&self) -> [u8; 16] {
        let mut out = [0; 16];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.addr) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// [`PeerKey::addr`] holding `bytes` (network order).
    #[must_use]
    pub fn addr_words(bytes: [u8; 16]) -> [u32; 4] {
        let mut out = [0; 4];
        for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        out
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
            PROTOCOLS,
            SIZE_BUCKETS,
            TCP_FLAGS,
        );
        assert_eq!(
            (MAP_LAYOUT_VERSION, sizes),
            (1, (16, 24, 16, 256, 10, 8, 4))
        );
    }

    #[test]
    fn map_types_have_no_padding() {
        assert_eq!(core::mem::size_of::<Slot>(), 16);
        assert_eq!(core::mem::size_of::<PeerKey>(), 24);
        assert_eq!(core::mem::size_of::<Counter>(), 16);
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
    fn sizes_fall_into_rmon_buckets_with_inclusive_upper_bounds() {
        let cases = [
            (0, 0),
            (60, 0),
            (64, 0),
            (65, 1),
            (128, 1),
            (129, 2),
            (256, 2),
            (257, 3),
            (512, 3),
            (1024, 4),
            (1025, 5),
            (1518, 5),
            (1519, 6),
            (9000, 6),
            (9001, 7),
            (65_535, 7),
        ];
        for (len, bucket) in cases {
            assert_eq!(size_bucket(len), bucket, "{len}");
        }
        for (i, bound) in SIZE_BOUNDS.iter().enumerate() {
            assert_eq!(size_bucket(*bound), i);
            assert_eq!(size_bucket(bound + 1), i + 1);
        }
    }

    #[test]
    fn protocols_and_flags_have_distinct_indexes_and_labels() {
        for (i, p) in Protocol::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
        for (i, f) in TcpFlag::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
        assert_eq!(Protocol::ipv4(6), Protocol::Ipv4Tcp);
        assert_eq!(Protocol::ipv4(47), Protocol::Ipv4Other);
        assert_eq!(Protocol::ipv6(58), Protocol::Ipv6Icmp);
        assert_eq!(
            Protocol::ipv6(0),
            Protocol::Ipv6Other,
            "hop-by-hop is an extension"
        );
    }

    #[test]
    fn directory_positions_wrap_and_stats_indexes_interleave_directions() {
        let mask = 63;
        let start = directory_position(5, 0, mask);
        assert_eq!(directory_position(5, 1, mask), (start + 1) & mask);
        // Distinct ifindexes below the directory size start at distinct positions.
        let starts: std::collections::BTreeSet<u32> =
            (0..=mask).map(|i| directory_position(i, 0, mask)).collect();
        assert_eq!(starts.len(), 64);
        assert_eq!(stats_index(3, Direction::Ingress), 6);
        assert_eq!(stats_index(3, Direction::Egress), 7);
    }

    #[test]
    fn stats_add_sums_every_field_and_totals_come_from_the_protocols() {
        let mut one = Stats::default();
        one.protocols[Protocol::Arp as usize] = Counter {
            packets: 1,
            bytes: 100,
        };
        one.protocols[Protocol::Ipv4Udp as usize] = Counter {
            packets: 2,
            bytes: 60,
        };
        one.sizes[7] = 3;
        one.tcp_flags[1] = 1;
        let mut total = Stats::default();
        total.add(&one);
        total.add(&one);
        assert_eq!((total.packets(), total.bytes()), (6, 320));
        assert_eq!(total.protocols[Protocol::Arp as usize].packets, 2);
        assert_eq!((total.sizes[7], total.tcp_flags[1]), (6, 2));
    }

    #[test]
    fn peer_addresses_round_trip_through_the_key_words() {
        let v6 = [0xfd, 0, 2, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd];
        let key = PeerKey {
            addr: PeerKey::addr_words(v6),
            ..PeerKey::default()
        };
        assert_eq!(key.addr_bytes(), v6);
        // The eBPF program stores an IPv4 address (host order from the helper) as `to_be()`.
        let v4 = PeerKey {
            addr: [0xc0a8_3202_u32.to_be(), 0, 0, 0],
            ..PeerKey::default()
        };
        assert_eq!(v4.addr_bytes()[..4], [192, 168, 50, 2]);
        assert_eq!(v4.addr_bytes()[4..], [0; 12]);
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
