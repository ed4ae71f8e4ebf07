//! Classifying a packet for the breakdown: Ethernet type (or `skb->protocol` on layer-3
//! devices) through one VLAN tag, the IPv4 protocol or IPv6 next header, the TCP flags. Bounded
//! and loop-free: direct packet access, `bpf_skb_load_bytes` only when the headers are not in
//! the linear part.

use aya_ebpf::programs::TcContext;
use collector_common::{Protocol, SLOT_RAW_IP, TcpFlag};

/// What the breakdown needs to know of a packet.
pub(crate) struct Class {
    pub(crate) protocol: Protocol,
    pub(crate) tcp_flag: Option<TcpFlag>,
}

/// Reads of packet bytes at offsets from the start of the frame.
trait Bytes {
    fn byte(&self, offset: usize) -> Option<u8>;

    #[inline(always)]
    fn be16(&self, offset: usize) -> Option<u16> {
        Some(u16::from_be_bytes([
            self.byte(offset)?,
            self.byte(offset + 1)?,
        ]))
    }
}

/// Direct packet access: the linear part of the skb, each read bounds-checked.
struct Direct {
    data: usize,
    end: usize,
}

impl Bytes for Direct {
    #[inline(always)]
    fn byte(&self, offset: usize) -> Option<u8> {
        let at = self.data + offset;
        if at + 1 > self.end {
            return None;
        }
        // SAFETY: `at` lies inside the packet's linear data (checked against `data_end` just
        // above, which the verifier also checks); the byte is only read.
        Some(unsafe { *(at as *const u8) })
    }
}

/// `bpf_skb_load_bytes`: for the rare packet whose headers are not in the linear part.
struct Loaded<'a>(&'a TcContext);

impl Bytes for Loaded<'_> {
    #[inline(always)]
    fn byte(&self, offset: usize) -> Option<u8> {
        self.0.load::<u8>(offset).ok()
    }
}

#[inline(always)]
pub(crate) fn classify(ctx: &TcContext, flags: u32) -> Class {
    // SAFETY: as in `count`: a read of `__sk_buff::protocol`, checked by the verifier.
    let skb_protocol = u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16);
    let direct = Direct {
        data: ctx.data(),
        end: ctx.data_end(),
    };
    if let Some(class) = parse(&direct, flags, skb_protocol, false) {
        return class;
    }
    parse(&Loaded(ctx), flags, skb_protocol, true).unwrap_or(Class {
        protocol: Protocol::Other,
        tcp_flag: None,
    })
}

/// Classifies a frame; `None` when a header it needs is out of reach. A TCP segment whose
/// flags are out of reach of the `last` reader (a truncated TCP header) is TCP without a flag.
#[inline(always)]
fn parse<B: Bytes>(bytes: &B, flags: u32, skb_protocol: u16, last: bool) -> Option<Class> {
    let (ethertype, l3) = if flags & SLOT_RAW_IP != 0 {
        (skb_protocol, 0)
    } else {
        match bytes.be16(12)? {
            // One 802.1Q or 802.1ad tag.
            0x8100 | 0x88a8 => (bytes.be16(16)?, 18),
            ethertype => (ethertype, 14),
        }
    };
    let other = |protocol| {
        Some(Class {
            protocol,
            tcp_flag: None,
        })
    };
    let tcp = |protocol, at: usize| match bytes.byte(at) {
        Some(flags) => Some(Class {
            protocol,
            tcp_flag: tcp_flag(flags),
        }),
        None if last => other(protocol),
        None => None,
    };
    match ethertype {
        0x0806 => other(Protocol::Arp),
        0x0800 => {
            let header = usize::from(bytes.byte(l3)? & 0x0f) * 4;
            let proto = bytes.byte(l3 + 9)?;
            let fragment_offset = bytes.be16(l3 + 6)? & 0x1fff;
            let protocol = Protocol::ipv4(proto);
            if protocol != Protocol::Ipv4Tcp || fragment_offset != 0 || header < 20 {
                return other(protocol);
            }
            tcp(protocol, l3 + header + 13)
        }
        0x86dd => {
            let protocol = Protocol::ipv6(bytes.byte(l3 + 6)?);
            if protocol != Protocol::Ipv6Tcp {
                return other(protocol);
            }
            tcp(protocol, l3 + 40 + 13)
        }
        _ => other(Protocol::Other),
    }
}

/// The counted combination of a TCP header's flags byte.
#[inline(always)]
const fn tcp_flag(flags: u8) -> Option<TcpFlag> {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    if flags & RST != 0 {
        Some(TcpFlag::Rst)
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            Some(TcpFlag::SynAck)
        } else {
            Some(TcpFlag::Syn)
        }
    } else if flags & FIN != 0 {
        Some(TcpFlag::Fin)
    } else {
        None
    }
}
