//! The limits on a real loopback listener with a stand-in router.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, TcpStream},
};

use axum::routing::get;
use tokio::sync::Notify;

use super::{
    cap::{Busy, Slot},
    *,
};

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        max_connections: 4,
        shutdown_timeout: Duration::from_millis(500),
    }
}

/// Serves a router with `/fast` and `/slow` (never answers) on an ephemeral port; returns its
/// address, the shutdown trigger and the server task.
async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    Arc<Notify>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let router = Router::new()
        .route("/fast", get(|| async { "fast\n" }))
        .route("/slow", get(std::future::pending::<&'static str>));
    let web = Arc::new(Web::load(None).expect("plain"));
    let stop = Arc::new(Notify::new());
    let signal = Arc::clone(&stop);
    let task = tokio::spawn(serve(listener, router, web, limits, async move {
        signal.notified().await;
    }));
    (address, stop, task)
}

/// `GET path` over a fresh blocking connection (in a blocking task); the status line.
async fn status(address: std::net::SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(address).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        let _read = s.read_to_string(&mut text);
        text.lines().next().unwrap_or_default().to_owned()
    })
    .await
    .expect("request task")
}

/// Reads until the server closes the connection; `true` when it did (EOF or reset).
fn closed_by_server(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => closed_by_server(s),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_is_cut_off_and_a_slow_answer_is_a_503() {
    let (address, stop, task) = start(limits()).await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(address).expect("connect");
        s.write_all(b"GET /fast HTTP/1.1\r\nHost:").expect("send");
        closed_by_server(s)
    });
    assert!(closed.await.expect("task"));
    assert_eq!(
        status(address, "/slow").await,
        "HTTP/1.1 503 Service Unavailable"
    );
    assert_eq!(status(address, "/fast").await, "HTTP/1.1 200 OK");
    stop.notify_one();
    task.await.expect("server task").expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let (address, stop, task) = start(Limits {
        header_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    // Every new connection evicts one of the idle ones; scrapes are served.
    for _ in 0..3 {
        assert_eq!(status(address, "/fast").await, "HTTP/1.1 200 OK");
    }
    let oldest = idle.into_iter().next().expect("one");
    assert!(
        tokio::task::spawn_blocking(move || closed_by_server(oldest))
            .await
            .expect("task")
    );
    stop.notify_one();
    task.await.expect("server task").expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_requests_that_never_finish() {
    let (address, stop, task) = start(Limits {
        request_timeout: Duration::from_secs(3600),
        ..limits()
    })
    .await;
    let hanging: Vec<_> = (0..2)
        .map(|_| tokio::spawn(status(address, "/slow")))
        .collect();
    // Both requests are in flight before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the server stopped despite the hanging requests")
        .expect("server task")
        .expect("served");
    for h in hanging {
        assert_eq!(h.await.expect("client"), "", "closed without an answer");
    }
}

const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

#[test]
fn busy_connections_are_never_evicted() {
    let connections = Arc::new(Connections::new(2));
    let a = connections.admit(HERE).expect("room");
    let b = connections.admit(HERE).expect("room");
    let busy_a = Busy::new(&a.shared);
    let busy_b = Busy::new(&b.shared);
    assert!(
        connections.admit(HERE).is_none(),
        "every connection is busy"
    );
    drop(busy_b);
    let c = connections.admit(HERE).expect("b is idle now");
    assert_eq!(connections.open.lock().expect("lock").len(), 2);
    drop((a, b, c, busy_a));
    assert!(connections.open.lock().expect("lock").is_empty());
}

#[test]
fn the_address_with_the_most_connections_gives_up_its_oldest_first() {
    let connections = Arc::new(Connections::new(4));
    let scraper = connections.admit(HERE).expect("room");
    let flood: Vec<Slot> = (0..3)
        .map(|_| connections.admit(THERE).expect("room"))
        .collect();
    // Three newcomers from the flooding address: each evicts one of its own, oldest first.
    let mut newer = Vec::new();
    for _ in 0..3 {
        newer.push(connections.admit(THERE).expect("room"));
    }
    let open = connections.open.lock().expect("lock");
    assert!(
        open.contains_key(&scraper.id),
        "the scraper's idle connection was evicted"
    );
    for old in &flood {
        assert!(!open.contains_key(&old.id));
    }
    assert_eq!(open.len(), 4);
}
