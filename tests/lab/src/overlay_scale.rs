//! Scenario 8 of `cargo xtask bench`: one tunnel device that has seen thousands of remote
//! nodes, scraped with the overlay series per zone and per peer: what `/metrics` weighs, how
//! long a scrape takes and the daemon's CPU per scrape (reading every peer, the zones'
//! aggregation, the encoding).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use integration_tests::{
    daemon::{Daemon, LISTEN},
    eventually, http,
    overlay::{self, OverlayNode},
    raw,
};
use serde_json::{Value, json};

use crate::bench::{Summary, cpu_seconds};

/// Scrapes per mode.
const SCRAPES: usize = 40;

/// The endpoints: 10.211.0.1 on, 250 per /24; zone-a holds 10.211.0.0/20, zone-b the next /20.
fn endpoints(count: usize) -> Vec<Ipv4Addr> {
    (0..count)
        .map(|i| {
            let [third, fourth] =
                [i / 250, i % 250 + 1].map(|n| u8::try_from(n).unwrap_or(u8::MAX));
            Ipv4Addr::new(10, 211, third, fourth)
        })
        .collect()
}

/// `peers` forged endpoints send one frame each to the node's tunnel device; then, with
/// `overlay_series` `zone` and `peer` in turn, [`SCRAPES`] scrapes of `/metrics` one after the
/// other (identity coding).
pub fn scale(peers: usize) -> Value {
    let mut modes = serde_json::Map::new();
    for mode in ["zone", "peer"] {
        let topo = OverlayNode::new("osc");
        topo.node
            .ip(&["route", "add", "10.211.0.0/16", "dev", "u4"]);
        let daemon = Daemon::start(
            &topo.node,
            &[
                "--log",
                "warn",
                "--peer-zone",
                "10.211.0.0/20=zone-a,10.211.16.0/20=zone-b",
                "--overlay-series",
                mode,
            ],
        );
        let frame = overlay::inner_frame();
        let packets: Vec<Vec<u8>> = endpoints(peers)
            .into_iter()
            .map(|e| overlay::forged(e, &frame))
            .collect();
        raw::send_ipv4(&topo.v4_peer, &packets);
        // A measurement's precondition, not a test's wait: every peer counted.
        eventually("every peer counted", Duration::from_secs(60), || {
            let body = http::get(&topo.node, LISTEN, "/metrics/peers", &[], &[])
                .map(|r| r.body)
                .unwrap_or_default();
            let seen = body
                .lines()
                .filter(|l| l.starts_with("linkmeter_overlay_packets_total{"))
                .count();
            if seen >= peers { Ok(()) } else { Err(seen) }
        });
        let cpu = cpu_seconds(daemon.pid());
        let mut times = Vec::with_capacity(SCRAPES);
        let mut body_bytes = 0;
        for _ in 0..SCRAPES {
            let started = Instant::now();
            let body = http::get(&topo.node, LISTEN, "/metrics", &[], &[])
                .expect("scrape")
                .body;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            body_bytes = body.len();
        }
        #[allow(clippy::cast_precision_loss)]
        let cpu_ms = (cpu_seconds(daemon.pid()) - cpu) * 1000.0 / SCRAPES as f64;
        modes.insert(
            mode.to_owned(),
            json!({"body_bytes": body_bytes, "scrape_ms": Summary::of(&times), "cpu_ms_per_scrape": cpu_ms}),
        );
    }
    json!({"peers": peers, "modes": modes})
}
