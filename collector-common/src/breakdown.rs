//! What is counted per interface and direction: the protocol mix, TCP flags, packet sizes.

use crate::Counter;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
