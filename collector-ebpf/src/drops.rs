//! linkmeter's drop-reason counter (bin `linkmeter-drops`): a BTF tracing program on the
//! `skb:kfree_skb` tracepoint that counts every dropped packet by its device and the kernel's
//! drop reason.
//!
//! It fires on every `kfree_skb`, so it filters before anything else: a reason that is not a
//! drop (`SKB_NOT_DROPPED_YET`, `SKB_CONSUMED`) returns at once, then a packet without a device,
//! then one whose device is in another network namespace (ifindexes repeat across namespaces).
//! What is left is one per-CPU hash lookup and an increment; a pair that finds the hash full is
//! counted as overflow. The program only reads: a tracing program cannot change the packet's
//! fate.
//!
//! aya's Rust programs carry no CO-RE relocations, so the offsets of the kernel fields read
//! here (`sk_buff.dev`, `net_device.ifindex`, `net_device.nd_net`, `net.ns.inum`) are globals
//! that user space sets at load time from the running kernel's BTF, as are the namespace to
//! count and the two reason values that are not drops. The tracepoint's arguments are the
//! skb (0) and the reason (2); user space checks the tracepoint's prototype in BTF first.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use collector_common::{
    DropKey,
    drops::{DROP_ENTRIES, DROP_OVERFLOW, DROP_STATS_ENTRIES},
};

/// Offset of `dev` in `struct sk_buff` (set at load time).
#[unsafe(no_mangle)]
static SKB_DEV: u32 = 16;
/// Offset of `ifindex` in `struct net_device` (set at load time).
#[unsafe(no_mangle)]
static DEV_IFINDEX: u32 = 0;
/// Offset of `nd_net.net` in `struct net_device` (set at load time).
#[unsafe(no_mangle)]
static DEV_NET: u32 = 0;
/// Offset of `ns.inum` in `struct net` (set at load time).
#[unsafe(no_mangle)]
static NET_INUM: u32 = 0;
/// The inode number of the network namespace counted (set at load time).
#[unsafe(no_mangle)]
static NETNS_INUM: u32 = 0;
/// `SKB_NOT_DROPPED_YET` (set at load time).
#[unsafe(no_mangle)]
static REASON_NOT_DROPPED: u32 = 0;
/// `SKB_CONSUMED` (set at load time).
#[unsafe(no_mangle)]
static REASON_CONSUMED: u32 = 1;

#[map(name = "LINKMETER_DROPS")]
static DROPS: PerCpuHashMap<DropKey, u64> = PerCpuHashMap::with_max_entries(DROP_ENTRIES, 0);

#[map(name = "LINKMETER_DROP_STATS")]
static DROP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_STATS_ENTRIES, 0);

/// Counts a dropped packet by device and reason; lets everything else go by.
#[btf_tracepoint(function = "kfree_skb")]
pub fn linkmeter_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    count(&ctx);
    0
}

/// A `u32` global as user space set it: `read_volatile` keeps the compiler from folding the
/// value compiled in.
macro_rules! global {
    ($name:ident) => {
        // SAFETY: a plain read of a `u32` global of this object.
        unsafe { core::ptr::read_volatile(&$name) }
    };
}

#[inline(always)]
fn count(ctx: &BtfTracePointContext) {
    // The tracepoint's third argument, an `enum skb_drop_reason` (a 32-bit value).
    let reason = ctx.arg::<u64>(2) as u32;
    if reason == global!(REASON_NOT_DROPPED) || reason == global!(REASON_CONSUMED) {
        return;
    }
    // Freed without a readable device, left out: no interface to put it on and no namespace to
    // tell it by. That is `dev == NULL`, and also a datagram in a UDP socket's queue, whose
    // `dev` field holds other data (`dev_scratch`): reading through it fails, or finds no
    // namespace of ours.
    let skb = ctx.arg::<u64>(0);
    let Some(dev) = read::<u64>(skb, global!(SKB_DEV)).filter(|dev| *dev != 0) else {
        return;
    };
    let Some(net) = read::<u64>(dev, global!(DEV_NET)) else {
        return;
    };
    if read::<u32>(net, global!(NET_INUM)) != Some(global!(NETNS_INUM)) {
        return;
    }
    let Some(ifindex) = read::<u32>(dev, global!(DEV_IFINDEX)) else {
        return;
    };
    let key = DropKey { ifindex, reason };
    if let Some(value) = DROPS.get_ptr_mut(key) {
        // SAFETY: the pointer comes from a successful lookup in a per-CPU hash: this CPU's value,
        // written only by this CPU; BPF programs run with migration disabled.
        unsafe { *value += 1 };
        return;
    }
    // A new pair: this CPU's value is set to 1 and the other CPUs' to 0. Another CPU may have
    // inserted it meanwhile (EEXIST): then add to this CPU's share of it.
    if DROPS.insert(key, 1, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    match DROPS.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(value) => unsafe { *value += 1 },
        None => bump(DROP_OVERFLOW),
    }
}

/// Reads a `T` at `base + offset` of kernel memory.
#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Option<T> {
    let at = base.wrapping_add(u64::from(offset)) as *const T;
    // SAFETY: `bpf_probe_read_kernel` reads kernel memory safely: a bad address makes it fail
    // (and zero the destination), never fault.
    unsafe { bpf_probe_read_kernel(at) }.ok()
}

/// Counts one event in the program's own counters.
#[inline(always)]
fn bump(index: u32) {
    if let Some(value) = DROP_STATS.get_ptr_mut(index) {
        // SAFETY: a successful lookup in a per-CPU array: this CPU's value, written only by it.
        unsafe { *value += 1 };
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// GPL-compatible: `bpf_probe_read_kernel` is a GPL-only helper.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
