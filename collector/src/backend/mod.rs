//! The statistics backends that read the kernel for the node: [`ethtool`] (driver statistics)
//! and [`ebpf`] (the TC counter). Kernel link statistics come with the link dump
//! (`discovery`).
//!
//! Backends only read and attach: they never decide what an interface is routed to and never
//! write the snapshot `/metrics` shows. The node collects through them (`node::collect`).

pub mod ebpf;
pub mod ethtool;
