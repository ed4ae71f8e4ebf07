//! Serving like a hardened exporter, against the real daemon in a namespace: the
//! exporter-toolkit web configuration (TLS with client certificates, basic auth, headers) with a
//! real Prometheus scraping through it, a certificate replaced on disk, and the server's limits
//! (header timeout, connection cap, shutdown with slow clients).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    http, kernel_tests_enabled,
    netns::NetNs,
    prometheus::{self, Prometheus},
    tls::{self, Pki, Request},
    web::{PASSWORD, USER, connect_from, publish_secret, write_web_config},
};

/// The DaemonSet's `terminationGracePeriodSeconds`.
fn termination_grace_period() -> Duration {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/daemonset.yaml"
    ))
    .expect("read daemonset.yaml");
    let seconds = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .expect("terminationGracePeriodSeconds in the DaemonSet")
        .trim()
        .parse()
        .expect("a number of seconds");
    Duration::from_secs(seconds)
}

fn https(ns: &NetNs, pki: &Pki, path: &str, request: &Request<'_>) -> Result<tls::Answer, String> {
    ns.within(|| tls::get(pki, LISTEN, path, request))
}

const AUTHORIZED: Request<'static> = Request {
    client_cert: true,
    basic_auth: Some((USER, PASSWORD)),
    headers: &[],
};

/// Series names of an exposition (values change between collections). Drop series are left
/// out: one appears whenever the kernel drops a packet of a new reason between two scrapes (a
/// closed connection's late segment, say).
fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("linkmeter_interface_drops_total"))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

#[test]
fn prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth() {
    if !kernel_tests_enabled() || !prometheus::available() {
        return;
    }
    let ns = NetNs::new("tls");
    let pki = Pki::new(&std::env::temp_dir().join(format!("{}.pki", ns.name())));
    let web = write_web_config(&pki);
    let web_arg = web.to_str().expect("UTF-8 path");
    let mut daemon = Daemon::spawn(&ns, &[], &["--web-config-file", web_arg, "--pin=false"]);
    integration_tests::eventually("ready over TLS", Duration::from_secs(20), || {
        match https(
            &ns,
            &pki,
            "/readyz",
            &Request {
                client_cert: true,
                ..Request::default()
            },
        ) {
            Ok(a) if a.status == 200 => Ok(()),
            other => Err((other.map(|a| a.status), daemon.log_text())),
        }
    });

    // The right credentials: the exposition, with the configured header.
    let ok = https(&ns, &pki, "/metrics", &AUTHORIZED).expect("scrape over TLS");
    assert_eq!(ok.status, 200);
    let text = String::from_utf8(ok.body.clone()).expect("UTF-8 exposition");
    assert!(text.contains("linkmeter_build_info{"), "{text}");
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));

    // gzip over TLS decodes to the same exposition (same series; values move between scrapes).
    let gz = https(
        &ns,
        &pki,
        "/metrics",
        &Request {
            headers: &[("Accept-Encoding", "gzip")],
            ..AUTHORIZED
        },
    )
    .expect("gzip scrape");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut unzipped)
        .expect("gunzip");
    assert_eq!(series(&unzipped), series(&text));

    // A wrong password, or none: 401 with a Basic challenge. The probes stay open.
    for auth in [Some((USER, "wrong")), Some(("grafana", PASSWORD)), None] {
        let denied = https(
            &ns,
            &pki,
            "/metrics",
            &Request {
                basic_auth: auth,
                ..AUTHORIZED
            },
        )
        .expect("answered");
        assert_eq!(denied.status, 401, "{auth:?}");
        assert_eq!(denied.header("www-authenticate"), Some("Basic"));
    }

    // No client certificate when one is required: the handshake is refused.
    let refused = https(
        &ns,
        &pki,
        "/metrics",
        &Request {
            client_cert: false,
            ..AUTHORIZED
        },
    );
    let refused = refused.expect_err("served without a client certificate");
    assert!(refused.contains("CertificateRequired"), "{refused}");

    // Plain HTTP to the TLS port: no HTTP answer.
    assert!(
        http::get(&ns, LISTEN, "/metrics", &[], &[]).is_none(),
        "plain HTTP was answered on the TLS port"
    );
    assert!(daemon.exited().is_none(), "the daemon died");

    // A real Prometheus with tls_config and basic_auth: up == 1.
    let dir = pki.dir.display();
    let server = Prometheus::start_with_job(
        &ns,
        LISTEN,
        &[],
        &format!(
            "    scheme: https\n    tls_config:\n      ca_file: {dir}/ca.crt\n      \
             cert_file: {dir}/client.crt\n      key_file: {dir}/client.key\n    \
             basic_auth:\n      username: {USER}\n      password: {PASSWORD}\n"
        ),
    );
    let up = server.wait_for("up{job=\"linkmeter\"} == 1", Duration::from_secs(60));
    assert_eq!(up.len(), 1);
    server.wait_for(
        "linkmeter_build_info{job=\"linkmeter\"}",
        Duration::from_secs(10),
    );

    // A certificate replaced on disk is served without a restart: the Secret's `..data`
    // symlink is swapped to a new version, as the kubelet does.
    let first = ok.server_cert;
    let second = pki.issue_server("rotated", "second");
    publish_secret(&pki, "rotated", "v2");
    assert_ne!(first, second);
    integration_tests::eventually(
        "the new certificate served",
        Duration::from_secs(10),
        || match https(&ns, &pki, "/metrics", &AUTHORIZED) {
            Ok(a) if a.status == 200 && a.server_cert == second => Ok(()),
            other => Err(other.map(|a| (a.status, a.server_cert.len()))),
        },
    );
    // A broken configuration is refused and the one in force stays.
    std::fs::write(&web, "tls_server_config: [\n").expect("break web.yml");
    let still = https(&ns, &pki, "/metrics", &AUTHORIZED).expect("served");
    assert_eq!((still.status, still.server_cert == second), (200, true));
    assert!(
        daemon
            .log_lines_at("ERROR")
            .iter()
            .any(|l| l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("stays in force"))),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.exited().is_none(), "the daemon restarted or died");
    // Prometheus kept scraping through all of it.
    let up = server.wait_for("up{job=\"linkmeter\"} == 1", Duration::from_secs(10));
    assert_eq!(up.len(), 1);
    drop(server);
    assert!(daemon.stop().success());
    let _ignored = std::fs::remove_dir_all(&pki.dir);
}

/// Raises this process's open-file limit to `n` (the hard limit allowing).
fn allow_open_files(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < n {
        setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard).expect("setrlimit");
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// `GET /readyz` on an open connection; the status line.
fn request_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: linkmeter\r\n\r\n")
        .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = [0; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn half_a_request_header_is_cut_off_after_the_timeout() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("hdr");
    let _daemon = Daemon::start(&ns, &["--pin=false", "--http-header-timeout", "2"]);
    let mut half = ns.within(|| TcpStream::connect(LISTEN)).expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: linkmeter\r\nAccept: ")
        .expect("send half a header");
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut buf = [0; 256];
    match half.read(&mut buf) {
        Ok(n) => assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "answered {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn idle_and_slow_clients_neither_block_scrapes_nor_shutdown() {
    if !kernel_tests_enabled() {
        return;
    }
    const CAP: usize = 64;
    let ns = NetNs::new("lim");
    // A header timeout longer than the grace period: only the limits can be at work below.
    let mut daemon = Daemon::start(
        &ns,
        &[
            "--pin=false",
            "--http-header-timeout",
            "600",
            "--http-max-connections",
            &CAP.to_string(),
        ],
    );
    let baseline = open_descriptors(daemon.pid());
    let local = std::net::Ipv4Addr::LOCALHOST;
    let flooder = std::net::Ipv4Addr::new(127, 0, 0, 2);

    // The scraper's kept-alive connection, then 1,000 idle connections from another address.
    let mut kept = ns.within(|| connect_from(local, LISTEN));
    assert_eq!(request_on(&mut kept), "HTTP/1.1 200 OK");
    allow_open_files(4096);
    let idle: Vec<TcpStream> =
        ns.within(|| (0..1000).map(|_| connect_from(flooder, LISTEN)).collect());
    for _ in 0..5 {
        let r = http::get(&ns, LISTEN, "/metrics", &[], &[]).expect("scrape with 1,000 idle");
        assert_eq!(r.status, 200);
    }
    // The flood evicted its own connections, not the scraper's.
    assert_eq!(request_on(&mut kept), "HTTP/1.1 200 OK");
    let held = open_descriptors(daemon.pid());
    assert!(
        held <= baseline + CAP + 1,
        "{held} descriptors with {CAP} allowed connections (baseline {baseline})"
    );
    drop(idle);

    // Shutdown with clients that never finish their header (the header timeout is 600 s):
    // within the grace period.
    let slow: Vec<TcpStream> = ns.within(|| {
        (0..CAP)
            .map(|_| {
                let mut s = TcpStream::connect(LISTEN).expect("connect");
                s.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
                s
            })
            .collect()
    });
    assert!(daemon.exited().is_none());
    let started = Instant::now();
    let status = daemon.stop();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < termination_grace_period(),
        "shutdown took {took:?} with {} slow clients",
        slow.len()
    );
}
