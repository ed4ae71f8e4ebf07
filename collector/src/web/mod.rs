//! Serving like a hardened exporter: the exporter-toolkit web configuration (TLS, client
//! certificates, basic auth, response headers), re-read when it or a file it names changes, and
//! the connection limits of [`server`].
//!
//! Each new connection and each request looks at the files' identities (inode, size,
//! modification time; a Kubernetes Secret update swaps a symlink, which changes them). A change
//! loads the configuration again. If the new one is invalid, or would weaken what protects the
//! endpoint — turn TLS off, stop requiring or verifying client certificates, turn basic auth off
//! (as a file cut off while being rewritten would) — the previous one stays in force: the error
//! is logged once, and the load is tried again every [`RETRY`] until it succeeds or the files
//! change. Weakening any of them takes a restart ([`weakened`]).

mod auth;
pub(crate) mod config;
pub(crate) mod server;
mod tls;

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{HeaderName, HeaderValue};
use tracing::{error, info};

pub(crate) use self::config::WebConfig;
use self::{
    auth::{Turns, Users},
    config::{ClientAuth, TlsVersion, WebConfigError},
    tls::TlsError,
};

/// How often a failed reload is tried again while the files stay as they are.
pub(crate) const RETRY: Duration = Duration::from_secs(10);

/// Why a web configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The file cannot be read.
    #[error("cannot read web config file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is invalid.
    #[error("web config file {0}")]
    Invalid(PathBuf, #[source] WebConfigError),
    /// The TLS part cannot be set up (certificate, key, CA, suites).
    #[error("web config file {0}")]
    Tls(PathBuf, #[source] TlsError),
    /// A reload would weaken TLS, client certificates or authentication.
    #[error("web config file {0}: {1}; weakening the protection takes a restart")]
    Weaker(PathBuf, &'static str),
}

/// What protects the endpoint under a configuration: what a reload must not take away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Protection {
    /// Served over TLS.
    pub(crate) tls: bool,
    /// A client certificate is required.
    pub(crate) certificate_required: bool,
    /// Client certificates are verified against a CA.
    pub(crate) certificate_verified: bool,
    /// Basic auth is required.
    pub(crate) users: bool,
    /// The lowest TLS version served (`None`: no TLS).
    pub(crate) min_version: Option<TlsVersion>,
    /// Which CA file client certificates are checked against (a hash of its path; 0: none).
    pub(crate) client_ca: u64,
    /// Which cipher suites are served (a hash of `cipher_suites`; 0: the defaults).
    pub(crate) cipher_suites: u64,
}

impl Protection {
    /// The protection of TLS settings `client_auth` (`None`: plain HTTP) and users.
    pub(crate) const fn of(client_auth: Option<ClientAuth>, users: bool) -> Self {
        match client_auth {
            None => Self {
                tls: false,
                certificate_required: false,
                certificate_verified: false,
                users,
                min_version: None,
                client_ca: 0,
                cipher_suites: 0,
            },
            Some(auth) => Self {
                tls: true,
                certificate_required: auth.requires(),
                certificate_verified: auth.verifies(),
                users,
                min_version: None,
                client_ca: 0,
                cipher_suites: 0,
            },
        }
    }
}

impl WebConfig {
    /// What protects the endpoint under this configuration.
    pub(crate) fn protection(&self) -> Protection {
        let of = Protection::of(
            self.tls.as_ref().map(|t| t.client_auth),
            !self.users.is_empty(),
        );
        let Some(tls) = &self.tls else {
            return of;
        };
        let hash = |value: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            use std::hash::Hasher as _;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            value(&mut hasher);
            hasher.finish().max(1)
        };
        Protection {
            min_version: Some(tls.min_version),
            client_ca: tls
                .client_ca_file
                .as_ref()
                .map_or(0, |path| hash(&|h| std::hash::Hash::hash(path, h))),
            cipher_suites: if tls.cipher_suites.is_empty() {
                0
            } else {
                hash(&|h| std::hash::Hash::hash(&tls.cipher_suites, h))
            },
            ..of
        }
    }
}

/// What a reload from `old` to `new` would take away, if anything: each of TLS, the client
/// certificate requirement, their verification and basic auth can be added by a reload, never
/// removed; while TLS stays on, `min_version` may be raised, never lowered, and the client CA
/// file and the cipher suites stay as they are (a file's contents may change: a CA rotated by a
/// Secret update is reloaded). Users and their hashes may change (password rotation).
pub(crate) fn weakened(old: Protection, new: Protection) -> Option<&'static str> {
    let both_tls = old.tls && new.tls;
    if old.tls && !new.tls {
        Some("TLS would be turned off")
    } else if old.certificate_required && !new.certificate_required {
        Some("client certificates would no longer be required")
    } else if old.certificate_verified && !new.certificate_verified {
        Some("client certificates would no longer be verified")
    } else if old.users && !new.users {
        Some("basic auth would be turned off")
    } else if both_tls && new.min_version < old.min_version {
        Some("min_version would be lowered")
    } else if both_tls && new.client_ca != old.client_ca {
        Some("client certificates would be checked against another CA file")
    } else if both_tls && new.cipher_suites != old.cipher_suites {
        Some("cipher_suites would change")
    } else {
        None
    }
}

/// The configuration in force: what connections and requests use.
#[derive(Debug)]
pub(crate) struct Active {
    /// TLS, when configured.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Headers added to every response.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Basic auth users.
    pub(crate) users: Users,
    /// What protects the endpoint.
    pub(crate) protection: Protection,
}

impl Active {
    fn plain(turns: &Arc<Turns>) -> Self {
        Self {
            tls: None,
            headers: Vec::new(),
            users: Users::new(Default::default(), Arc::clone(turns), None),
            protection: Protection::default(),
        }
    }
}

/// The identity of a file as seen by `stat` (following symlinks); `None`: missing.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// The web configuration: none (plain HTTP, no authentication) or a file followed for changes.
#[derive(Debug)]
pub(crate) struct Web {
    path: Option<PathBuf>,
    turns: Arc<Turns>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    active: Arc<Active>,
    /// The files last loaded (or tried) and their stamps then.
    stamps: Vec<(PathBuf, Stamp)>,
    /// After a failed reload: when to try again, and the error (logged once).
    failed: Option<(Instant, String)>,
}

impl Web {
    /// Loads the web configuration file at `path`, or plain HTTP without one.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the file and what is wrong: linkmeter does not start with a web
    /// configuration it cannot apply.
    pub(crate) fn load(path: Option<PathBuf>) -> Result<Self, LoadError> {
        let turns = Arc::new(Turns::default());
        let (active, stamps) = match &path {
            None => (Active::plain(&turns), Vec::new()),
            Some(path) => {
                let (active, stamps) = load(path, &turns, None);
                (active?, stamps)
            }
        };
        Ok(Self {
            path,
            turns,
            state: Mutex::new(State {
                active: Arc::new(active),
                stamps,
                failed: None,
            }),
        })
    }

    /// Whether connections are served over TLS now.
    pub(crate) fn tls(&self) -> bool {
        self.current().tls.is_some()
    }

    /// The configuration in force, loaded again first if a file changed.
    pub(crate) fn current(&self) -> Arc<Active> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            return Arc::clone(&state.active);
        };
        let changed = state.stamps.iter().any(|(file, seen)| stamp(file) != *seen);
        let retry = state
            .failed
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() >= RETRY);
        if changed || retry {
            let (loaded, stamps) = load(path, &self.turns, Some(&state.active.users));
            state.stamps = stamps;
            let loaded = loaded.and_then(|new| {
                weakened(state.active.protection, new.protection)
                    .map_or(Ok(new), |what| Err(LoadError::Weaker(path.clone(), what)))
            });
            match loaded {
                Ok(active) => {
                    info!(
                        file = %path.display(),
                        tls = active.tls.is_some(),
                        users = active.users.required(),
                        "web configuration reloaded"
                    );
                    state.active = Arc::new(active);
                    state.failed = None;
                }
                Err(err) => {
                    let message = crate::Report(&err).to_string();
                    if state
                        .failed
                        .as_ref()
                        .is_none_or(|(_, last)| *last != message)
                    {
                        error!("{message}; the previous web configuration stays in force");
                    }
                    state.failed = Some((Instant::now(), message));
                }
            }
        }
        Arc::clone(&state.active)
    }
}

/// Loads `path` and the files it names; returns them with their stamps taken before reading,
/// so that a change during the load is seen at the next look.
fn load(
    path: &Path,
    turns: &Arc<Turns>,
    previous: Option<&Users>,
) -> (Result<Active, LoadError>, Vec<(PathBuf, Stamp)>) {
    let mut stamps = vec![(path.to_owned(), stamp(path))];
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => return (Err(LoadError::Read(path.to_owned(), err)), stamps),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = match WebConfig::parse(&text, dir) {
        Ok(config) => config,
        Err(err) => return (Err(LoadError::Invalid(path.to_owned(), err)), stamps),
    };
    let tls = match &config.tls {
        None => None,
        Some(settings) => {
            stamps.extend(settings.files().map(|f| (f.to_owned(), stamp(f))));
            match tls::server_config(settings) {
                Ok(tls) => Some(tls),
                Err(err) => return (Err(LoadError::Tls(path.to_owned(), err)), stamps),
            }
        }
    };
    let protection = config.protection();
    let active = Active {
        tls,
        headers: config.headers,
        users: Users::new(config.users, Arc::clone(turns), previous),
        protection,
    };
    (Ok(active), stamps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_may_add_protection_but_never_take_it_away() {
        let plain = Protection::of(None, false);
        let tls = Protection::of(Some(ClientAuth::None), false);
        let mtls = Protection::of(Some(ClientAuth::RequireAndVerify), true);
        let any_cert = Protection::of(Some(ClientAuth::RequireAny), true);
        let if_given = Protection::of(Some(ClientAuth::VerifyIfGiven), true);
        assert_eq!(weakened(plain, mtls), None);
        assert_eq!(weakened(tls, mtls), None);
        assert_eq!(weakened(mtls, mtls), None);
        assert_eq!(weakened(mtls, plain), Some("TLS would be turned off"));
        assert_eq!(
            weakened(mtls, tls),
            Some("client certificates would no longer be required")
        );
        assert_eq!(
            weakened(mtls, any_cert),
            Some("client certificates would no longer be verified")
        );
        assert_eq!(
            weakened(mtls, if_given),
            Some("client certificates would no longer be required")
        );
        assert_eq!(
            weakened(
                mtls,
                Protection::of(Some(ClientAuth::RequireAndVerify), false)
            ),
            Some("basic auth would be turned off")
        );
    }

    /// From an adversarial review: these reloaded without a restart before.
    #[test]
    fn a_reload_keeps_the_tls_version_the_client_ca_and_the_cipher_suites() {
        let dir = Path::new("/etc/linkmeter/web");
        let config = |extra: &str| {
            WebConfig::parse(
                &format!(
                    "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  \
                     client_auth_type: RequireAndVerifyClientCert\n  {extra}"
                ),
                dir,
            )
            .expect("valid")
            .protection()
        };
        let old = config("client_ca_file: ca1.crt\n  min_version: TLS13\n");
        assert_eq!(weakened(old, old), None);
        assert_eq!(
            weakened(
                old,
                config("client_ca_file: ca1.crt\n  min_version: TLS12\n")
            ),
            Some("min_version would be lowered")
        );
        assert_eq!(
            weakened(
                old,
                config("client_ca_file: ca2.crt\n  min_version: TLS13\n")
            ),
            Some("client certificates would be checked against another CA file")
        );
        let suites = "client_ca_file: ca1.crt\n  min_version: TLS13\n  cipher_suites:\n    - TLS_AES_128_GCM_SHA256\n";
        assert_eq!(
            weakened(old, config(suites)),
            Some("cipher_suites would change")
        );
        // Raising min_version is no weakening.
        let tls12 = config("client_ca_file: ca1.crt\n  min_version: TLS12\n");
        assert_eq!(weakened(tls12, old), None);
    }
}
