//! linkmeter's TC classifiers (bin `linkmeter-tc`): the object that linkmeter loads. The
//! counting code is in `counter.rs`, shared with the benchmark's variant builds (`bin/variant-*`).
#![no_std]
#![no_main]

mod counter;
mod variant;

/// The real program: every part.
const VARIANT: variant::Variant = variant::Variant::REAL;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
