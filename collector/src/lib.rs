//! linkmeter: per-interface network statistics for Kubernetes nodes.
//!
//! Every interface is routed to the statistics backend that works for it: ethtool driver
//! statistics for physical NICs, an eBPF TC counter for virtual interfaces that reject ethtool
//! (Cilium's `cilium_vxlan`, `cilium_geneve`, ...), and kernel link statistics for all. The
//! results are merged into one Prometheus / OpenMetrics endpoint.
//!
//! `docs/architecture.md` draws the data flow and names the file of each concept. In short:
//!
//! - [`config`]: defaults, limits, the TOML file, flags and environment, validated once.
//! - `discovery`: rtnetlink link dumps and link events (and link modes over ethtool netlink).
//! - `filter` and `policy`: interface patterns and the pure routing decision.
//! - [`backend`]: the three backends, each in its own module, all collecting through one
//!   interface: [`backend::ethtool`], [`backend::ebpf`] and `backend::netdev`.
//! - `node`: the node's interfaces, each with its backend as a sum type; routing, probing and
//!   attaching on link events and resyncs; read-only collection into a snapshot.
//! - `daemon`: the one owner task of `linkmeter run` (events, resync, scrapes, shutdown).
//! - `metrics` and `http`: the exposition and the endpoints; `web`: serving them (TLS, basic
//!   auth, the exporter-toolkit web configuration, timeouts and connection limits).
//! - [`cli`]: the command line, one file per subcommand.

pub mod backend;
pub mod cli;
pub mod config;
pub(crate) mod daemon;
pub(crate) mod discovery;
pub(crate) mod filter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod node;
pub(crate) mod policy;
pub(crate) mod web;
pub(crate) mod zones;

use std::{error::Error, fmt};

/// Displays an error with its causes as `message: cause: cause`: how every error reaches a log
/// line or the terminal.
///
/// linkmeter's own errors keep the cause out of their message (it is their `source()`). Some
/// dependencies repeat the source in their message as well (aya's `EbpfError::MapError` is
/// `"map error: {0}"`); a cause whose text is already on the line is therefore not repeated.
pub(crate) struct Report<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(err) = cause {
            let text = err.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = err.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the map")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("map error: {0}")]
    struct Repeating(#[source] std::io::Error);

    #[test]
    fn causes_are_printed_once_each() {
        let io = || std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            Report(&Outer(io())).to_string(),
            "reading the map: Operation not permitted (os error 1)"
        );
        assert_eq!(
            Report(&Repeating(io())).to_string(),
            "map error: Operation not permitted (os error 1)"
        );
    }
}
