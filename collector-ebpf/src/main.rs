//! linkmeter's TC classifiers (bin `linkmeter-tc`): the object that linkmeter loads. The
//! counting code is in `counter.rs`, shared with the benchmark's variant builds (`bin/variant-*`).
#![no_std]
#![no_main]

mod counter;
#[macro_use]
mod variant;

build!(variant::Variant::REAL);
