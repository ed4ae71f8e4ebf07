//! Test build (`tests/tests/upgrade.rs`): the real counting programs, their instructions
//! changed by one harmless stack store — a later linkmeter's programs over the same map
//! layout, which an upgraded daemon puts on the pinned hooks. Never loaded by linkmeter.
#![no_std]
#![no_main]

#[path = "../counter.rs"]
mod counter;
#[path = "../variant.rs"]
#[macro_use]
mod variant;

build!(variant::Variant {
    upgrade: true,
    ..variant::Variant::REAL
});
