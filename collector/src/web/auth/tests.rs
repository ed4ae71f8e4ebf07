//! Unit tests of basic auth: remembered credentials, lanes, turns.

use super::*;

fn users() -> Users {
    let hash = bcrypt::hash("secret", 4).expect("hash");
    Users::new(
        BTreeMap::from([("prometheus".to_owned(), hash)]),
        Arc::new(Turns::default()),
        None,
    )
}

const PROMETHEUS: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)));
const ATTACKER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66)));

/// The verdict for `user:password` from `source`.
async fn verdict(users: &Users, user: &str, password: &str, source: Option<IpAddr>) -> Verdict {
    users.check(Some(&header(user, password)), source).await
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
    assert_eq!(
        users.check(Some(&right), PROMETHEUS).await,
        Verdict::Allowed
    );
    assert_eq!(users.verified.lock().expect("lock").len(), 1);
    // Remembered: allowed even with no bcrypt turn to be had.
    let _all_turns = Arc::clone(&users.turns.clean)
        .try_acquire_owned()
        .expect("turn");
    assert_eq!(
        users.check(Some(&right), PROMETHEUS).await,
        Verdict::Allowed
    );
    // And across a reload with the same hash; not for a changed one.
    let same = Users::new(users.hashes.clone(), Arc::clone(&users.turns), Some(&users));
    assert_eq!(same.check(Some(&right), PROMETHEUS).await, Verdict::Allowed);
    let changed = Users::new(
        BTreeMap::from([(
            "prometheus".to_owned(),
            bcrypt::hash("secret", 4).expect("hash"),
        )]),
        Arc::clone(&users.turns),
        Some(&users),
    );
    assert_eq!(changed.check(Some(&right), PROMETHEUS).await, Verdict::Busy);
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
        assert_eq!(
            users.check(Some(&bad), ATTACKER).await,
            Verdict::Unauthorized
        );
    }
    assert_eq!(users.check(None, ATTACKER).await, Verdict::Unauthorized);
    assert!(users.verified.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_check_that_gets_no_turn_is_busy_not_queued_forever() {
    let users = users();
    let _all_turns = Arc::clone(&users.turns.clean)
        .try_acquire_owned()
        .expect("turn");
    assert_eq!(
        verdict(&users, "prometheus", "secret", PROMETHEUS).await,
        Verdict::Busy
    );
}

#[tokio::test]
async fn a_source_that_failed_waits_in_its_own_lane_and_others_pass() {
    let users = users();
    assert_eq!(
        verdict(&users, "prometheus", "guess", ATTACKER).await,
        Verdict::Unauthorized
    );
    // The attacker's lane is taken (a flood of its checks); Prometheus still gets its turn.
    let _flood = Arc::clone(&users.turns.suspect)
        .try_acquire_owned()
        .expect("turn");
    assert_eq!(
        verdict(&users, "prometheus", "secret", PROMETHEUS).await,
        Verdict::Allowed
    );
    // A success clears a source that had failed.
    users.turns.record(ATTACKER, true);
    assert!(!users.turns.has_failed(ATTACKER));
    assert!(users.turns.has_failed(None));
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
