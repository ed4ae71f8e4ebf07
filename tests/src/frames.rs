//! Crafted frames and packets of known protocol, TCP flags and size, and what the eBPF program
//! must count for each: the model the breakdown tests compare the maps against.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use collector_common::{Counter, Protocol, SIZE_BUCKETS, Stats, TcpFlag, size_bucket};

/// Source MAC of crafted frames.
pub const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
/// Destination MAC of crafted frames.
pub const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 2];

/// TCP flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// An Ethernet frame: `dst`, `src`, `ethertype`, `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An Ethernet frame with one 802.1Q tag (VLAN 42) in front of `ethertype`.
pub fn vlan(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + payload.len());
    inner.extend_from_slice(&42u16.to_be_bytes());
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    ethernet(0x8100, &inner)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

/// An IPv4 packet (header of 20 bytes, checksummed) carrying `payload` with IP protocol `proto`;
/// `fragment_offset` in 8-byte units.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    fragment_offset: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("fits");
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0x12, 0x34]);
    header.extend_from_slice(&fragment_offset.to_be_bytes());
    header.extend_from_slice(&[64, proto, 0, 0]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

/// An IPv6 packet carrying `payload` with next header `next`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&u16::try_from(payload.len()).expect("fits").to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// A TCP segment with `flags` and `data` bytes of payload (checksum left zero: only the
/// counters read it).
pub fn tcp(flags: u8, data: usize) -> Vec<u8> {
    let mut segment = vec![0u8; 20 + data];
    segment[0..2].copy_from_slice(&40000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&80u16.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = flags;
    segment[14..16].copy_from_slice(&64240u16.to_be_bytes());
    segment
}

/// A UDP datagram with `data` bytes of payload.
pub fn udp(data: usize) -> Vec<u8> {
    let mut datagram = vec![0u8; 8 + data];
    datagram[0..2].copy_from_slice(&40000u16.to_be_bytes());
    datagram[2..4].copy_from_slice(&9u16.to_be_bytes());
    datagram[4..6].copy_from_slice(&u16::try_from(8 + data).expect("fits").to_be_bytes());
    datagram
}

/// An ICMP (or ICMPv6, by `kind`) echo request with `data` bytes.
pub fn echo(kind: u8, data: usize) -> Vec<u8> {
    let mut message = vec![0u8; 8 + data];
    message[0] = kind;
    message
}

/// An ARP request frame.
pub fn arp() -> Vec<u8> {
    let mut body = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    body.extend_from_slice(&SRC_MAC);
    body.extend_from_slice(&[10, 0, 0, 1]);
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&[10, 0, 0, 2]);
    ethernet(0x0806, &body)
}

/// What the program must count for one frame: its class, its counted TCP flag, its length at
/// the TC hook, and (on a tunnel device) its peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The protocol class.
    pub protocol: Protocol,
    /// The counted TCP flag combination, if any.
    pub flag: Option<TcpFlag>,
    /// Bytes at the TC hook (the whole frame).
    pub len: u32,
    /// The remote tunnel endpoint (`None`: no tunnel key).
    pub peer: Option<IpAddr>,
}

impl Expected {
    /// A frame of `len` bytes of `protocol`.
    pub fn new(
        protocol: Protocol,
        flag: Option<TcpFlag>,
        len: usize,
        peer: Option<IpAddr>,
    ) -> Self {
        Self {
            protocol,
            flag,
            len: u32::try_from(len).expect("small"),
            peer,
        }
    }
}

/// The statistics the program must have counted for `frames`.
pub fn stats_of<'a>(frames: impl IntoIterator<Item = &'a Expected>) -> Stats {
    let mut stats = Stats::default();
    for frame in frames {
        let counter: &mut Counter = &mut stats.protocols[frame.protocol as usize];
        counter.packets += 1;
        counter.bytes += u64::from(frame.len);
        stats.sizes[size_bucket(frame.len)] += 1;
        if let Some(flag) = frame.flag {
            stats.tcp_flags[flag as usize] += 1;
        }
    }
    debug_assert_eq!(stats.sizes.len(), SIZE_BUCKETS);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let packet = ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            0,
            &udp(10),
        );
        assert_eq!(checksum(&packet[..20]), 0);
        assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 38);
    }

    #[test]
    fn expected_stats_add_up_every_frame() {
        let frames = [
            Expected::new(Protocol::Ipv4Tcp, Some(TcpFlag::Syn), 74, None),
            Expected::new(Protocol::Arp, None, 42, None),
            Expected::new(Protocol::Ipv4Tcp, None, 1514, None),
        ];
        let stats = stats_of(&frames);
        assert_eq!((stats.packets(), stats.bytes()), (3, 1630));
        assert_eq!(stats.sizes[0], 1);
        assert_eq!(stats.sizes[1], 1);
        assert_eq!(stats.sizes[5], 1);
        assert_eq!(stats.tcp_flags[TcpFlag::Syn as usize], 1);
    }
}
