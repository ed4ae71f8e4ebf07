//! The endpoint's protection under attack and careless edits (issue 21, defects 4 and 5), against
//! the real daemon in a namespace.
//!
//! - A flood of wrong passwords from one source never locks Prometheus out: before the fix,
//!   80 parallel wrong-password loops made every correct-password scrape of a freshly started
//!   daemon wait for the one bcrypt turn and get 503. A hash whose cost would pin a core is
//!   refused at start, naming its user.
//! - A reload never weakens the protection: before the fix, a web configuration rewritten
//!   without `client_auth_type` and `client_ca_file` (or cut off while being rewritten) was
//!   accepted, and a client without a certificate got 200.

use std::{
    io::{Read as _, Write as _},
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    eventually, http, kernel_tests_enabled,
    netns::{NetNs, within_named},
    tls::{self, Pki, Request},
    web::{PASSWORD, USER, connect_from, write_web_config},
};

/// `Authorization` of `user:password`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One `GET /metrics` with a wrong password from `source`; its status (0: no answer).
fn wrong_password_from(source: Ipv4Addr) -> u16 {
    let mut stream = connect_from(source, LISTEN);
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: linkmeter\r\nConnection: close\r\nAuthorization: {}\r\n\r\n",
        basic(USER, "guess")
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[test]
fn a_flood_of_wrong_passwords_never_locks_prometheus_out() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("afl");
    let dir = std::env::temp_dir().join(format!("{}.web", ns.name()));
    std::fs::create_dir_all(&dir).expect("dir");
    let web = dir.join("web.yml");

    // A cost that would pin a core for days is refused at start, naming the user.
    let cheap = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  {USER}: '{}'\n",
            cheap.replacen("$04$", "$31$", 1)
        ),
    )
    .expect("write web.yml");
    let web_arg = web.to_str().expect("UTF-8 path");
    let mut refused = Daemon::spawn(&ns, &[], &["--web-config-file", web_arg, "--pin=false"]);
    let status = eventually("refused at start", Duration::from_secs(20), || {
        refused.exited().ok_or(())
    });
    assert!(!status.success());
    let said = refused.log_text();
    assert!(
        said.contains(&format!("{USER:?}")) && said.contains("cost 31") && said.contains("14"),
        "{said}"
    );

    // A realistic cost: each check takes tens of milliseconds of CPU.
    let hash = bcrypt::hash(PASSWORD, 10).expect("bcrypt");
    std::fs::write(&web, format!("basic_auth_users:\n  {USER}: '{hash}'\n")).expect("write");
    let daemon = Daemon::spawn(&ns, &[], &["--web-config-file", web_arg, "--pin=false"]);
    eventually("ready", Duration::from_secs(20), || {
        http::get(&ns, LISTEN, "/readyz", &[], &[])
            .map(|r| r.status)
            .filter(|&s| s == 200)
            .ok_or_else(|| daemon.log_text())
    });

    // 80 parallel loops of wrong passwords from 127.0.0.2.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let loops: Vec<_> = (0..80)
        .map(|_| {
            let (stop, ns) = (Arc::clone(&stop), ns.name().to_owned());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(within_named(&ns, || wrong_password_from(attacker)));
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    // Prometheus, from 127.0.0.1, with the right password: every scrape gets in, the first
    // one included (nothing remembered yet on a fresh daemon).
    let authorization = basic(USER, PASSWORD);
    let mut scrapes = Vec::new();
    for _ in 0..10 {
        let answer = http::get(
            &ns,
            LISTEN,
            "/metrics",
            &[],
            &[("Authorization", authorization.as_str())],
        );
        scrapes.push(answer.map(|r| r.status));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = loops
        .into_iter()
        .flat_map(|t| t.join().expect("attacker loop"))
        .collect();
    assert_eq!(scrapes, vec![Some(200); 10], "{}", daemon.log_text());
    assert!(statuses.len() >= 80, "the flood ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "the attacker only ever got 401 or 503: {:?}",
        statuses
            .iter()
            .filter(|s| ![401, 503].contains(*s))
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(daemon.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /metrics` over TLS with what `request` presents.
fn https(ns: &NetNs, pki: &Pki, request: &Request<'_>) -> Result<u16, String> {
    ns.within(|| tls::get(pki, LISTEN, "/metrics", request))
        .map(|a| a.status)
}

const AUTHORIZED: Request<'static> = Request {
    client_cert: true,
    basic_auth: Some((USER, PASSWORD)),
    headers: &[],
};

#[test]
fn a_reload_that_would_weaken_the_protection_is_refused() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("wkn");
    let pki = Pki::new(&std::env::temp_dir().join(format!("{}.pki", ns.name())));
    let web = write_web_config(&pki);
    let full = std::fs::read_to_string(&web).expect("read web.yml");
    let web_arg = web.to_str().expect("UTF-8 path");
    let daemon = Daemon::spawn(&ns, &[], &["--web-config-file", web_arg, "--pin=false"]);
    eventually("ready over TLS", Duration::from_secs(20), || {
        https(&ns, &pki, &AUTHORIZED)
            .ok()
            .filter(|&s| s == 200)
            .ok_or_else(|| daemon.log_text())
    });
    let without_client_certs: String = full
        .lines()
        .filter(|l| !l.contains("client_auth_type") && !l.contains("client_ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Cut off while being rewritten: the TLS section ends before the client certificates.
    let cut_off = &full[..full.find("  client_auth_type").expect("client_auth_type")];
    let without_users = &full[..full.find("basic_auth_users").expect("basic_auth_users")];
    let said = |level, text: &str| {
        daemon
            .log_lines_at(level)
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .count()
    };
    let refusals = || said("ERROR", "weakening the protection takes a restart");
    let reloads = || said("INFO", "web configuration reloaded");
    for (n, (what, text)) in [
        ("client certificates removed", without_client_certs.as_str()),
        ("cut off while being rewritten", cut_off),
        ("basic auth removed", without_users),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&web, text).expect("rewrite web.yml");
        // Any request makes the daemon look at the file again.
        eventually(what, Duration::from_secs(10), || {
            let _ = https(&ns, &pki, &AUTHORIZED);
            (refusals() > n)
                .then_some(())
                .ok_or_else(|| daemon.log_text())
        });
        let no_cert = https(
            &ns,
            &pki,
            &Request {
                client_cert: false,
                ..AUTHORIZED
            },
        );
        assert!(
            no_cert
                .as_ref()
                .is_err_and(|e| e.contains("CertificateRequired")),
            "{what}: a client without a certificate got {no_cert:?}"
        );
        let no_password = https(
            &ns,
            &pki,
            &Request {
                basic_auth: None,
                ..AUTHORIZED
            },
        );
        assert_eq!(no_password, Ok(401), "{what}");
        assert_eq!(https(&ns, &pki, &AUTHORIZED), Ok(200), "{what}");
        // The whole file again is no weakening: reloaded (and the next refusal is said anew).
        std::fs::write(&web, &full).expect("restore web.yml");
        eventually("restored", Duration::from_secs(10), || {
            let _ = https(&ns, &pki, &AUTHORIZED);
            (reloads() > n)
                .then_some(())
                .ok_or_else(|| daemon.log_text())
        });
    }
    assert!(daemon.stop().success());
    let _ = std::fs::remove_dir_all(&pki.dir);
}
