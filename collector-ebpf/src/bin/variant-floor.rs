//! Benchmark variant (`cargo xtask bench --only ebpf`): the cheapest counter this design can
//! be, a floor for the others — the slot from `SlotSource::Constant` (no directory), the
//! per-CPU statistics lookup and one increment (`Part::Stats`). Never loaded by linkmeter.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
#[macro_use]
mod variant;

build!(variant::Variant {
    last: variant::Part::Stats,
    slot: variant::SlotSource::Constant,
    ..variant::Variant::REAL
});
