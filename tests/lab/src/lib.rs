//! linkmeter's developer tooling, built on the integration tests' topologies:
//!
//! - [`lab`]: a Cilium-like node with traffic, linkmeter and a real Prometheus (`cargo xtask
//!   demo`, binary `linkmeter-lab`, and the end-to-end dashboard test);
//! - [`attach`]: how soon a new interface is counted, and attaching a large node at start;
//! - [`bench`]: measurement helpers of `cargo xtask bench` (binary `linkmeter-bench`);
//! - [`ebpf_cost`]: the per-packet cost scenario, with the variant builds' per-part table;
//! - [`drop_storm`]: a storm of `no_socket` drops with and without the drop-reason counter,
//!   and its cost per `kfree_skb` event;
//! - [`overlay_scale`]: `/metrics` of a tunnel device with thousands of peers, per zone and per
//!   peer;
//! - [`test_run`]: `BPF_PROG_TEST_RUN`, the noise-free per-run cost of a program.

pub mod attach;
pub mod bench;
pub mod drop_storm;
pub mod ebpf_cost;
pub mod lab;
pub mod overlay_scale;
pub mod soak;
pub mod test_run;
