//! Benchmark variant (`cargo xtask bench --only ebpf`): the counting programs up to
//! `Part::Peers`, slot from `SlotSource::Constant`. Never loaded by linkmeter.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
#[macro_use]
mod variant;

build!(variant::Variant {
    last: variant::Part::Peers,
    slot: variant::SlotSource::Constant,
    ..variant::Variant::REAL
});
