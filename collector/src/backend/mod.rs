//! Statistics backends: [`ethtool`] (driver statistics) and the kernel's link statistics
//! ([`netdev`]); the eBPF backend is [`crate::ebpf`].

pub mod ethtool;
pub mod netdev;
