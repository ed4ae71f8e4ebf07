//! Validation of single values: every error names the key at fault.

use std::{ops::RangeInclusive, path::PathBuf};

use crate::{backend::ebpf::AttachMode, filter::Pattern, policy::Backend};

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

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
        source: None,
    }
}

/// As [`invalid`], with the parser's error as the cause.
pub(super) fn invalid_because(
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

/// Parses a list of interface patterns of `key`.
pub(super) fn patterns(key: &'static str, list: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    list.iter()
        .map(|p| {
            p.parse()
                .map_err(|e: crate::filter::PatternError| invalid(key, e.to_string()))
        })
        .collect()
}

/// Parses `"PATTERN=BACKEND"` entries.
pub(super) fn overrides(list: &[String]) -> Result<Vec<(Pattern, Backend)>, ConfigError> {
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
pub(super) fn within<T: PartialOrd + std::fmt::Display>(
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
pub(super) fn attach_mode(text: &str) -> Result<AttachMode, ConfigError> {
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
