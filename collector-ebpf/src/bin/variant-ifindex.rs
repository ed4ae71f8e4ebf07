//! Benchmark variant (`cargo xtask bench --only ebpf`): the counting programs up to
//! `Part::Ifindex`, slot from `SlotSource::Directory`. Never loaded by linkmeter.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
#[macro_use]
mod variant;

build!(variant::Variant {
    last: variant::Part::Ifindex,
    slot: variant::SlotSource::Directory,
    ..variant::Variant::REAL
});
