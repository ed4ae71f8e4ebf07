//! The statistics backends, one module each: [`ethtool`] (driver statistics), [`ebpf`] (the TC
//! counter) and `netdev` (kernel link statistics).
//!
//! All three collect through [`Collect`], and [`execute`] runs every collection: it times it
//! and counts its failures, the one place the `linkmeter_collect_duration_seconds` and
//! `linkmeter_collect_errors_total` self-metrics come from (node_exporter's `execute()`).
//! Collecting only reads the kernel: it never probes, routes or attaches. The one piece of
//! state it updates is the ethtool backend's list of a driver's stat names, read again
//! (`GSTRINGS`) when the driver's count changed.

pub mod ebpf;
pub mod ethtool;
pub(crate) mod netdev;

use std::{collections::BTreeMap, future::Future, time::Instant};

use tracing::warn;

use crate::{
    Report, backend::ebpf::Attachment, discovery::DiscoveryError, metrics::Snapshot,
    node::Interfaces, policy::Backend,
};

/// A statistics backend's collection.
pub(crate) trait Collect {
    /// The backend, as labelled in the self-metrics.
    const BACKEND: Backend;

    /// Reads this backend's numbers for the interfaces routed to it into `out`, whose
    /// interfaces are those of `interfaces`, by ifindex. A failure leaves out what it concerns
    /// and is returned; the rest is still written.
    fn collect<A: Attachment>(
        &mut self,
        interfaces: &mut Interfaces<A>,
        out: &mut Snapshot,
    ) -> impl Future<Output = Vec<CollectError>>;
}

/// Why a collection (or part of one) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    /// The kernel link statistics dump failed.
    #[error(transparent)]
    Netdev(#[from] DiscoveryError),
    /// Reading one interface's driver statistics failed.
    #[error(transparent)]
    Ethtool(#[from] ethtool::EthtoolError),
    /// Reading the eBPF counters failed.
    #[error(transparent)]
    Ebpf(#[from] ebpf::MapReadError),
}

impl CollectError {
    /// Whether the interface vanished during the collection: counted, but not worth a log
    /// line (its link event follows).
    fn is_vanished(&self) -> bool {
        matches!(self, Self::Ethtool(e) if e.errno() == Some(libc::ENODEV))
    }
}

/// Duration of the last collection and failures so far, per backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CollectStats {
    /// Seconds the last collection of each backend took.
    pub(crate) duration: BTreeMap<Backend, f64>,
    /// Failures of each backend since start.
    pub(crate) errors: BTreeMap<Backend, u64>,
}

/// Runs one backend's collection, records how long it took and counts (and logs) its failures.
pub(crate) async fn execute<C: Collect, A: Attachment>(
    stats: &mut CollectStats,
    backend: &mut C,
    interfaces: &mut Interfaces<A>,
    out: &mut Snapshot,
) {
    let started = Instant::now();
    let failures = backend.collect(interfaces, out).await;
    stats
        .duration
        .insert(C::BACKEND, started.elapsed().as_secs_f64());
    *stats.errors.entry(C::BACKEND).or_default() += failures.len() as u64;
    for failure in failures.iter().filter(|f| !f.is_vanished()) {
        warn!(backend = %C::BACKEND, error = %Report(failure),
            "collection failed; its series are left out of this scrape");
    }
}
