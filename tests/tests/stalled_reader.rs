//! A client that pipelines requests and never reads their answers is cut off (issue 21, guard
//! 10): its connection is closed once nothing has been written to it for the request timeout
//! (a write-progress deadline), and the kernel lets go of the answers still queued for it
//! (`TCP_USER_TIMEOUT`), so that such clients cannot pin kernel send buffers (255 of them held
//! ~400 MB before). On `main` before the fix the server closed the connection at the header
//! timeout, but the orphaned socket kept its unsent answers in `FIN-WAIT-1`, probing the shut
//! window for as long as the client acknowledged.

use std::{
    io::Write as _,
    net::TcpStream,
    time::{Duration, Instant},
};

use integration_tests::{daemon::Daemon, kernel_tests_enabled, netns::NetNs};

/// The daemon's connections (server side) in any state but listening — an orphan still
/// holding unsent answers in `FIN-WAIT-1` included — from `ss` in `ns`.
fn held(ns: &NetNs) -> Vec<String> {
    ns.exec(&["ss", "-Htn", "( sport = :9977 )"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_client_that_never_reads_is_closed_after_the_request_timeout() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = NetNs::new("stall");
    let daemon = Daemon::start(&ns, &["--http-request-timeout", "2"]);
    let mut client = ns.within(|| {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        // A small receive window, set before the handshake: the answers pile up at once.
        setsockopt(&fd, sockopt::RcvBuf, &4096).expect("small receive buffer");
        let to = SockaddrIn::new(127, 0, 0, 1, 9977);
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &to).expect("connect");
        TcpStream::from(fd)
    });
    let requests = "GET /metrics HTTP/1.1\r\nHost: linkmeter\r\n\r\n".repeat(255);
    client
        .write_all(requests.as_bytes())
        .expect("pipelined requests");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(held(&ns).len(), 1, "the connection is served");
    let start = Instant::now();
    loop {
        let held = held(&ns);
        if held.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a client that does not read still holds server-side buffers after {:?}: {held:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(client);
    assert!(daemon.stop().success());
}
