//! Configuration of `linkmeter run`: a TOML file (`--config`), each option also a flag and an
//! environment variable. Precedence: flag / environment > file > default.
//!
//! | key | flag | env | default | meaning |
//! | --- | --- | --- | --- | --- |
//! | `listen` | `--listen` | `LINKMETER_LISTEN` | `0.0.0.0:9977` | address of `/metrics`, `/healthz`, `/readyz` |
//! | `include` | `--include` | `LINKMETER_INCLUDE` | (all) | interface patterns to monitor |
//! | `exclude` | `--exclude` | `LINKMETER_EXCLUDE` | `["lo"]` | interface patterns never monitored |
//! | `overrides` | `--override` | `LINKMETER_OVERRIDES` | (none) | `PATTERN=BACKEND`, first match wins |
//! | `attach_mode` | `--attach-mode` | `LINKMETER_ATTACH_MODE` | `auto` | `auto`, `tcx` or `tc` |
//! | `max_interfaces` | `--max-interfaces` | `LINKMETER_MAX_INTERFACES` | `1024` | eBPF counter map capacity |
//! | `resync_interval_seconds` | `--resync-interval` | `LINKMETER_RESYNC_INTERVAL` | `60` | full re-discovery period |
//! | `ethtool_stats_allowlist` | `--ethtool-stats-allowlist` | `LINKMETER_ETHTOOL_STATS_ALLOWLIST` | `.*` | regex on driver stat names |
//! | `log_format` | `--log-format` | `LINKMETER_LOG_FORMAT` | `human` | `human` or `json` |
//!
//! Patterns are globs, `/regex/` or `kind:<link kind>` (see [`crate::filter`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use regex::Regex;
use serde::Deserialize;

use crate::{
    ebpf::AttachMode,
    filter::Pattern,
    policy::{Backend, Policy},
};

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
    /// Address to serve metrics on, `IP:PORT`. Default `0.0.0.0:9977`.
    pub listen: Option<String>,
    /// Interface patterns to monitor; empty or absent means all. Default: all.
    pub include: Option<Vec<String>>,
    /// Interface patterns never monitored; checked first. Default `["lo"]`.
    pub exclude: Option<Vec<String>>,
    /// Forced backends as `"PATTERN=BACKEND"` (`ethtool`, `ebpf`, `netdev`, `none`); the first
    /// matching entry wins. Default: none.
    pub overrides: Option<Vec<String>>,
    /// TC attach mode: `auto` (TCX on Linux >= 6.6, else legacy tc), `tcx` or `tc`. Default `auto`.
    pub attach_mode: Option<String>,
    /// Capacity of the eBPF counter map, in interfaces (1 to 1048576). Default 1024.
    pub max_interfaces: Option<u32>,
    /// Seconds between full re-discoveries that repair missed link events and re-attach
    /// removed programs (1 to 86400). Default 60.
    pub resync_interval_seconds: Option<u64>,
    /// Regex on driver stat names exported as `linkmeter_ethtool_stat`. Default `.*` (all).
    pub ethtool_stats_allowlist: Option<String>,
    /// `human` or `json`. Default `human`.
    pub log_format: Option<LogFormat>,
}

/// Flags (and environment variables) that decide routing, shared by `run`, `list`, `check`
/// and `dump`. Unset ones fall back to the file, then to the defaults.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct PolicyArgs {
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
    /// eBPF counter map capacity, in interfaces [default: 1024].
    #[arg(long, env = "LINKMETER_MAX_INTERFACES", value_name = "N")]
    pub max_interfaces: Option<u32>,
    /// Regex on driver stat names to export [default: .*].
    #[arg(long, env = "LINKMETER_ETHTOOL_STATS_ALLOWLIST", value_name = "REGEX")]
    pub ethtool_stats_allowlist: Option<String>,
}

/// Flags (and environment variables) of `linkmeter run`: the routing ones plus the daemon's.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct RunArgs {
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to serve metrics.
    pub listen: SocketAddr,
    /// Include/exclude/overrides.
    pub policy: Policy,
    /// TC attach mode.
    pub attach_mode: AttachMode,
    /// eBPF map capacity in interfaces.
    pub max_interfaces: u32,
    /// Full re-discovery period.
    pub resync_interval: Duration,
    /// Driver stat names to export.
    pub ethtool_stats_allowlist: Regex,
    /// Log format.
    pub log_format: LogFormat,
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
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys / wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, naming the key and line.
        message: String,
    },
    /// A value is invalid.
    #[error("invalid {key}: {message}")]
    Invalid {
        /// The key (as in the file).
        key: &'static str,
        /// Why.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
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
            message: e.to_string().trim().replace('\n', " "),
        })
    }
}

impl Config {
    /// Reads the file named by `args.config` (if any), applies the flags over it, validates.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file or key at fault.
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
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

    /// Validates a merged configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key.
    pub fn build(file: FileConfig) -> Result<Self, ConfigError> {
        let listen_text = file.listen.unwrap_or_else(|| "0.0.0.0:9977".into());
        let listen = listen_text
            .parse()
            .map_err(|e| invalid("listen", format!("{listen_text:?} is not IP:PORT ({e})")))?;
        let patterns =
            |key: &'static str, list: Vec<String>| -> Result<Vec<Pattern>, ConfigError> {
                list.iter()
                    .map(|p| {
                        p.parse()
                            .map_err(|e: crate::filter::PatternError| invalid(key, e.to_string()))
                    })
                    .collect()
            };
        let include = patterns("include", file.include.unwrap_or_default())?;
        let exclude = patterns("exclude", file.exclude.unwrap_or_else(|| vec!["lo".into()]))?;
        let mut overrides = Vec::new();
        for entry in file.overrides.unwrap_or_default() {
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
            overrides.push((pattern, backend));
        }
        let attach_mode = match file.attach_mode.as_deref().unwrap_or("auto") {
            "auto" => AttachMode::Auto,
            "tcx" => AttachMode::Tcx,
            "tc" => AttachMode::Tc,
            other => {
                return Err(invalid(
                    "attach_mode",
                    format!("{other:?}: must be auto, tcx or tc"),
                ));
            }
        };
        let max_interfaces = file.max_interfaces.unwrap_or(1024);
        if !(1..=1 << 20).contains(&max_interfaces) {
            return Err(invalid(
                "max_interfaces",
                format!("{max_interfaces}: must be 1 to 1048576"),
            ));
        }
        let resync = file.resync_interval_seconds.unwrap_or(60);
        if !(1..=86_400).contains(&resync) {
            return Err(invalid(
                "resync_interval_seconds",
                format!("{resync}: must be 1 to 86400"),
            ));
        }
        let allow_text = file.ethtool_stats_allowlist.unwrap_or_else(|| ".*".into());
        let ethtool_stats_allowlist = Regex::new(&allow_text)
            .map_err(|e| invalid("ethtool_stats_allowlist", format!("{allow_text:?}: {e}")))?;
        Ok(Self {
            listen,
            policy: Policy {
                include,
                exclude,
                overrides,
            },
            attach_mode,
            max_interfaces,
            resync_interval: Duration::from_secs(resync),
            ethtool_stats_allowlist,
            log_format: file.log_format.unwrap_or_default(),
        })
    }
}

impl RunArgs {
    /// Flags over file values.
    fn over(self, file: FileConfig) -> FileConfig {
        let p = self.policy;
        FileConfig {
            listen: self.listen.or(file.listen),
            include: p.include.or(file.include),
            exclude: p.exclude.or(file.exclude),
            overrides: p.overrides.or(file.overrides),
            attach_mode: p.attach_mode.or(file.attach_mode),
            max_interfaces: p.max_interfaces.or(file.max_interfaces),
            resync_interval_seconds: self
                .resync_interval_seconds
                .or(file.resync_interval_seconds),
            ethtool_stats_allowlist: p.ethtool_stats_allowlist.or(file.ethtool_stats_allowlist),
            log_format: self.log_format.or(file.log_format),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn build(toml_text: &str) -> Result<Config, ConfigError> {
        Config::build(FileConfig::parse(toml_text, Path::new("test.toml"))?)
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.listen, "0.0.0.0:9977".parse().expect("addr"));
        assert_eq!(c.attach_mode, AttachMode::Auto);
        assert_eq!(c.max_interfaces, 1024);
        assert_eq!(c.resync_interval, Duration::from_secs(60));
        assert!(c.policy.exclude[0].matches("lo", None));
        assert!(c.policy.include.is_empty() && c.policy.overrides.is_empty());
        assert!(c.ethtool_stats_allowlist.is_match("rx_queue_0_packets"));
    }

    #[test]
    fn full_file_is_accepted() {
        let c = build(
            r#"
            listen = "127.0.0.1:9100"
            include = ["eth*", "kind:vxlan"]
            exclude = ["lo", "/^docker/"]
            overrides = ["cilium_*=ebpf", "kind:bridge=netdev"]
            attach_mode = "tc"
            max_interfaces = 64
            resync_interval_seconds = 5
            ethtool_stats_allowlist = "^(rx|tx)_"
            log_format = "json"
            "#,
        )
        .expect("valid");
        assert_eq!(c.policy.overrides.len(), 2);
        assert_eq!(c.policy.overrides[0].1, Backend::Ebpf);
        assert_eq!(c.attach_mode, AttachMode::Tc);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("listn = \"x\"", "listn"),
            ("listen = \"localhost\"", "listen"),
            ("listen = \"1.2.3.4:99999\"", "listen"),
            ("exclude = [\"/(/\"]", "exclude"),
            ("include = [\"\"]", "include"),
            ("overrides = [\"eth0\"]", "overrides"),
            ("overrides = [\"eth0=magic\"]", "overrides"),
            ("attach_mode = \"xdp\"", "attach_mode"),
            ("max_interfaces = 0", "max_interfaces"),
            ("resync_interval_seconds = 0", "resync_interval_seconds"),
            ("ethtool_stats_allowlist = \"(\"", "ethtool_stats_allowlist"),
            ("log_format = \"xml\"", "log_format"),
            ("max_interfaces = \"many\"", "max_interfaces"),
        ];
        for (text, key) in cases {
            let err = build(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(
            "listen = \"127.0.0.1:1\"\nmax_interfaces = 8",
            Path::new("t"),
        )
        .expect("ok");
        let args = RunArgs {
            listen: Some("127.0.0.1:2".into()),
            ..RunArgs::default()
        };
        let c = Config::build(args.over(file)).expect("valid");
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.max_interfaces, 8);
    }
}
