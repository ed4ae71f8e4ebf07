//! Traffic per remote tunnel endpoint: the key of the peer map.

/// [`PeerKey::family`] of a packet without a tunnel key.
pub const PEER_NONE: u8 = 0;
/// [`PeerKey::family`] of an IPv4 tunnel endpoint.
pub const PEER_IPV4: u8 = 4;
/// [`PeerKey::family`] of an IPv6 tunnel endpoint.
pub const PEER_IPV6: u8 = 6;

/// Key of [`PEERS_MAP`](crate::PEERS_MAP): an interface, a direction and the remote tunnel endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// The tunnel device.
    pub ifindex: u32,
    /// A [`Direction`](crate::Direction) as `u8`.
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
}
