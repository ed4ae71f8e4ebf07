//! Benchmark variant (`cargo xtask bench --only ebpf`): the counting programs up to
//! `Part::Stats`, slot from `SlotSource::Directory`. Never loaded by linkmeter.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
mod variant;

const VARIANT: variant::Variant = variant::Variant {
    last: variant::Part::Stats,
    slot: variant::SlotSource::Directory,
};

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
