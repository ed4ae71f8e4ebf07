//! linkmeter's TC classifiers: count packets and bytes per (ifindex, direction).
//!
//! The programs only read `skb->ifindex` and `skb->len`, never touch packet data, and always
//! return `TC_ACT_UNSPEC` (`TCX_NEXT` under TCX), so the next program in the chain — or the
//! kernel's default action — decides the packet's fate exactly as if linkmeter were absent.
//!
//! Counters live in a per-CPU hash map whose capacity user space sets at load time. When it is
//! full, the packet is added to a one-slot overflow counter instead, so nothing goes missing
//! silently; the first overflow on each CPU is also logged through aya-log.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    macros::{classifier, map},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::TcContext,
};
use aya_log_ebpf::warn;
use collector_common::{Counter, CounterKey, DEFAULT_MAX_ENTRIES, Direction};

/// `EEXIST` as returned (negated) by `bpf_map_update_elem`.
const EEXIST: i32 = 17;

#[map(name = "LINKMETER_COUNTERS")]
static COUNTERS: PerCpuHashMap<CounterKey, Counter> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_ENTRIES, 0);

#[map(name = "LINKMETER_OVERFLOW")]
static OVERFLOW: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

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
    // SAFETY: `ctx.skb.skb` is the `__sk_buff` context pointer the kernel passed to this
    // program; TC programs may read `ifindex`, and the verifier checks the access.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let len = u64::from(ctx.len());
    let key = CounterKey::new(ifindex, direction);

    if add_to(COUNTERS.get_ptr_mut(key), len) {
        return;
    }
    let first = Counter {
        packets: 1,
        bytes: len,
    };
    match COUNTERS.insert(key, first, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        // Another CPU created the entry between our lookup and insert; our CPU's slot is zero.
        Err(err) if err == -EEXIST => {
            if !add_to(COUNTERS.get_ptr_mut(key), len) {
                overflow(ctx, ifindex, len);
            }
        }
        // -E2BIG: the map is full (or -ENOMEM): account the packet as overflow.
        Err(_) => overflow(ctx, ifindex, len),
    }
}

/// Adds one packet of `len` bytes to `slot`; `false` when there is no slot.
#[inline(always)]
fn add_to(slot: Option<*mut Counter>, len: u64) -> bool {
    match slot {
        Some(counter) => {
            // SAFETY: the pointer comes from a successful lookup in a per-CPU map, so it points
            // at this CPU's value, which only this CPU writes; BPF programs run with migration
            // disabled, so no other writer can interleave.
            unsafe {
                (*counter).packets = (*counter).packets.wrapping_add(1);
                (*counter).bytes = (*counter).bytes.wrapping_add(len);
            }
            true
        }
        None => false,
    }
}

#[inline(always)]
fn overflow(ctx: &TcContext, ifindex: u32, len: u64) {
    if let Some(counter) = OVERFLOW.get_ptr_mut(0) {
        // SAFETY: as in `add_to`: this CPU's slot of a per-CPU array, written only by this CPU.
        let first = unsafe { (*counter).packets == 0 };
        add_to(Some(counter), len);
        if first {
            warn!(
                ctx,
                "linkmeter counter map full: packets on ifindex {} counted as overflow", ifindex
            );
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
