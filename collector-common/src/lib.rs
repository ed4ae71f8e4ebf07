//! Types shared by the linkmeter eBPF program (`collector-ebpf`) and user space (`collector`).
//!
//! Everything here is `no_std` and `#[repr(C)]`: the same bytes are written by the kernel side and
//! read by user space, so the layout is part of the contract between the two halves.
//!
//! # Byte definition
//!
//! [`Counter::bytes`] adds up `skb->len` as seen at the TC hook: the whole layer-2 frame including
//! its Ethernet header, without preamble or FCS. On veth and most physical NIC drivers this equals
//! the kernel's own `rx_bytes`/`tx_bytes`. On vxlan and geneve devices the kernel's counters leave
//! out the inner Ethernet header, so there the eBPF byte count is the kernel's plus 14 bytes per
//! packet ([`ETH_HLEN`]). linkmeter reports the TC definition everywhere rather than correcting
//! per device kind, so the same number always means the same thing.
#![cfg_attr(not(test), no_std)]

/// Length of an Ethernet header, the difference between TC bytes and the kernel's vxlan bytes.
pub const ETH_HLEN: u64 = 14;

/// Name of the per-CPU hash map that holds one [`Counter`] per [`CounterKey`].
pub const COUNTERS_MAP: &str = "LINKMETER_COUNTERS";
/// Name of the per-CPU array (one slot) that counts packets not counted because
/// [`COUNTERS_MAP`] was full.
pub const OVERFLOW_MAP: &str = "LINKMETER_OVERFLOW";
/// Name of the ingress TC program in the object.
pub const INGRESS_PROGRAM: &str = "linkmeter_ingress";
/// Name of the egress TC program in the object.
pub const EGRESS_PROGRAM: &str = "linkmeter_egress";
/// Capacity compiled into the object; user space overrides it at load time.
pub const DEFAULT_MAX_ENTRIES: u32 = 2048;

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

    /// Decodes the raw value stored in a [`CounterKey`].
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

/// Key of [`COUNTERS_MAP`]: one entry per interface and direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// `skb->ifindex`: the interface the program runs on.
    pub ifindex: u32,
    /// A [`Direction`] as `u32`.
    pub direction: u32,
}

impl CounterKey {
    /// Key for `ifindex` in `direction`.
    pub const fn new(ifindex: u32, direction: Direction) -> Self {
        Self {
            ifindex,
            direction: direction as u32,
        }
    }
}

/// Value of [`COUNTERS_MAP`] (per CPU) and of [`OVERFLOW_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets seen; a GSO/TSO super-packet counts once, as in the kernel's counters.
    pub packets: u64,
    /// Sum of `skb->len` (see the crate docs for the byte definition).
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
    // SAFETY: `CounterKey` is `#[repr(C)]`, `Copy`, has no padding (two `u32`) and every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for super::CounterKey {}
    // SAFETY: `Counter` is `#[repr(C)]`, `Copy`, has no padding (two `u64`) and every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Counter {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_round_trips_through_the_map_key() {
        for direction in Direction::ALL {
            let key = CounterKey::new(7, direction);
            assert_eq!(Direction::from_raw(key.direction), Some(direction));
        }
        assert_eq!(Direction::from_raw(2), None);
        assert_eq!(Direction::Ingress.as_rx_tx(), "rx");
        assert_eq!(Direction::Egress.as_rx_tx(), "tx");
    }

    #[test]
    fn counter_add_sums_and_wraps_like_the_kernel() {
        let mut total = Counter {
            packets: u64::MAX,
            bytes: 10,
        };
        total.add(&Counter {
            packets: 2,
            bytes: 5,
        });
        assert_eq!(
            total,
            Counter {
                packets: 1,
                bytes: 15
            }
        );
    }

    #[test]
    fn map_types_have_no_padding() {
        assert_eq!(core::mem::size_of::<CounterKey>(), 8);
        assert_eq!(core::mem::size_of::<Counter>(), 16);
    }
}
