//! Benchmark variant (`cargo xtask bench --only drop_storm`): an empty program on the same
//! `kfree_skb` tracepoint as `linkmeter-drops`, the baseline its cost per event is net of.
//! Never loaded by linkmeter.
#![no_std]
#![no_main]

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

/// Does nothing: the cost of the tracepoint's call into a BPF program alone.
#[btf_tracepoint(function = "kfree_skb")]
pub fn linkmeter_kfree_skb(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
