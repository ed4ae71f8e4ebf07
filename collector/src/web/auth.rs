//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10; hashes above cost
//! [`MAX_BCRYPT_COST`](super::config::MAX_BCRYPT_COST) are refused at load), so, as in the
//! exporter-toolkit, a verified (user, hash, password) is remembered, by an HMAC under a key
//! drawn at start, and later scrapes cost a hash, not a bcrypt. What is remembered survives a
//! reload for every user whose hash did not change (the hash is part of the HMAC).
//!
//! Verifications run off the async thread, in two lanes of [`CONCURRENT_BCRYPT`] each
//! ([`Turns`], shared across reloads): one for sources (client addresses) that have never sent
//! a wrong password, one for those that have. A check that cannot get a turn within
//! [`BCRYPT_WAIT`] is answered 503, so a flood of wrong passwords costs one core at most and
//! never queues without bound, and Prometheus, whose address never fails, gets its turn in its
//! own lane during the flood; a check queued in the clean lane whose source failed meanwhile
//! moves to the other. The permit goes with the verification, even when its client hangs up.
//! An unknown user is checked against a configured user's hash, so it costs what a known one
//! costs.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{Response, StatusCode, header},
};
use base64::Engine as _;
use ring::{hmac, rand::SystemRandom};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// bcrypt verifications that may run at once in each lane.
pub(crate) const CONCURRENT_BCRYPT: usize = 1;
/// How long a password check waits for its turn before the answer is 503.
pub(crate) const BCRYPT_WAIT: Duration = Duration::from_secs(2);
/// Verified credentials remembered; the set is cleared when it is full.
const REMEMBERED: usize = 1024;
/// Sources remembered as having failed; the set is cleared when it is full.
const FAILED_SOURCES: usize = 4096;

/// What the password check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on.
    Allowed,
    /// Wrong or missing credentials: 401.
    Unauthorized,
    /// Too many password checks waiting: 503, and the connection closes.
    Busy,
}

impl Verdict {
    /// The answer to a denied request.
    pub(super) fn denied(self) -> Option<Response<Body>> {
        let (status, text) = match self {
            Self::Allowed => return None,
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized\n"),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks at once; try again\n",
            ),
        };
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic"),
        );
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        Some(response)
    }
}

/// The turns of the password checks: two lanes, and the sources that have failed. Shared by
/// every configuration loaded, so that a reload neither doubles the CPU an attacker can take
/// nor forgets who failed.
#[derive(Debug)]
pub(crate) struct Turns {
    clean: Arc<Semaphore>,
    suspect: Arc<Semaphore>,
    failed: Mutex<HashSet<IpAddr>>,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            clean: Arc::new(Semaphore::new(CONCURRENT_BCRYPT)),
            suspect: Arc::new(Semaphore::new(CONCURRENT_BCRYPT)),
            failed: Mutex::new(HashSet::new()),
        }
    }
}

impl Turns {
    fn has_failed(&self, source: Option<IpAddr>) -> bool {
        // A source without an address is treated as one that failed.
        source.is_none_or(|ip| {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&ip)
        })
    }

    fn record(&self, source: Option<IpAddr>, passed: bool) {
        let Some(ip) = source else { return };
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if passed {
            failed.remove(&ip);
        } else {
            if failed.len() >= FAILED_SOURCES {
                failed.clear();
            }
            failed.insert(ip);
        }
    }

    /// A turn for `source` within [`BCRYPT_WAIT`]: in the clean lane while it has not failed
    /// (moving to the other lane if it fails while it waits), else in the suspect lane.
    async fn turn(&self, source: Option<IpAddr>) -> Option<OwnedSemaphorePermit> {
        let deadline = tokio::time::Instant::now() + BCRYPT_WAIT;
        if !self.has_failed(source) {
            let clean = tokio::time::timeout_at(deadline, Arc::clone(&self.clean).acquire_owned());
            let permit = clean.await.ok()?.ok()?;
            if !self.has_failed(source) {
                return Some(permit);
            }
        }
        let suspect = tokio::time::timeout_at(deadline, Arc::clone(&self.suspect).acquire_owned());
        suspect.await.ok()?.ok()
    }
}

/// The users and what has been verified.
pub(crate) struct Users {
    hashes: BTreeMap<String, String>,
    verified: Mutex<HashSet<Vec<u8>>>,
    key: hmac::Key,
    turns: Arc<Turns>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.hashes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Users by name with their bcrypt hashes, verifying in `turns`; what `previous` (the
    /// configuration this one replaces) verified is kept: it holds for every unchanged hash.
    pub(crate) fn new(
        hashes: BTreeMap<String, String>,
        turns: Arc<Turns>,
        previous: Option<&Self>,
    ) -> Self {
        let (key, verified) = match previous {
            Some(previous) => (
                previous.key.clone(),
                previous
                    .verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
            // A fresh key: remembered credentials cannot be tested offline.
            None => (
                hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                    .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &rand_fallback())),
                HashSet::new(),
            ),
        };
        Self {
            hashes,
            verified: Mutex::new(verified),
            key,
            turns,
        }
    }

    /// Whether authentication is required at all.
    pub(crate) fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether an `Authorization` header value, sent from `source`, carries a known user's
    /// password.
    pub(crate) async fn check(
        &self,
        authorization: Option<&[u8]>,
        source: Option<IpAddr>,
    ) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Verdict::Unauthorized;
        };
        let known = self.hashes.get(&user);
        // An unknown user costs a bcrypt too, against a configured hash (then fails).
        let Some(hash) = known.or_else(|| self.hashes.values().next()).cloned() else {
            return Verdict::Unauthorized;
        };
        let fingerprint = self.fingerprint(&user, &hash, &password);
        if known.is_some() && self.remembered(&fingerprint) {
            return Verdict::Allowed;
        }
        let Some(permit) = self.turns.turn(source).await else {
            return Verdict::Busy;
        };
        let started = Instant::now();
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let passed = verified && known.is_some();
        self.turns.record(source, passed);
        tracing::debug!(
            passed,
            seconds = started.elapsed().as_secs_f64(),
            "password checked"
        );
        if !passed {
            return Verdict::Unauthorized;
        }
        let mut set = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= REMEMBERED {
            set.clear();
        }
        set.insert(fingerprint);
        Verdict::Allowed
    }

    fn remembered(&self, fingerprint: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(fingerprint)
    }

    /// An HMAC of a credential and the hash it was verified against.
    fn fingerprint(&self, user: &str, hash: &str, password: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
        ctx.sign().as_ref().to_vec()
    }
}

/// A key when the system's random source fails (it does not on Linux ≥ 3.17): the time and
/// the process id, which a remote attacker does not know either.
fn rand_fallback() -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    [
        now.to_le_bytes().as_slice(),
        &std::process::id().to_le_bytes(),
    ]
    .concat()
}

/// The user and password of a `Basic` authorization header value.
pub(crate) fn basic_credentials(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests;
