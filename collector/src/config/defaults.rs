//! Every default and limit of the configuration, defined once. The eBPF maps' capacities
//! are the loader's (`backend::ebpf`), re-exported here with the others.

use std::ops::RangeInclusive;

pub use crate::backend::ebpf::{
    DEFAULT_MAX_INTERFACES, DEFAULT_MAX_PEERS, MAX_INTERFACES, MAX_PEERS,
};

/// Default of `listen`.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:9977";
/// Default of `exclude`.
pub(crate) const DEFAULT_EXCLUDE: &[&str] = &["lo"];
/// Default of `drop_reasons`.
pub(crate) const DEFAULT_DROP_REASONS: bool = true;
/// Default of `peer_idle_seconds`: a peer not seen for this long leaves the map and `/metrics`.
pub(crate) const DEFAULT_PEER_IDLE_SECONDS: u64 = 900;
/// Accepted values of `peer_idle_seconds`.
pub(crate) const PEER_IDLE_SECONDS: RangeInclusive<u64> = 1..=7 * 86_400;
/// Default of `resync_interval_seconds`.
pub(crate) const DEFAULT_RESYNC_SECONDS: u64 = 60;
/// Accepted values of `resync_interval_seconds`.
pub(crate) const RESYNC_SECONDS: RangeInclusive<u64> = 1..=86_400;
/// Default of `event_buffer_bytes`: room for the link events of a few thousand interfaces
/// changing at once.
pub(crate) const DEFAULT_EVENT_BUFFER_BYTES: u32 = 4 << 20;
/// Accepted values of `event_buffer_bytes` (the kernel doubles it and enforces a minimum).
pub(crate) const EVENT_BUFFER_BYTES: RangeInclusive<u32> = 1024..=1 << 30;
/// Default of `ethtool_stats_interfaces`: interfaces without a link kind — physical NICs,
/// SR-IOV VFs, virtio — and not veths, bridges or tunnels, whose per-queue counters nobody
/// graphs (10 series per veth: 1,100 on a 110-pod node).
pub(crate) const DEFAULT_ETHTOOL_STATS_INTERFACES: &[&str] = &["kind:"];
/// Default of `http_header_timeout_seconds`: time for a TLS handshake, a request header, and
/// an idle kept-alive connection.
pub(crate) const DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS: u64 = 10;
/// Default of `http_request_timeout_seconds`.
pub(crate) const DEFAULT_HTTP_REQUEST_TIMEOUT_SECONDS: u64 = 30;
/// Accepted values of the HTTP timeouts.
pub(crate) const HTTP_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3_600;
/// Default of `http_max_connections`.
pub(crate) const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 256;
/// Accepted values of `http_max_connections`.
pub(crate) const HTTP_MAX_CONNECTIONS: RangeInclusive<u32> = 1..=65_536;
/// Default of `http_shutdown_timeout_seconds`: well within the DaemonSet's termination grace
/// period of 10 s, which must also cover detaching the eBPF programs.
pub(crate) const DEFAULT_HTTP_SHUTDOWN_TIMEOUT_SECONDS: u64 = 3;
/// Accepted values of `http_shutdown_timeout_seconds`.
pub(crate) const HTTP_SHUTDOWN_TIMEOUT_SECONDS: RangeInclusive<u64> = 0..=600;
/// Default of `ethtool_stats_allowlist`: every driver statistic.
pub(crate) const DEFAULT_ETHTOOL_STATS_ALLOWLIST: &str = ".*";
