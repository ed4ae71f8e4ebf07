//! Every build `cargo xtask bench --only ebpf` measures (the variant builds of the counting
//! programs, and the real one) passes this kernel's verifier with either slot kind, so a
//! change to the counting code cannot break the per-packet benchmark unnoticed.

use collector_common::{SLOT_RAW_IP, SLOT_TUNNEL};
use integration_tests::{
    kernel_tests_enabled,
    variants::{BUILDS, Build},
};

#[test]
fn every_benchmark_build_passes_the_verifier() {
    if !kernel_tests_enabled() {
        return;
    }
    for (name, _) in &BUILDS {
        for flags in [0, SLOT_TUNNEL, SLOT_RAW_IP] {
            drop(Build::load(name, 1, flags));
        }
    }
}
