//! Serving like a hardened exporter: the exporter-toolkit web configuration (TLS, client
//! certificates, basic auth, response headers), re-read when it or a file it names changes, and
//! the connection limits of [`server`].
//!
//! Each new connection and each request looks at the files' identities (inode, size,
//! modification time; a Kubernetes Secret update swaps a symlink, which changes them). A change
//! loads the configuration again. If the new one is invalid, or would turn TLS or
//! authentication off (as a truncated file would), the previous one stays in force: the error is
//! logged once, and the load is tried again every [`RETRY`] until it succeeds or the files
//! change. Turning TLS or authentication off takes a restart.

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
use tokio::sync::Semaphore;
use tracing::{error, info};

pub(crate) use self::config::WebConfig;
use self::{auth::Users, config::WebConfigError, tls::TlsError};

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
    /// A reload would turn TLS or authentication off.
    #[error("web config file {0}: {1} would be turned off; that takes a restart")]
    Weaker(PathBuf, &'static str),
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
}

impl Active {
    fn plain(bcrypt: &Arc<Semaphore>) -> Self {
        Self {
            tls: None,
            headers: Vec::new(),
            users: Users::new(Default::default(), Arc::clone(bcrypt)),
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
    bcrypt: Arc<Semaphore>,
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
        let bcrypt = Arc::new(Semaphore::new(auth::CONCURRENT_BCRYPT));
        let (active, stamps) = match &path {
            None => (Active::plain(&bcrypt), Vec::new()),
            Some(path) => {
                let (active, stamps) = load(path, &bcrypt);
                (active?, stamps)
            }
        };
        Ok(Self {
            path,
            bcrypt,
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
            let (loaded, stamps) = load(path, &self.bcrypt);
            state.stamps = stamps;
            let loaded = loaded.and_then(|new| {
                let weaker = if state.active.tls.is_some() && new.tls.is_none() {
                    Some("TLS")
                } else if state.active.users.required() && !new.users.required() {
                    Some("basic auth")
                } else {
                    None
                };
                weaker.map_or(Ok(new), |what| Err(LoadError::Weaker(path.clone(), what)))
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
    bcrypt: &Arc<Semaphore>,
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
    let active = Active {
        tls,
        headers: config.headers,
        users: Users::new(config.users, Arc::clone(bcrypt)),
    };
    (Ok(active), stamps)
}
