//! The statistics backends that read the kernel for the node: [`ethtool`] (driver statistics),
//! [`ebpf`] (the TC counter) and [`drops`] (drops by kernel drop reason, a tracing program).
//! Kernel link statistics come with the link dump (`discovery`).
//!
//! Backends only read and attach: they never decide what an interface is routed to and never
//! write the snapshot `/metrics` shows. The node collects through them (`node::collect`).

pub mod drops;
pub mod ebpf;
pub mod ethtool;
