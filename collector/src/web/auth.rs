//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so, as in the exporter-toolkit,
//! a verified (user, hash, password) is remembered by its SHA-256 and later scrapes cost a
//! hash, not a bcrypt. Verifications run off the async thread, at most [`CONCURRENT_BCRYPT`] at
//! a time, so that a flood of wrong passwords costs bounded CPU and never stalls scrapes. An
//! unknown user is checked against a fixed hash, so it costs what a known one costs.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use ring::digest;
use tokio::sync::Semaphore;

/// bcrypt verifications that may run at once.
pub(crate) const CONCURRENT_BCRYPT: usize = 2;
/// Verified credentials remembered; the set is cleared when it is full.
const REMEMBERED: usize = 1024;
/// A bcrypt hash (of a random password) that unknown users are checked against.
const DUMMY_HASH: &str = "$2b$10$0dKCcuWdXPh5DYDiEjSM5uHz2G8oyZBW9Cbz.tN/8IG/ZzLRgbOWa";

/// The users and what has been verified.
#[derive(Debug)]
pub(crate) struct Users {
    hashes: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Arc<Semaphore>,
}

impl Users {
    /// Users by name with their bcrypt hashes, verifying on `bcrypt` permits (shared across
    /// reloads, so a reload does not double the CPU an attacker can take).
    pub(crate) fn new(hashes: BTreeMap<String, String>, bcrypt: Arc<Semaphore>) -> Self {
        Self {
            hashes,
            verified: Mutex::new(HashSet::new()),
            bcrypt,
        }
    }

    /// Whether authentication is required at all.
    pub(crate) fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether an `Authorization` header value carries a known user's password.
    pub(crate) async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let known = self.hashes.get(&user);
        let hash = known.map_or(DUMMY_HASH, String::as_str).to_owned();
        let key = fingerprint(&user, &hash, &password);
        if known.is_some() && self.remembered(&key) {
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        let ok = verified && known.is_some();
        if ok {
            let mut set = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if set.len() >= REMEMBERED {
                set.clear();
            }
            set.insert(key);
        }
        ok
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }
}

/// The SHA-256 of a credential and the hash it was verified against.
fn fingerprint(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
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
        assert!(users.check(Some(&header("prometheus", "secret"))).await);
        assert_eq!(users.verified.lock().expect("lock").len(), 1);
        assert!(users.check(Some(&header("prometheus", "secret"))).await);
    }

    #[tokio::test]
    async fn wrong_passwords_unknown_users_and_bad_headers_fail() {
        let users = users();
        assert!(!users.check(Some(&header("prometheus", "Secret"))).await);
        assert!(!users.check(Some(&header("grafana", "secret"))).await);
        assert!(!users.check(None).await);
        assert!(!users.check(Some(b"Bearer abc")).await);
        assert!(!users.check(Some(b"Basic !!!")).await);
        assert!(!users.check(Some(b"Basic cHJvbWV0aGV1cw==")).await); // no ':'
        assert!(users.verified.lock().expect("lock").is_empty());
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

    #[test]
    fn the_dummy_hash_is_a_valid_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
        assert!(!bcrypt::verify("", DUMMY_HASH).expect("verify"));
    }
}
