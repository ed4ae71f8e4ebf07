//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so, as in the exporter-toolkit,
//! a verified (user, hash, password) is remembered, by an HMAC under a key drawn at load, and
//! later scrapes cost a hash, not a bcrypt. Verifications run off the async thread, at most
//! [`CONCURRENT_BCRYPT`] at a time (the permit goes with the verification, even when its client
//! hangs up); a check that cannot get a turn within [`BCRYPT_WAIT`] is answered 503, so a flood
//! of wrong passwords costs one core at most and never queues without bound. An unknown user is
//! checked against a configured user's hash, so it costs what a known one costs.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    http::{Response, StatusCode, header},
};
use base64::Engine as _;
use ring::{hmac, rand::SystemRandom};
use tokio::sync::Semaphore;

/// bcrypt verifications that may run at once.
pub(crate) const CONCURRENT_BCRYPT: usize = 1;
/// How long a password check waits for its turn before the answer is 503.
pub(crate) const BCRYPT_WAIT: Duration = Duration::from_secs(2);
/// Verified credentials remembered; the set is cleared when it is full.
const REMEMBERED: usize = 1024;

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

/// The users and what has been verified.
pub(crate) struct Users {
    hashes: BTreeMap<String, String>,
    verified: Mutex<HashSet<Vec<u8>>>,
    key: hmac::Key,
    bcrypt: Arc<Semaphore>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.hashes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Users by name with their bcrypt hashes, verifying on `bcrypt` permits (shared across
    /// reloads, so a reload does not double the CPU an attacker can take).
    pub(crate) fn new(hashes: BTreeMap<String, String>, bcrypt: Arc<Semaphore>) -> Self {
        // A fresh key: remembered credentials cannot be tested offline, nor survive a reload.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &rand_fallback()));
        Self {
            hashes,
            verified: Mutex::new(HashSet::new()),
            key,
            bcrypt,
        }
    }

    /// Whether authentication is required at all.
    pub(crate) fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether an `Authorization` header value carries a known user's password.
    pub(crate) async fn check(&self, authorization: Option<&[u8]>) -> Verdict {
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
        let permit = tokio::time::timeout(BCRYPT_WAIT, Arc::clone(&self.bcrypt).acquire_owned());
        let Ok(Ok(permit)) = permit.await else {
            return Verdict::Busy;
        };
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(verified && known.is_some()) {
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
mod tests {
    use super::*;

    fn users() -> Users {
        let hash = bcrypt::hash("secret", 4).expect("hash");
        Users::new(
            BTreeMap::from([("prometheus".to_owned(), hash)]),
            Arc::new(Semaphore::new(CONCURRENT_BCRYPT)),
        )
    }

    fn header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn the_right_password_passes_and_is_remembered() {
        let users = users();
        assert!(users.required());
        let right = header("prometheus", "secret");
        assert_eq!(users.check(Some(&right)).await, Verdict::Allowed);
        assert_eq!(users.verified.lock().expect("lock").len(), 1);
        // Remembered: allowed even with no bcrypt turn to be had.
        let _all_turns = Arc::clone(&users.bcrypt).try_acquire_owned().expect("turn");
        assert_eq!(users.check(Some(&right)).await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn wrong_passwords_unknown_users_and_bad_headers_fail() {
        let users = users();
        for bad in [
            header("prometheus", "Secret"),
            header("grafana", "secret"),
            b"Bearer abc".to_vec(),
            b"Basic !!!".to_vec(),
            b"Basic cHJvbWV0aGV1cw==".to_vec(), // no ':'
        ] {
            assert_eq!(users.check(Some(&bad)).await, Verdict::Unauthorized);
        }
        assert_eq!(users.check(None).await, Verdict::Unauthorized);
        assert!(users.verified.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_gets_no_turn_is_busy_not_queued_forever() {
        let users = users();
        let _all_turns = Arc::clone(&users.bcrypt).try_acquire_owned().expect("turn");
        assert_eq!(
            users.check(Some(&header("prometheus", "secret"))).await,
            Verdict::Busy
        );
    }

    #[test]
    fn credentials_keep_colons_in_the_password() {
        let (user, password) = basic_credentials(&header("u", "a:b")).expect("credentials");
        assert_eq!((user.as_str(), password.as_slice()), ("u", &b"a:b"[..]));
        assert!(
            basic_credentials(b"basic dTpw").is_some(),
            "scheme is case-insensitive"
        );
    }
}
