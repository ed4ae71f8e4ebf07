//! The directory: where the statistics of each attached interface are.

use crate::Direction;

/// The `probe`-th directory position of `ifindex` in a directory of `mask + 1` (a power of
/// two) entries: linear probing from a multiplicative hash, so that the dense runs of
/// consecutive ifindexes do not pile up where a later ifindex starts probing.
pub const fn directory_position(ifindex: u32, probe: u32, mask: u32) -> u32 {
    ifindex.wrapping_mul(0x9e37_79b1).wrapping_add(probe) & mask
}

/// The index into [`STATS_MAP`](crate::STATS_MAP) of `slot` in `direction`.
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
    /// [`SLOT_TUNNEL`](crate::SLOT_TUNNEL), [`SLOT_RAW_IP`](crate::SLOT_RAW_IP).
    pub flags: u32,
    /// The attachment's generation, given out by user space from
    /// [`PEER_CONTROL_GENERATION`](crate::PEER_CONTROL_GENERATION) when the slot is taken; the
    /// program copies it into each [`PeerKey`](crate::PeerKey), so that the peers of a removed
    /// device are never counted under a later device with the same ifindex.
    pub generation: u16,
    /// Zero.
    pub reserved: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
