//! rtnetlink on the wire: splitting a datagram into netlink messages, reading the link messages
//! (`struct ifinfomsg` and its attributes) linkmeter needs, and building its requests. Pure
//! functions over bytes: whatever the kernel sends, they return `None`/an error, never panic.
//!
//! Only the attributes linkmeter uses are read (name, kind, the collect-metadata flag of vxlan
//! and geneve, `IFLA_STATS64`), so a dump of a thousand links is not decoded into attribute
//! vectors first, and a name that is not UTF-8 is not an error (see [`escape_name`]).

use std::borrow::Cow;

use super::{Framing, Link, LinkFacts, LinkStats};

/// `NLMSG_ERROR`.
pub(crate) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub(crate) const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`.
pub(crate) const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`.
pub(crate) const RTM_DELLINK: u16 = 17;
/// `RTM_GETLINK`.
pub(crate) const RTM_GETLINK: u16 = 18;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a change and may be inconsistent.
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_COLLECT_METADATA: u16 = 25;
const IFLA_GENEVE_COLLECT_METADATA: u16 = 6;
/// Attribute type bits that are flags, not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `ARPHRD_*` of devices whose packets start with the IP header: none, rawip, ipip (tunnel),
/// ip6tnl, sit, GRE, ip6gre.
const RAW_IP_LINK_TYPES: [u16; 7] = [0xfffe, 519, 768, 769, 776, 778, 823];

/// One netlink message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// `nlmsg_type`.
    pub(crate) kind: u16,
    /// `nlmsg_flags`.
    pub(crate) flags: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// What follows the header.
    pub(crate) payload: &'a [u8],
}

impl Message<'_> {
    /// The errno of an `NLMSG_ERROR` message (0 is an acknowledgement); `None` for others.
    pub(crate) fn error(&self) -> Option<i32> {
        (self.kind == NLMSG_ERROR).then(|| {
            i32_at(self.payload, 0).map_or(libc::EPROTO, |code| code.checked_neg().unwrap_or(0))
        })
    }
}

/// The errno an `NLMSG_DONE` payload carries when the dump failed part-way (`None`: complete).
pub(crate) fn done_error(payload: &[u8]) -> Option<i32> {
    i32_at(payload, 0)
        .filter(|&code| code < 0)
        .map(|code| code.checked_neg().unwrap_or(libc::EIO))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The messages of a datagram, in order; stops at the first malformed header (a length that
/// is too short or runs past the datagram), which is reported as `Err(())` once.
pub(crate) fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<Message<'_>, ()>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let len = usize::try_from(u32_at(rest, 0)?).ok()?;
            if len < NLMSG_HDRLEN || len > rest.len() {
                return None;
            }
            let message = Message {
                kind: u16_at(rest, 4)?,
                flags: u16_at(rest, 6)?,
                seq: u32_at(rest, 8)?,
                payload: &rest[NLMSG_HDRLEN..len],
            };
            Some((message, align4(len).min(rest.len())))
        })();
        match parsed {
            Some((message, next)) => {
                rest = &rest[next..];
                Some(Ok(message))
            }
            None => {
                rest = &[];
                Some(Err(()))
            }
        }
    })
}

/// The attributes (`struct rtattr`/`nlattr`) in `bytes`: (type without flag bits, value).
/// Stops at the first malformed one.
fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = u16_at(rest, 2)? & NLA_TYPE_MASK;
        let value = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((kind, value))
    })
}

/// `AF_UNSPEC`: the family of messages about links themselves. The bridge sends
/// `RTM_NEWLINK`/`RTM_DELLINK` with `AF_BRIDGE` about its ports (a port leaving the bridge is
/// an `RTM_DELLINK` for a link that still exists): those are not link events.
const AF_UNSPEC: u8 = 0;

/// The ifindex of a link message (`RTM_NEWLINK`/`RTM_DELLINK` payload); `None` for messages
/// of another family than `AF_UNSPEC` (bridge ports).
pub(crate) fn link_index(payload: &[u8]) -> Option<u32> {
    if *payload.first()? != AF_UNSPEC {
        return None;
    }
    i32_at(payload, 4).and_then(|i| u32::try_from(i).ok())
}

/// Extracts the facts linkmeter uses from a link message payload (`struct ifinfomsg` and its
/// attributes); `None` when it is truncated, has no name, or is about a bridge port.
pub(crate) fn parse_link(payload: &[u8]) -> Option<LinkFacts> {
    let ifindex = link_index(payload)?;
    let link_type = u16_at(payload, 2)?;
    let mut name = None;
    let mut kind = None;
    let mut stats = None;
    let mut framing = Framing {
        tunnel_peers: false,
        raw_ip: RAW_IP_LINK_TYPES.contains(&link_type),
    };
    for (attr, value) in attributes(payload.get(IFINFOMSG_LEN..)?) {
        match attr {
            IFLA_IFNAME => name = Some(escape_name(until_nul(value))),
            IFLA_STATS64 => stats = parse_stats64(value),
            IFLA_LINKINFO => {
                let (k, tunnel_peers) = parse_link_info(value);
                kind = k;
                framing.tunnel_peers = tunnel_peers;
            }
            _ => {}
        }
    }
    Some(LinkFacts {
        link: Link {
            ifindex,
            name: name.filter(|n| !n.is_empty())?,
            kind,
            framing,
        },
        stats,
    })
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or(bytes)
}

/// `IFLA_LINKINFO`: the kind, and whether a vxlan/geneve device is in external
/// (collect-metadata) mode, where every packet carries its own tunnel key (Cilium's devices).
fn parse_link_info(bytes: &[u8]) -> (Option<String>, bool) {
    let mut kind = None;
    let mut data = None;
    for (attr, value) in attributes(bytes) {
        match attr {
            IFLA_INFO_KIND => kind = Some(String::from_utf8_lossy(until_nul(value)).into_owned()),
            IFLA_INFO_DATA => data = Some(value),
            _ => {}
        }
    }
    let tunnel_peers = match (kind.as_deref(), data) {
        (Some("vxlan"), Some(data)) => attributes(data)
            .any(|(a, v)| a == IFLA_VXLAN_COLLECT_METADATA && v.first().is_some_and(|&b| b != 0)),
        // A flag attribute: present means set.
        (Some("geneve"), Some(data)) => {
            attributes(data).any(|(a, _)| a == IFLA_GENEVE_COLLECT_METADATA)
        }
        _ => false,
    };
    (kind, tunnel_peers)
}

/// The first eight counters of `struct rtnl_link_stats64`.
fn parse_stats64(bytes: &[u8]) -> Option<LinkStats> {
    let at = |i: usize| u64_at(bytes, i * 8);
    Some(LinkStats {
        rx_packets: at(0)?,
        tx_packets: at(1)?,
        rx_bytes: at(2)?,
        tx_bytes: at(3)?,
        rx_errors: at(4)?,
        tx_errors: at(5)?,
        rx_dropped: at(6)?,
        tx_dropped: at(7)?,
    })
}

/// `IFLA_EXT_MASK`, and its `RTEXT_FILTER_SKIP_STATS` (no VF statistics; VF information is not
/// asked for at all).
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_SKIP_STATS: u32 = 8;

/// An `RTM_GETLINK` request: a dump of every link (`ifindex` `None`) or one link by index. It
/// carries an `IFLA_EXT_MASK`: without one the kernel sizes a dump's buffers for an ordinary link
/// and leaves out, silently, a link whose message is larger (hundreds of altnames make one of
/// over 64 KiB); with one it sizes them for the largest link.
pub(crate) fn getlink_request(seq: u32, ifindex: Option<u32>) -> Vec<u8> {
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN + 8;
    let flags = NLM_F_REQUEST | if ifindex.is_none() { NLM_F_DUMP } else { 0 };
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(40).to_ne_bytes());
    out.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    out.extend_from_slice(&[0; 4]); // ifi_family AF_UNSPEC, pad, ifi_type
    let index = ifindex.and_then(|i| i32::try_from(i).ok()).unwrap_or(0);
    out.extend_from_slice(&index.to_ne_bytes());
    out.extend_from_slice(&[0; 8]); // ifi_flags, ifi_change
    out.extend_from_slice(&8u16.to_ne_bytes()); // nla_len
    out.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    out.extend_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    out
}

/// An interface name as linkmeter shows it: exactly the kernel's bytes when they are UTF-8 (as
/// node_exporter's `device` and other tools show it, so joins on it work); otherwise each byte
/// that is not part of valid UTF-8 written `:xNN` (lowercase hex). The kernel refuses `:` in a
/// name (and `/`, whitespace, NUL), so a shown name with `:` is always such an escaping:
/// unambiguous, and reversible with [`unescape_name`].
pub(crate) fn escape_name(bytes: &[u8]) -> String {
    if let Ok(name) = std::str::from_utf8(bytes) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!(":x{b:02x}"));
        }
    }
    out
}

/// The kernel's bytes of a name shown by [`escape_name`]; `None` when `name` is not what
/// [`escape_name`] shows for any name (a `:` that is not `:xNN`, or an escaping of bytes that
/// are valid UTF-8, which would be shown as they are).
pub(crate) fn unescape_name(name: &str) -> Option<Cow<'_, [u8]>> {
    if !name.contains(':') {
        return Some(Cow::Borrowed(name.as_bytes()));
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b':', Some(b'x')) => {
                let digit = |at: usize| match bytes.get(at)? {
                    d @ b'0'..=b'9' => Some(d - b'0'),
                    d @ b'a'..=b'f' => Some(d - b'a' + 10),
                    _ => None,
                };
                out.push(digit(i + 2)? << 4 | digit(i + 3)?);
                i += 4;
            }
            (b':', _) => return None,
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only the one way `escape_name` shows these bytes.
    (escape_name(&out) == name).then_some(Cow::Owned(out))
}

#[cfg(test)]
mod tests;
