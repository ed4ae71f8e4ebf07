//! TC programs used only by the integration tests, to prove that linkmeter coexists with other
//! programs on the same hook:
//!
//! - `observer_*` counts packets per hook and continues (`TC_ACT_UNSPEC`), like a second
//!   independent tool;
//! - `chain_end_*` counts packets per hook and ends the chain with `TC_ACT_OK`, like Cilium's
//!   programs do;
//! - `noop_*` does nothing and continues: the baseline of the per-packet cost benchmark.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_UNSPEC},
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};

/// Packets seen by the observer: slot 0 ingress, slot 1 egress.
#[map(name = "OBSERVER_PACKETS")]
static OBSERVER_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Packets seen by the chain-ending program: slot 0 ingress, slot 1 egress.
#[map(name = "CHAIN_END_PACKETS")]
static CHAIN_END_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, slot: u32) {
    if let Some(value) = map.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot of a per-CPU array; only this CPU writes it.
        unsafe { *value += 1 };
    }
}

#[classifier]
pub fn observer_ingress(_ctx: TcContext) -> i32 {
    bump(&OBSERVER_PACKETS, 0);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn observer_egress(_ctx: TcContext) -> i32 {
    bump(&OBSERVER_PACKETS, 1);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn chain_end_ingress(_ctx: TcContext) -> i32 {
    bump(&CHAIN_END_PACKETS, 0);
    TC_ACT_OK
}

#[classifier]
pub fn chain_end_egress(_ctx: TcContext) -> i32 {
    bump(&CHAIN_END_PACKETS, 1);
    TC_ACT_OK
}

#[classifier]
pub fn noop_ingress(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[classifier]
pub fn noop_egress(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
