//! linkmeter: per-interface network statistics for Kubernetes nodes.
//!
//! Every interface is routed to the statistics backend that works for it: ethtool driver
//! statistics for physical NICs, an eBPF TC counter for virtual interfaces that reject ethtool
//! (Cilium's `cilium_vxlan`, `cilium_geneve`, ...), and kernel link statistics for all.
//!
//! # Layout
//!
//! - [`ebpf`]: load the TC counting programs, attach/detach them (TCX or legacy tc), read the
//!   per-CPU counters.
//! - [`watch`]: the `linkmeter watch` command, a terminal view of eBPF counts next to the
//!   kernel's own counters.

pub mod backend;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod ebpf;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod watch;
