//! Configuration: every default and limit is defined once (`defaults`), every value — from
//! the TOML file (`--config`, [`FileConfig`]), a flag or an environment variable (`args`) — is
//! parsed and validated once (`validate`) by [`Config::build`], which assembles the settings of
//! the floors below (the node's routing, the eBPF loader's options, the server's limits).
//! Nothing below reads the configuration. Precedence: flag / environment > file > default. The
//! README's configuration table lists the keys with their flags and environment variables.
//!
//! Patterns are globs, `/regex/` or `kind:<link kind>` (see `crate::filter`).

mod args;
mod defaults;
mod file;
mod validate;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use regex::Regex;

pub(crate) use self::args::{PolicyArgs, RunArgs};
use self::validate::{attach_mode, invalid, invalid_because, overrides, patterns, within};
pub use self::{
    defaults::*,
    file::{FileConfig, LogFormat},
    validate::ConfigError,
};
use crate::{
    backend::ebpf::{AttachMode, Capacity, LoadOptions, Role},
    node::Settings,
    policy::Policy,
    zones::{Overlay, OverlaySeries, ZoneTable},
};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to serve metrics.
    pub(crate) listen: SocketAddr,
    /// Routing and measuring: the policy, the attach mode, peer ageing, driver stat names.
    pub(crate) node: Settings,
    /// The eBPF maps' capacity and pinning (the daemon's).
    pub(crate) ebpf: LoadOptions,
    /// Whether drops are counted by kernel drop reason.
    pub(crate) drop_reasons: bool,
    /// Full re-discovery period.
    pub(crate) resync_interval: Duration,
    /// Receive buffer of the link-event socket.
    pub(crate) event_buffer: usize,
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
            node: Settings {
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
                overlay: overlay(
                    file.peer_zones.unwrap_or_default(),
                    file.node_zone,
                    file.overlay_series.as_deref(),
                )?,
                peer_idle: Duration::from_secs(within(
                    "peer_idle_seconds",
                    file.peer_idle_seconds.unwrap_or(DEFAULT_PEER_IDLE_SECONDS),
                    &PEER_IDLE_SECONDS,
                )?),
                ethtool_stats_allowlist,
            },
            ebpf: LoadOptions {
                capacity: Capacity::new(
                    file.max_interfaces.unwrap_or(DEFAULT_MAX_INTERFACES),
                    file.max_peers.unwrap_or(DEFAULT_MAX_PEERS),
                )
                .map_err(|e| invalid(e.option, e.to_string()))?,
                role: Role::Daemon,
                pin: file.pin.unwrap_or(false).then(|| {
                    file.pin_path
                        .unwrap_or_else(|| PathBuf::from(crate::backend::ebpf::DEFAULT_PIN_PATH))
                }),
                object: None,
            },
            drop_reasons: file.drop_reasons.unwrap_or(DEFAULT_DROP_REASONS),
            resync_interval: Duration::from_secs(resync),
            event_buffer: within(
                "event_buffer_bytes",
                file.event_buffer_bytes
                    .unwrap_or(DEFAULT_EVENT_BUFFER_BYTES),
                &EVENT_BUFFER_BYTES,
            )? as usize,
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

    /// How the daemon loads the eBPF maps: their sizes and pinning.
    pub(crate) fn ebpf_options(&self) -> LoadOptions {
        self.ebpf.clone()
    }

    /// The address `/metrics` is served on.
    pub const fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// The overlay settings from `peer_zones`, `node_zone` and `overlay_series`.
fn overlay(
    peer_zones: Vec<String>,
    node_zone: Option<String>,
    series: Option<&str>,
) -> Result<Overlay, ConfigError> {
    let zones = ZoneTable::parse(&peer_zones).map_err(|e| invalid("peer_zones", e.to_string()))?;
    let node_zone = match node_zone.map(|z| z.trim().to_owned()) {
        Some(zone) if zone.is_empty() => {
            return Err(invalid("node_zone", "must not be empty"));
        }
        other => other,
    };
    let series = match series {
        None => OverlaySeries::default_for(&zones),
        Some(text) => OverlaySeries::parse(text).ok_or_else(|| {
            invalid(
                "overlay_series",
                format!("{text:?} is not one of zone, peer, both"),
            )
        })?,
    };
    Ok(Overlay {
        zones,
        node_zone,
        series,
    })
}

#[cfg(test)]
mod tests;
