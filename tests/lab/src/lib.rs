//! linkmeter's developer tooling, built on the integration tests' topologies:
//!
//! - [`lab`]: a Cilium-like node with traffic, linkmeter and a real Prometheus (`cargo xtask
//!   demo`, binary `linkmeter-lab`, and the end-to-end dashboard test);
//! - [`bench`]: measurement helpers of `cargo xtask bench` (binary `linkmeter-bench`).

pub mod bench;
pub mod lab;
