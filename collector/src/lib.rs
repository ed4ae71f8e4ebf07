//! linkmeter: per-interface network statistics for Kubernetes nodes.
//!
//! Every interface is routed to the statistics backend that works for it: ethtool driver
//! statistics for physical NICs, an eBPF TC counter for virtual interfaces that reject ethtool
//! (Cilium's `cilium_vxlan`, `cilium_geneve`, ...), and kernel link statistics for all. The
//! results are merged into one Prometheus / OpenMetrics endpoint.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, flags and environment of `linkmeter run`, validated.
//! - [`discovery`]: rtnetlink link dumps and link events.
//! - [`filter`] and [`policy`]: interface patterns and the pure routing decision.
//! - [`backend`]: ethtool (`SIOCETHTOOL`, link modes over genetlink) and kernel link stats.
//! - [`ebpf`]: load the TC counting programs, attach/detach them (TCX or legacy tc), read the
//!   per-CPU counters.
//! - [`node`]: the node's interfaces, their routes and attachments; collection into a snapshot.
//! - [`metrics`]: metric names, the snapshot and its prometheus-client collector.
//! - [`http`] and [`daemon`]: the endpoints and the `linkmeter run` loop (events, resync,
//!   shutdown).
//! - [`cli`]: the command line, one file per subcommand (`run`, `list`, `check`, `dump`,
//!   `watch`, `completions`).

pub mod backend;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod ebpf;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod node;
pub mod policy;
