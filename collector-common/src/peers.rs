//! Traffic per remote tunnel endpoint: the key of the peer maps, the peer table the programs
//! fill without a hash lookup, and the totals user space carries out of it.

use crate::Counter;

/// [`PeerKey::family`] of a packet without a tunnel key.
pub const PEER_NONE: u8 = 0;
/// [`PeerKey::family`] of an IPv4 tunnel endpoint.
pub const PEER_IPV4: u8 = 4;
/// [`PeerKey::family`] of an IPv6 tunnel endpoint.
pub const PEER_IPV6: u8 = 6;

/// Key of [`PEERS_MAP`](crate::PEERS_MAP): an interface (its ifindex and the generation of its
/// slot), a direction and the remote tunnel endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// The tunnel device.
    pub ifindex: u32,
    /// A [`Direction`](crate::Direction) as `u8`.
    pub direction: u8,
    /// [`PEER_NONE`], [`PEER_IPV4`] or [`PEER_IPV6`].
    pub family: u8,
    /// The [`Slot::generation`](crate::Slot::generation) of the tunnel device's slot: a key
    /// whose (ifindex, generation) is no longer a slot's belongs to a removed device.
    pub generation: u16,
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

/// An entry of [`PEER_TABLE_MAP`](crate::PEER_TABLE_MAP), a per-CPU array: one peer's counter on
/// one CPU. The program claims a free entry of its CPU's copy with plain stores (each CPU
/// writes only its own copy, and programs run with migration disabled); free while
/// `key.ifindex` is 0. The same peer may hold entries on several CPUs: user space sums them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer.
    pub key: PeerKey,
    /// Its packets and bytes on this CPU since the entry was claimed.
    pub counter: Counter,
}

/// A value of [`PEER_TOTALS_MAP`](crate::PEER_TOTALS_MAP), written by user space only: what a
/// peer counted in the table's halves that were harvested (emptied) so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTotal {
    /// Packets and bytes.
    pub counter: Counter,
    /// The last table entry added to `counter` ([`harvest_tag`]): a harvest interrupted (the
    /// daemon killed) and done again skips what it already added.
    pub applied: u64,
}

/// The tag of the copy on `cpu` of table entry `index` in harvest `sequence`: tags grow in the
/// order a harvest visits the copies (sequence, then entry, then CPU).
pub const fn harvest_tag(sequence: u32, index: u32, cpu: u32) -> u64 {
    ((sequence as u64) << 32) | ((index as u64) << 12) | (cpu as u64 & 0xfff)
}

/// How many entries of its table half a peer may use, from its position on.
pub const PEER_PROBES: u32 = 2;

/// The position of `key` in a table half of `half` entries (a power of two): its words folded
/// together and mixed with MurmurHash3's finaliser, so that every bit of the address reaches
/// the low bits (endpoints of one subnet differ only in their last bytes, which a plain
/// multiplication would carry only upwards).
pub const fn peer_position(key: &PeerKey, half: u32) -> u32 {
    let [a, b, c, d] = key.addr;
    let mut h = a ^ b.rotate_left(8) ^ c.rotate_left(16) ^ d.rotate_left(24);
    h ^= key.ifindex.wrapping_mul(0x9e37_79b1) ^ ((key.direction as u32) << 31);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h & half.wrapping_sub(1)
}

/// Index into [`PEER_CONTROL_MAP`](crate::PEER_CONTROL_MAP): which half of the peer table the
/// programs fill (0 or 1).
pub const PEER_CONTROL_LIVE: u32 = 0;
/// Index into [`PEER_CONTROL_MAP`](crate::PEER_CONTROL_MAP): the sequence number of the last
/// harvest begun.
pub const PEER_CONTROL_SEQUENCE: u32 = 1;
/// Index into [`PEER_CONTROL_MAP`](crate::PEER_CONTROL_MAP): 1 + the half being harvested, 0
/// when no harvest is under way.
pub const PEER_CONTROL_HARVESTING: u32 = 2;
/// Index into [`PEER_CONTROL_MAP`](crate::PEER_CONTROL_MAP): the last
/// [`Slot::generation`](crate::Slot::generation) given out (pinned with the maps, so a restarted
/// daemon never gives out one a removed device's peers still carry).
pub const PEER_CONTROL_GENERATION: u32 = 3;
/// Entries of [`PEER_CONTROL_MAP`](crate::PEER_CONTROL_MAP).
pub const PEER_CONTROL_ENTRIES: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn peer_positions_stay_in_the_half_and_spread() {
        let key = |last: u32, direction: u8| PeerKey {
            ifindex: 7,
            direction,
            family: PEER_IPV4,
            generation: 0,
            addr: [
                u32::from_be_bytes([10, 0, (last >> 8) as u8, last as u8]),
                0,
                0,
                0,
            ],
        };
        let positions: std::collections::BTreeSet<u32> =
            (0..256).map(|n| peer_position(&key(n, 0), 1024)).collect();
        assert!(positions.iter().all(|&p| p < 1024));
        // Consecutive node addresses do not pile up on few positions.
        assert!(positions.len() > 200, "{}", positions.len());
        assert_ne!(
            peer_position(&key(1, 0), 1024),
            peer_position(&key(1, 1), 1024)
        );
    }

    #[test]
    fn the_nodes_of_one_subnet_spread_over_the_half() {
        // Endpoints that differ only in their last byte, as the nodes of one underlay subnet
        // do (found by review: a plain multiplication put 254 of them on 4 positions of 1,024).
        for half in [16u32, 1024] {
            let positions: std::collections::BTreeSet<u32> = (1..=254u8)
                .map(|last| {
                    let key = PeerKey {
                        ifindex: 7,
                        direction: 0,
                        family: PEER_IPV4,
                        generation: 0,
                        addr: [u32::from_ne_bytes([10, 210, 0, last]), 0, 0, 0],
                    };
                    peer_position(&key, half)
                })
                .collect();
            let want = half.min(254) * 3 / 4;
            assert!(
                positions.len() as u32 >= want,
                "half {half}: {}",
                positions.len()
            );
        }
    }

    #[test]
    fn harvest_tags_grow_in_visiting_order() {
        assert!(harvest_tag(1, 0, 1) > harvest_tag(1, 0, 0));
        assert!(harvest_tag(1, 1, 0) > harvest_tag(1, 0, 4095));
        assert!(harvest_tag(2, 0, 0) > harvest_tag(1, 1023, 4095));
    }
}
