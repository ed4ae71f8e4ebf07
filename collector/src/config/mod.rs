//! Configuration: every default and limit is defined once here (the constants below), every
//! value — from the TOML file (`--config`), a flag or an environment variable — is parsed and
//! validated once by [`Config::build`]. Precedence: flag / environment > file > default. The
//! README's configuration table lists the keys with their flags and environment variables.
//!
//! Patterns are globs, `/regex/` or `kind:<link kind>` (see `crate::filter`).

mod args;

use std::{net::SocketAddr, ops::RangeInclusive, path::PathBuf, time::Duration};

use regex::Regex;
use serde::Deserialize;

pub(crate) use self::args::{PolicyArgs, RunArgs};
use crate::{
    backend::ebpf::AttachMode,
    filter::Pattern,
    policy::{Backend, Policy},
};

/// Default of `listen`.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:9977";
/// Default of `exclude`.
pub(crate) const DEFAULT_EXCLUDE: &[&str] = &["lo"];
/// Default of `max_interfaces`: how many interfaces the eBPF counter can be attached to at
/// once. Each takes 512 bytes of kernel memory per possible CPU plus 128 bytes (64 KiB on a
/// 128-CPU node).
pub const DEFAULT_MAX_INTERFACES: u32 = 256;
/// Accepted values of `max_interfaces`.
pub const MAX_INTERFACES: RangeInclusive<u32> = 1..=65_536;
/// Default of `max_peers`: (tunnel device, direction, remote endpoint) counters, enough for one
/// tunnel device in a 5,000-node cluster (both directions) with room to spare. Each takes 16
/// bytes of kernel memory per possible CPU plus about 106 bytes (about 2.1 KiB on a 128-CPU
/// node).
pub const DEFAULT_MAX_PEERS: u32 = 10_240;
/// Accepted values of `max_peers`.
pub const MAX_PEERS: RangeInclusive<u32> = 1..=1 << 20;
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
    /// How many interfaces the eBPF counter can be attached to at once ([`MAX_INTERFACES`]).
    pub max_interfaces: Option<u32>,
    /// Capacity of the peer map ([`MAX_PEERS`]).
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
    /// ([`DEFAULT_ETHTOOL_STATS_INTERFACES`]: interfaces without a link kind, i.e. devices).
    pub ethtool_stats_interfaces: Option<Vec<String>>,
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to serve metrics.
    pub(crate) listen: SocketAddr,
    /// Include/exclude/overrides.
    pub(crate) policy: Policy,
    /// TC attach mode.
    pub(crate) attach_mode: AttachMode,
    /// eBPF map capacity in interfaces.
    pub(crate) max_interfaces: u32,
    /// eBPF peer map capacity.
    pub(crate) max_peers: u32,
    /// Idle time after which a peer is forgotten.
    pub(crate) peer_idle: Duration,
    /// Full re-discovery period.
    pub(crate) resync_interval: Duration,
    /// Driver stat names to export.
    pub(crate) ethtool_stats_allowlist: Regex,
    /// Receive buffer of the link-event socket.
    pub(crate) event_buffer: usize,
    /// Where to pin the eBPF maps and links; `None`: no pinning.
    pub(crate) pin: Option<PathBuf>,
    /// The web configuration file.
    pub(crate) web_config_file: Option<PathBuf>,
    /// The server's limits.
    pub(crate) http: crate::web::server::Limits,
    /// Log format.
    pub(crate) log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self::build(FileConfig::default()).expect("defaults are valid")
    }
}

/// A configuration error; names the key (or file) at fault. linkmeter exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys / wrong types.
    #[error("config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, naming the key and line.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is invalid.
    #[error("invalid {key}: {message}")]
    Invalid {
        /// The key (as in the file).
        key: &'static str,
        /// What is wrong with the value.
        message: String,
        /// The parser's error, when one said why.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
        source: None,
    }
}

/// As [`invalid`], with the parser's error as the cause.
fn invalid_because(
    key: &'static str,
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
        source: Some(Box::new(source)),
    }
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

/// Parses a list of interface patterns of `key`.
fn patterns(key: &'static str, list: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    list.iter()
        .map(|p| {
            p.parse()
                .map_err(|e: crate::filter::PatternError| invalid(key, e.to_string()))
        })
        .collect()
}

/// Parses `"PATTERN=BACKEND"` entries.
fn overrides(list: &[String]) -> Result<Vec<(Pattern, Backend)>, ConfigError> {
    list.iter()
        .map(|entry| {
            let (pattern, backend) = entry
                .rsplit_once('=')
                .ok_or_else(|| invalid("overrides", format!("{entry:?} is not PATTERN=BACKEND")))?;
            let backend = Backend::parse(backend.trim()).ok_or_else(|| {
                invalid(
                    "overrides",
                    format!("{entry:?}: backend must be ethtool, ebpf, netdev or none"),
                )
            })?;
            let pattern = pattern
                .trim()
                .parse()
                .map_err(|e: crate::filter::PatternError| invalid("overrides", e.to_string()))?;
            Ok((pattern, backend))
        })
        .collect()
}

/// Checks that `value` of `key` lies in `range`.
fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("{value}: must be {} to {}", range.start(), range.end()),
        ))
    }
}

/// Parses an attach mode as written in the file or on the command line.
fn attach_mode(text: &str) -> Result<AttachMode, ConfigError> {
    match text {
        "auto" => Ok(AttachMode::Auto),
        "tcx" => Ok(AttachMode::Tcx),
        "tc" => Ok(AttachMode::Tc),
        other => Err(invalid(
            "attach_mode",
            format!("{other:?}: must be auto, tcx or tc"),
        )),
    }
}

impl Config {
    /// Reads the file named by `args.config` (if any), applies the flags over it, validates.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file or key at fault.
    pub(crate) fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.policy.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                FileConfig::parse(&text, path)?
            }
            None => FileConfig::default(),
        };
        Self::build(args.clone().over(file))
    }

    /// Validates a merged configuration, filling in the defaults.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key.
    pub fn build(file: FileConfig) -> Result<Self, ConfigError> {
        let listen_text = file.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse()
            .map_err(|e| invalid_because("listen", format!("{listen_text:?} is not IP:PORT"), e))?;
        let exclude = file
            .exclude
            .unwrap_or_else(|| DEFAULT_EXCLUDE.iter().map(|&p| p.to_owned()).collect());
        let allow_text = file
            .ethtool_stats_allowlist
            .as_deref()
            .unwrap_or(DEFAULT_ETHTOOL_STATS_ALLOWLIST);
        let ethtool_stats_allowlist = Regex::new(allow_text).map_err(|e| {
            invalid_because("ethtool_stats_allowlist", format!("{allow_text:?}"), e)
        })?;
        let resync = within(
            "resync_interval_seconds",
            file.resync_interval_seconds
                .unwrap_or(DEFAULT_RESYNC_SECONDS),
            &RESYNC_SECONDS,
        )?;
        Ok(Self {
            listen,
            policy: Policy {
                include: patterns("include", &file.include.unwrap_or_default())?,
                exclude: patterns("exclude", &exclude)?,
                overrides: overrides(&file.overrides.unwrap_or_default())?,
                breakdown: patterns("breakdown", &file.breakdown.unwrap_or_default())?,
                ethtool_stats: patterns(
                    "ethtool_stats_interfaces",
                    &file.ethtool_stats_interfaces.unwrap_or_else(|| {
                        DEFAULT_ETHTOOL_STATS_INTERFACES
                            .iter()
                            .map(|p| (*p).to_owned())
                            .collect()
                    }),
                )?,
            },
            attach_mode: file
                .attach_mode
                .as_deref()
                .map_or(Ok(AttachMode::default()), attach_mode)?,
            max_interfaces: within(
                "max_interfaces",
                file.max_interfaces.unwrap_or(DEFAULT_MAX_INTERFACES),
                &MAX_INTERFACES,
            )?,
            max_peers: within(
                "max_peers",
                file.max_peers.unwrap_or(DEFAULT_MAX_PEERS),
                &MAX_PEERS,
            )?,
            peer_idle: Duration::from_secs(within(
                "peer_idle_seconds",
                file.peer_idle_seconds.unwrap_or(DEFAULT_PEER_IDLE_SECONDS),
                &PEER_IDLE_SECONDS,
            )?),
            resync_interval: Duration::from_secs(resync),
            ethtool_stats_allowlist,
            event_buffer: within(
                "event_buffer_bytes",
                file.event_buffer_bytes
                    .unwrap_or(DEFAULT_EVENT_BUFFER_BYTES),
                &EVENT_BUFFER_BYTES,
            )? as usize,
            pin: file.pin.unwrap_or(false).then(|| {
                file.pin_path
                    .unwrap_or_else(|| PathBuf::from(crate::backend::ebpf::DEFAULT_PIN_PATH))
            }),
            web_config_file: file.web_config_file,
            http: crate::web::server::Limits {
                header_timeout: Duration::from_secs(within(
                    "http_header_timeout_seconds",
                    file.http_header_timeout_seconds
                        .unwrap_or(DEFAULT_HTTP_HEADER_TIMEOUT_SECONDS),
                    &HTTP_TIMEOUT_SECONDS,
                )?),
                request_timeout: Duration::from_secs(within(
                    "http_request_timeout_seconds",
                    file.http_request_timeout_seconds
                        .unwrap_or(DEFAULT_HTTP_REQUEST_TIMEOUT_SECONDS),
                    &HTTP_TIMEOUT_SECONDS,
                )?),
                max_connections: within(
                    "http_max_connections",
                    file.http_max_connections
                        .unwrap_or(DEFAULT_HTTP_MAX_CONNECTIONS),
                    &HTTP_MAX_CONNECTIONS,
                )? as usize,
                shutdown_timeout: Duration::from_secs(within(
                    "http_shutdown_timeout_seconds",
                    file.http_shutdown_timeout_seconds
                        .unwrap_or(DEFAULT_HTTP_SHUTDOWN_TIMEOUT_SECONDS),
                    &HTTP_SHUTDOWN_TIMEOUT_SECONDS,
                )?),
            },
            log_format: file.log_format.unwrap_or_default(),
        })
    }

    /// The sizes of the eBPF maps.
    pub(crate) fn ebpf_options(&self) -> crate::backend::ebpf::LoadOptions {
        crate::backend::ebpf::LoadOptions {
            max_interfaces: self.max_interfaces,
            max_peers: self.max_peers,
            role: crate::backend::ebpf::Role::Daemon,
            pin: self.pin.clone(),
        }
    }

    /// The address `/metrics` is served on.
    pub const fn listen(&self) -> SocketAddr {
        self.listen
    }
}

#[cfg(test)]
mod tests;
