//! What a build of the counting programs does. The real program does every part; the
//! benchmark's variant builds (`bin/variant-*.rs`, loaded only by `cargo xtask bench`) stop after
//! a part, or take the interface's slot from load-time constants, so that the cost of each part
//! is the difference between two builds measured in the same run.

#![allow(
    dead_code,
    reason = "each build uses some of the parts and slot sources"
)]

/// The parts of the per-packet work, in the order the program does them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Reading `skb->ifindex`.
    Ifindex = 0,
    /// Finding the interface's slot.
    Slot = 1,
    /// The per-CPU statistics lookup and one increment.
    Stats = 2,
    /// The other increments (sizes, bytes), with every packet counted as protocol "other".
    Increments = 3,
    /// Parsing the headers (protocol, TCP flags): the whole breakdown.
    Parse = 4,
    /// Tunnel devices: reading the tunnel key.
    TunnelKey = 5,
    /// Tunnel devices: counting per peer.
    Peers = 6,
}

/// Where the interface's slot comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SlotSource {
    /// The directory: an array that user space fills, probed by `skb->ifindex`.
    Directory,
    /// The directory indexed by `skb->ifindex` itself: one array lookup, no probing (the
    /// fallback of one instance per interface; interfaces above the array's size would need
    /// the probed directory besides).
    Indexed,
    /// Load-time constants (`SLOT_INDEX`, `SLOT_FLAGS` in `.rodata`): what one program instance
    /// per interface would do.
    Constant,
}

/// One build of the counting programs.
#[derive(Clone, Copy)]
pub struct Variant {
    /// The last part done; the program returns after it.
    pub last: Part,
    /// Where the slot comes from.
    pub slot: SlotSource,
    /// A build of the real program whose instructions differ by one harmless stack store:
    /// what an upgrade loads (the upgrade test, over the same map layout).
    pub upgrade: bool,
}

impl Variant {
    /// What linkmeter loads.
    #[allow(dead_code)] // Used by the real program only, not by every variant build.
    pub const REAL: Self = Self {
        last: Part::Peers,
        slot: SlotSource::Directory,
        upgrade: false,
    };

    /// Whether this build does `part`.
    #[inline(always)]
    pub const fn does(self, part: Part) -> bool {
        part as u8 <= self.last as u8
    }
}

/// The root items of a build of the counting programs: its [`Variant`] (`VARIANT`, which
/// `counter.rs` reads), the panic handler and the license.
macro_rules! build {
    ($variant:expr) => {
        /// What this build does.
        const VARIANT: variant::Variant = $variant;

        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
