//! The configuration file as written: every key optional, unknown keys an error.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to serve metrics on, `IP:PORT`.
    pub listen: Option<String>,
    /// Interface patterns to monitor; empty or absent means all.
    pub include: Option<Vec<String>>,
    /// Interface patterns never monitored; checked first.
    pub exclude: Option<Vec<String>>,
    /// Forced backends as `"PATTERN=BACKEND"` (`ethtool`, `ebpf`, `netdev`, `none`); the first
    /// matching entry wins.
    pub overrides: Option<Vec<String>>,
    /// TC attach mode: `auto` (TCX on Linux >= 6.6, else legacy tc), `tcx` or `tc`.
    pub attach_mode: Option<String>,
    /// How many interfaces the eBPF counter can be attached to at once ([`MAX_INTERFACES`](super::MAX_INTERFACES)).
    pub max_interfaces: Option<u32>,
    /// Capacity of the peer map ([`MAX_PEERS`](super::MAX_PEERS)).
    pub max_peers: Option<u32>,
    /// Seconds after which a peer not seen leaves the map and `/metrics`.
    pub peer_idle_seconds: Option<u64>,
    /// Interface patterns that get the eBPF counter besides their routed backend (for the
    /// protocol mix, TCP flags and packet sizes). Default: none.
    pub breakdown: Option<Vec<String>>,
    /// Seconds between full re-discoveries that repair missed link events and re-attach
    /// removed programs.
    pub resync_interval_seconds: Option<u64>,
    /// Regex on driver stat names exported as `linkmeter_ethtool_stat`.
    pub ethtool_stats_allowlist: Option<String>,
    /// Interface patterns whose raw driver statistics are exported as `linkmeter_ethtool_stat`
    /// (`DEFAULT_ETHTOOL_STATS_INTERFACES`: interfaces without a link kind, i.e. devices).
    pub ethtool_stats_interfaces: Option<Vec<String>>,
    /// Count dropped packets per interface and kernel drop reason (default: true).
    pub drop_reasons: Option<bool>,
    /// Zones of overlay peers as `"CIDR=ZONE"` (IPv4 or IPv6; the longest prefix wins).
    pub peer_zones: Option<Vec<String>>,
    /// This node's zone.
    pub node_zone: Option<String>,
    /// Overlay series in `/metrics`: `zone`, `peer` or `both` (default: `zone` with
    /// `peer_zones`, `peer` without).
    pub overlay_series: Option<String>,
    /// Pin the eBPF maps and links under `pin_path`, so that counting goes on while no daemon
    /// runs and a restarted or upgraded daemon continues the same counters.
    pub pin: Option<bool>,
    /// Directory on a BPF filesystem for `pin`.
    pub pin_path: Option<PathBuf>,
    /// Receive buffer of the link-event socket, in bytes. Events beyond it are lost and
    /// repaired by an immediate resync (`linkmeter_netlink_resyncs_total{reason="events_lost"}`).
    pub event_buffer_bytes: Option<u32>,
    /// The exporter-toolkit web configuration file (TLS, basic auth, response headers); none:
    /// plain HTTP without authentication.
    pub web_config_file: Option<PathBuf>,
    /// Seconds for a TLS handshake, a request header, and an idle kept-alive connection.
    pub http_header_timeout_seconds: Option<u64>,
    /// Seconds to answer a request (then 503).
    pub http_request_timeout_seconds: Option<u64>,
    /// Connections kept at once; at the cap the oldest idle one is closed for a new one.
    pub http_max_connections: Option<u32>,
    /// Seconds in-flight requests get at shutdown before their connections are closed.
    pub http_shutdown_timeout_seconds: Option<u64>,
    /// `human` or `json`.
    pub log_format: Option<LogFormat>,
}

impl FileConfig {
    /// Parses TOML text; `path` is only used in messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for bad TOML, unknown keys or wrong types.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }
}
