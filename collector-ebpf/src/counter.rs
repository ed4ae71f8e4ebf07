//! linkmeter's TC classifiers: per interface and direction, packets and bytes, the protocol mix,
//! TCP flags and packet sizes; on external-mode tunnel devices, packets and bytes per remote
//! tunnel endpoint.
//!
//! The programs never write to a packet and always return `TC_ACT_UNSPEC` (`TCX_NEXT` under
//! TCX), so the next program in the chain — or the kernel's default action — decides the
//! packet's fate exactly as if linkmeter were absent. Parsing is bounded: at most one VLAN tag,
//! no IPv6 extension headers, no loops.
//!
//! The hot path takes no hash lookup: the interface's slot is found in a plain array (the
//! directory, filled by user space) and its counters live in a per-CPU array; the verifier
//! inlines both lookups (per-CPU arrays since Linux 6.10, on JITs with per-CPU instructions).
//! Tunnel devices also count per peer, in a per-CPU array as well (the peer table): a CPU claims
//! a free entry of its own copy with plain stores, so no compare-and-swap is needed; a peer
//! whose probed entries hold other peers is counted in a per-CPU hash instead. Packets of an
//! interface without a slot, and of a peer that finds the hash full, go to overflow counters,
//! so nothing goes missing silently.
use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{classifier, map},
    maps::{Array, PerCpuArray},
    programs::TcContext,
};
use aya_log_ebpf::warn;

use crate::variant::{Part, SlotSource};

#[path = "parse.rs"]
mod parse;
#[path = "peer.rs"]
mod peer;
use collector_common::{
    Counter, DEFAULT_DIRECTORY_ENTRIES, DEFAULT_STATS_ENTRIES, DIRECTORY_PROBES, Direction,
    OVERFLOW_ENTRIES, OVERFLOW_INTERFACES, OVERFLOW_PEERS, Protocol, SLOT_TUNNEL, Slot, Stats,
    directory_position, size_bucket, stats_index,
};
use parse::{Class, classify};
use peer::count_peer;

/// The directory's size minus one (a power of two minus one); set by user space at load time.
#[unsafe(no_mangle)]
static DIRECTORY_MASK: u32 = DEFAULT_DIRECTORY_ENTRIES - 1;

/// The slot index of a program instance loaded for one interface (variant builds only).
#[unsafe(no_mangle)]
static SLOT_INDEX: u32 = 0;

/// The slot flags of a program instance loaded for one interface (variant builds only).
#[unsafe(no_mangle)]
static SLOT_FLAGS: u32 = 0;

#[map(name = "LINKMETER_DIRECTORY")]
static DIRECTORY: Array<Slot> = Array::with_max_entries(DEFAULT_DIRECTORY_ENTRIES, 0);

#[map(name = "LINKMETER_STATS")]
static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(DEFAULT_STATS_ENTRIES, 0);

#[map(name = "LINKMETER_OVERFLOW")]
static OVERFLOW: PerCpuArray<Counter> = PerCpuArray::with_max_entries(OVERFLOW_ENTRIES, 0);

/// Counts packets received by the interface it is attached to.
#[classifier]
pub fn linkmeter_ingress(ctx: TcContext) -> i32 {
    count(&ctx, Direction::Ingress);
    TC_ACT_UNSPEC
}

/// Counts packets transmitted by the interface it is attached to.
#[classifier]
pub fn linkmeter_egress(ctx: TcContext) -> i32 {
    count(&ctx, Direction::Egress);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext, direction: Direction) {
    let variant = crate::VARIANT;
    // SAFETY: `ctx.skb.skb` is the `__sk_buff` context pointer the kernel passed to this
    // program; TC programs may read `ifindex`, and the verifier checks the access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if variant.upgrade {
        core::hint::black_box(ifindex);
    }
    if !variant.does(Part::Slot) {
        core::hint::black_box(ifindex);
        return;
    }
    let len = ctx.len();
    let slot = match variant.slot {
        SlotSource::Directory => find_slot(ifindex),
        SlotSource::Indexed => DIRECTORY.get(ifindex).copied(),
        SlotSource::Constant => Some(constant_slot(ifindex)),
    };
    let Some(slot) = slot else {
        overflow(ctx, OVERFLOW_INTERFACES, ifindex, len);
        return;
    };
    if !variant.does(Part::Stats) {
        core::hint::black_box(slot.index);
        return;
    }
    let Some(stats) = STATS.get_ptr_mut(stats_index(slot.index, direction)) else {
        overflow(ctx, OVERFLOW_INTERFACES, ifindex, len);
        return;
    };
    let class = if variant.does(Part::Parse) {
        classify(ctx, slot.flags)
    } else {
        Class {
            protocol: Protocol::Other,
            tcp_flag: None,
        }
    };
    // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so it points at this
    // CPU's value, which only this CPU writes; BPF programs run with migration disabled, so no
    // other writer can interleave.
    unsafe {
        let stats = &mut *stats;
        if !variant.does(Part::Increments) {
            let counter = &mut stats.protocols[Protocol::Other as usize];
            counter.packets = counter.packets.wrapping_add(1);
            return;
        }
        if let Some(n) = stats.sizes.get_mut(size_bucket(len)) {
            *n = n.wrapping_add(1);
        }
        if let Some(counter) = stats.protocols.get_mut(class.protocol as usize) {
            counter.packets = counter.packets.wrapping_add(1);
            counter.bytes = counter.bytes.wrapping_add(u64::from(len));
        }
        if let Some(flag) = class.tcp_flag
            && let Some(n) = stats.tcp_flags.get_mut(flag as usize)
        {
            *n = n.wrapping_add(1);
        }
    }
    if variant.does(Part::TunnelKey) && slot.flags & SLOT_TUNNEL != 0 {
        count_peer(ctx, ifindex, slot.generation, direction, len);
    }
}

/// The slot of a program instance loaded for one interface: its index and flags are load-time
/// constants in `.rodata`, which the verifier sees (the map is frozen), so it prunes the
/// branches the flags rule out.
#[inline(always)]
fn constant_slot(ifindex: u32) -> Slot {
    // SAFETY: plain reads of `u32` globals; `read_volatile` keeps the compiler from folding the
    // compiled-in defaults, since user space sets the real values at load time.
    let (index, flags) = unsafe {
        (
            core::ptr::read_volatile(&SLOT_INDEX),
            core::ptr::read_volatile(&SLOT_FLAGS),
        )
    };
    Slot {
        ifindex,
        index,
        flags,
        generation: 0,
        reserved: 0,
    }
}

/// The directory entry of `ifindex`: at most [`DIRECTORY_PROBES`] array lookups.
#[inline(always)]
fn find_slot(ifindex: u32) -> Option<Slot> {
    // SAFETY: a plain read of a `u32` global; `read_volatile` keeps the compiler from folding
    // the compiled-in default, since user space sets the real value at load time.
    let mask = unsafe { core::ptr::read_volatile(&DIRECTORY_MASK) };
    let mut probe = 0;
    while probe < DIRECTORY_PROBES {
        if let Some(entry) = DIRECTORY.get(directory_position(ifindex, probe, mask))
            && entry.ifindex == ifindex
        {
            return Some(*entry);
        }
        probe += 1;
    }
    None
}

/// Adds one packet of `len` bytes to `slot`; `false` when there is no slot.
#[inline(always)]
fn add_to(slot: Option<*mut Counter>, len: u32) -> bool {
    match slot {
        Some(counter) => {
            // SAFETY: the pointer comes from a successful lookup in a per-CPU map, so it points
            // at this CPU's value, which only this CPU writes.
            unsafe {
                (*counter).packets = (*counter).packets.wrapping_add(1);
                (*counter).bytes = (*counter).bytes.wrapping_add(u64::from(len));
            }
            true
        }
        None => false,
    }
}

/// Counts the packet as overflow; the first on each CPU is also logged through aya-log.
#[inline(always)]
fn overflow(ctx: &TcContext, index: u32, ifindex: u32, len: u32) {
    if let Some(counter) = OVERFLOW.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array, written only by this CPU.
        let first = unsafe { (*counter).packets == 0 };
        add_to(Some(counter), len);
        if first {
            if index == OVERFLOW_PEERS {
                warn!(
                    ctx,
                    "linkmeter peer map full: packets on ifindex {} counted as overflow", ifindex
                );
            } else {
                warn!(
                    ctx,
                    "linkmeter: ifindex {} has no counter slot: packets counted as overflow",
                    ifindex
                );
            }
        }
    }
}
