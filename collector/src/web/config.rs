//! The web configuration file, in the format of the Prometheus exporter-toolkit (the
//! `--web.config.file` of node_exporter and every other exporter):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt hash
//! ```
//!
//! Unknown keys are an error, as in the toolkit. What rustls cannot do is refused with a
//! message rather than silently weakened: TLS 1.0/1.1 (`max_version` below TLS12), cipher suites
//! and curves outside rustls' set. Not implemented, and refused as such: `client_allowed_sans`,
//! the inline `cert`/`key`/`client_ca` and `rate_limit`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers the toolkit lets a web configuration set.
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The highest bcrypt cost accepted in `basic_auth_users`: a check at cost 14 takes about a
/// second of CPU (each step doubles it); cost 31 would take days.
pub(crate) const MAX_BCRYPT_COST: u32 = 14;

/// How a client certificate is asked for (`client_auth_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `NoClientCert` (the default): none is asked for.
    None,
    /// `RequestClientCert`: asked for, not required, not verified.
    Request,
    /// `RequireAnyClientCert`: required, not verified against a CA.
    RequireAny,
    /// `VerifyClientCertIfGiven`: not required; verified against `client_ca_file` if given.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`: required and verified against `client_ca_file`.
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "" | "NoClientCert" => Self::None,
            "RequestClientCert" => Self::Request,
            // The toolkit still accepts its old name.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAny,
            "VerifyClientCertIfGiven" => Self::VerifyIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerify,
            _ => return None,
        })
    }

    /// Whether a client must present a certificate.
    pub(crate) const fn requires(self) -> bool {
        matches!(self, Self::RequireAny | Self::RequireAndVerify)
    }

    /// Whether certificates are verified against `client_ca_file`.
    pub(crate) const fn verifies(self) -> bool {
        matches!(self, Self::VerifyIfGiven | Self::RequireAndVerify)
    }
}

/// A TLS protocol version of `min_version`/`max_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    /// TLS 1.0 (accepted in `min_version` only: served as TLS 1.2).
    Tls10,
    /// TLS 1.1 (as TLS 1.0).
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "TLS10" => Self::Tls10,
            "TLS11" => Self::Tls11,
            "TLS12" => Self::Tls12,
            "TLS13" => Self::Tls13,
            _ => return None,
        })
    }
}

/// The validated `tls_server_config`, with paths resolved against the file's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The server's certificate chain (PEM).
    pub(crate) cert_file: PathBuf,
    /// The server's private key (PEM).
    pub(crate) key_file: PathBuf,
    /// How client certificates are asked for.
    pub(crate) client_auth: ClientAuth,
    /// CA certificates that client certificates are verified against (PEM).
    pub(crate) client_ca_file: Option<PathBuf>,
    /// Lowest version served (TLS 1.0 and 1.1 are served as 1.2).
    pub(crate) min_version: TlsVersion,
    /// Highest version served.
    pub(crate) max_version: TlsVersion,
    /// TLS 1.2 cipher suites by name (Go's names); empty: rustls' defaults.
    pub(crate) cipher_suites: Vec<String>,
    /// Key exchange groups by Go's name (`X25519`, `CurveP256`, `CurveP384`); empty: defaults.
    pub(crate) curve_preferences: Vec<String>,
    /// The server's cipher suite order wins over the client's.
    pub(crate) prefer_server_cipher_suites: bool,
}

impl TlsSettings {
    /// The files this configuration reads.
    pub(crate) fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }
}

/// A validated web configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct WebConfig {
    /// TLS, when configured.
    pub(crate) tls: Option<TlsSettings>,
    /// Response headers added to every answer.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash; empty: no authentication.
    pub(crate) users: BTreeMap<String, String>,
}

/// What is wrong with a web configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebConfigError {
    /// Not YAML, unknown keys or wrong types.
    #[error("not a valid web configuration")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// A value is invalid.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, as in the file.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> WebConfigError {
    WebConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl WebConfig {
    /// Parses and validates the text of a web configuration file found in `dir` (relative
    /// paths in it are relative to `dir`, as in the toolkit). Reads no other file.
    ///
    /// # Errors
    ///
    /// [`WebConfigError`] naming the key at fault.
    pub(crate) fn parse(text: &str, dir: &Path) -> Result<Self, WebConfigError> {
        // An empty file is an empty configuration (YAML's null), as in the toolkit.
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str::<Option<File>>(text)
                .map_err(WebConfigError::Yaml)?
                .unwrap_or_default()
        };
        let tls = file
            .tls_server_config
            .map(|tls| tls_file::tls_settings(tls, dir))
            .transpose()?
            .flatten();
        let http = file.http_server_config.unwrap_or_default();
        let _http2_is_not_served = http.http2;
        let headers = http
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| header(&name, &value))
            .collect::<Result<_, _>>()?;
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    "basic_auth_users",
                    format!("{user:?}: a user name must be non-empty and without ':'"),
                ));
            }
            let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
                return Err(invalid(
                    "basic_auth_users",
                    format!(
                        "the password of {user:?} is not a bcrypt hash (make one with \
                         `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                    ),
                ));
            };
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(invalid(
                    "basic_auth_users",
                    format!(
                        "the bcrypt hash of {user:?} has cost {}, above the maximum {MAX_BCRYPT_COST}: \
                         every wrong password would take seconds of CPU (make one with \
                         `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
                        parts.get_cost()
                    ),
                ));
            }
        }
        Ok(Self {
            tls,
            headers,
            users,
        })
    }
}

/// A response header of `http_server_config.headers`.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), WebConfigError> {
    const KEY: &str = "http_server_config.headers";
    if !ALLOWED_HEADERS.contains(&name) {
        return Err(invalid(
            KEY,
            format!(
                "{name:?} cannot be set; allowed: {}",
                ALLOWED_HEADERS.join(", ")
            ),
        ));
    }
    let bad = |what: &str| invalid(KEY, format!("{name}: {value:?} {what}"));
    match name {
        "X-Content-Type-Options" if value != "nosniff" => {
            return Err(bad("must be nosniff"));
        }
        "X-Frame-Options"
            if !value.eq_ignore_ascii_case("deny") && !value.eq_ignore_ascii_case("sameorigin") =>
        {
            return Err(bad("must be deny or sameorigin"));
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value).map_err(|_| bad("is not a header value"))?;
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("has a bad name"))?;
    Ok((name, value))
}

mod tls_file;

#[cfg(test)]
mod tests;
