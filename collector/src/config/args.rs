//! The flags (and environment variables) of the configuration keys. They are kept as given and
//! validated together with the file by [`super::Config::build`], so a bad value is reported
//! with its key whichever way it came in. The `[default: …]` texts are checked against the
//! constants of [`super`] by a unit test.

use std::path::PathBuf;

use super::{FileConfig, LogFormat};

/// Flags (and environment variables) that decide routing, shared by `run`, `list`, `check`
/// and `dump`. Unset ones fall back to the file, then to the defaults.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct PolicyArgs {
    /// TOML configuration file (keys as the long flags, with `_`; see README).
    #[arg(long, env = "LINKMETER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface pattern to monitor, repeatable or comma-separated [default: all].
    #[arg(
        long,
        env = "LINKMETER_INCLUDE",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub include: Option<Vec<String>>,
    /// Interface pattern never monitored, repeatable or comma-separated [default: lo].
    #[arg(
        long,
        env = "LINKMETER_EXCLUDE",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub exclude: Option<Vec<String>>,
    /// Force a backend: PATTERN=ethtool|ebpf|netdev|none, repeatable or comma-separated.
    #[arg(
        long = "override",
        env = "LINKMETER_OVERRIDES",
        value_delimiter = ',',
        value_name = "PATTERN=BACKEND"
    )]
    pub overrides: Option<Vec<String>>,
    /// TC attach mode: auto, tcx or tc [default: auto].
    #[arg(long, env = "LINKMETER_ATTACH_MODE", value_name = "MODE")]
    pub attach_mode: Option<String>,
    /// How many interfaces the eBPF counter can be attached to at once [default: 256].
    #[arg(long, env = "LINKMETER_MAX_INTERFACES", value_name = "N")]
    pub max_interfaces: Option<u32>,
    /// eBPF peer map capacity, in (tunnel device, direction, remote endpoint) entries
    /// [default: 10240].
    #[arg(long, env = "LINKMETER_MAX_PEERS", value_name = "N")]
    pub max_peers: Option<u32>,
    /// Interface pattern that also gets the eBPF breakdown (protocols, TCP flags, sizes) besides
    /// its routed backend, repeatable or comma-separated [default: none].
    #[arg(
        long,
        env = "LINKMETER_BREAKDOWN",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub breakdown: Option<Vec<String>>,
    /// Interface pattern whose raw driver statistics are exported as linkmeter_ethtool_stat,
    /// repeatable or comma-separated [default: kind:].
    #[arg(
        long,
        env = "LINKMETER_ETHTOOL_STATS_INTERFACES",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub ethtool_stats_interfaces: Option<Vec<String>>,
    /// Regex on driver stat names to export [default: .*].
    #[arg(long, env = "LINKMETER_ETHTOOL_STATS_ALLOWLIST", value_name = "REGEX")]
    pub ethtool_stats_allowlist: Option<String>,
    /// Count dropped packets per interface and kernel drop reason with a kfree_skb tracing
    /// program (linkmeter_interface_drops_total) [default: true].
    #[arg(long, env = "LINKMETER_DROP_REASONS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub drop_reasons: Option<bool>,
    /// Zone of overlay peers whose underlay address is in CIDR (IPv4 or IPv6; the longest prefix
    /// wins), repeatable or comma-separated [default: none].
    #[arg(
        long = "peer-zone",
        env = "LINKMETER_PEER_ZONES",
        value_delimiter = ',',
        value_name = "CIDR=ZONE"
    )]
    pub peer_zones: Option<Vec<String>>,
    /// This node's zone (the source of its cross-zone traffic) [default: none].
    #[arg(long, env = "LINKMETER_NODE_ZONE", value_name = "ZONE")]
    pub node_zone: Option<String>,
    /// Overlay series in /metrics: zone, peer or both [default: zone with --peer-zone, else
    /// peer].
    #[arg(long, env = "LINKMETER_OVERLAY_SERIES", value_name = "SERIES")]
    pub overlay_series: Option<String>,
}

/// Flags (and environment variables) of `linkmeter run`: the routing ones plus the daemon's.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// Routing flags.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Address to serve /metrics, /healthz and /readyz on [default: 0.0.0.0:9977].
    #[arg(long, env = "LINKMETER_LISTEN", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Seconds between full re-discoveries [default: 60].
    #[arg(
        long = "resync-interval",
        env = "LINKMETER_RESYNC_INTERVAL",
        value_name = "SECONDS"
    )]
    pub resync_interval_seconds: Option<u64>,
    /// Seconds after which a peer not seen leaves the map and /metrics [default: 900].
    #[arg(
        long = "peer-idle",
        env = "LINKMETER_PEER_IDLE",
        value_name = "SECONDS"
    )]
    pub peer_idle_seconds: Option<u64>,
    /// Pin the eBPF maps and links under --pin-path: counting goes on while no daemon runs and
    /// a restarted or upgraded daemon continues the same counters (`linkmeter cleanup` removes
    /// them).
    #[arg(long, env = "LINKMETER_PIN", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pin: Option<bool>,
    /// Directory on a BPF filesystem for --pin [default: /sys/fs/bpf/linkmeter].
    #[arg(long, env = "LINKMETER_PIN_PATH", value_name = "DIR")]
    pub pin_path: Option<PathBuf>,
    /// Receive buffer of the link-event socket in bytes [default: 4194304].
    #[arg(
        long = "event-buffer-bytes",
        env = "LINKMETER_EVENT_BUFFER_BYTES",
        value_name = "BYTES"
    )]
    pub event_buffer_bytes: Option<u32>,
    /// Web configuration file of the Prometheus exporter-toolkit format: TLS, client
    /// certificates, basic auth, response headers; re-read when it or its files change
    /// [default: none, plain HTTP].
    #[arg(
        long,
        visible_alias = "web.config.file",
        env = "LINKMETER_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,
    /// Seconds for a TLS handshake, a request header, and an idle kept-alive connection
    /// [default: 10].
    #[arg(
        long = "http-header-timeout",
        env = "LINKMETER_HTTP_HEADER_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub http_header_timeout_seconds: Option<u64>,
    /// Seconds to answer a request, then 503 [default: 30].
    #[arg(
        long = "http-request-timeout",
        env = "LINKMETER_HTTP_REQUEST_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub http_request_timeout_seconds: Option<u64>,
    /// Connections kept at once; at the cap the oldest idle one is closed for a new one
    /// [default: 256].
    #[arg(long, env = "LINKMETER_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<u32>,
    /// Seconds in-flight requests get at shutdown [default: 3].
    #[arg(
        long = "http-shutdown-timeout",
        env = "LINKMETER_HTTP_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub http_shutdown_timeout_seconds: Option<u64>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "LINKMETER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl From<PolicyArgs> for RunArgs {
    fn from(policy: PolicyArgs) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }
}

impl RunArgs {
    /// Flags over file values.
    pub(super) fn over(self, file: FileConfig) -> FileConfig {
        let p = self.policy;
        FileConfig {
            listen: self.listen.or(file.listen),
            include: p.include.or(file.include),
            exclude: p.exclude.or(file.exclude),
            overrides: p.overrides.or(file.overrides),
            attach_mode: p.attach_mode.or(file.attach_mode),
            max_interfaces: p.max_interfaces.or(file.max_interfaces),
            max_peers: p.max_peers.or(file.max_peers),
            peer_idle_seconds: self.peer_idle_seconds.or(file.peer_idle_seconds),
            breakdown: p.breakdown.or(file.breakdown),
            resync_interval_seconds: self
                .resync_interval_seconds
                .or(file.resync_interval_seconds),
            ethtool_stats_allowlist: p.ethtool_stats_allowlist.or(file.ethtool_stats_allowlist),
            ethtool_stats_interfaces: p.ethtool_stats_interfaces.or(file.ethtool_stats_interfaces),
            peer_zones: p.peer_zones.or(file.peer_zones),
            node_zone: p.node_zone.or(file.node_zone),
            overlay_series: p.overlay_series.or(file.overlay_series),
            drop_reasons: p.drop_reasons.or(file.drop_reasons),
            event_buffer_bytes: self.event_buffer_bytes.or(file.event_buffer_bytes),
            pin: self.pin.or(file.pin),
            pin_path: self.pin_path.or(file.pin_path),
            web_config_file: self.web_config_file.or(file.web_config_file),
            http_header_timeout_seconds: self
                .http_header_timeout_seconds
                .or(file.http_header_timeout_seconds),
            http_request_timeout_seconds: self
                .http_request_timeout_seconds
                .or(file.http_request_timeout_seconds),
            http_max_connections: self.http_max_connections.or(file.http_max_connections),
            http_shutdown_timeout_seconds: self
                .http_shutdown_timeout_seconds
                .or(file.http_shutdown_timeout_seconds),
            log_format: self.log_format.or(file.log_format),
        }
    }
}
