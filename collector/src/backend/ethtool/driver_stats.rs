//! The ethtool backend as the node uses it: probing an interface once per lifetime, and reading
//! the driver statistics of every ethtool-routed interface at each scrape.

use regex::Regex;

use super::{Ethtool, EthtoolIo, Probe};
use crate::{
    backend::{Collect, CollectError, ebpf::Attachment},
    metrics::Snapshot,
    node::{Interfaces, Measure},
    policy::Backend,
};

/// The driver statistics of one ethtool-routed interface: their names in driver order (read
/// once per lifetime, and again when the driver's count changes) and which pass the allowlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DriverStats {
    names: Vec<String>,
    allowed: Vec<usize>,
}

impl DriverStats {
    /// The stats named `names`, of which those matching `allowlist` are exported.
    pub(crate) fn new(names: Vec<String>, allowlist: &Regex) -> Self {
        let allowed = names
            .iter()
            .enumerate()
            .filter(|(_, n)| allowlist.is_match(n))
            .map(|(i, _)| i)
            .collect();
        Self { names, allowed }
    }

    /// How many statistics the driver exports.
    pub(crate) fn count(&self) -> usize {
        self.names.len()
    }

    /// The allowed (name, value) pairs of `values`, which are in driver order.
    fn export(&self, values: &[u64]) -> Vec<(String, u64)> {
        self.allowed
            .iter()
            .filter_map(|&k| Some((self.names.get(k)?.clone(), *values.get(k)?)))
            .collect()
    }
}

/// Interfaces read between two yields to the runtime.
const YIELD_EVERY: usize = 128;

/// Driver statistics for the node: [`Ethtool`] plus the configured stat allowlist.
#[derive(Debug)]
pub(crate) struct EthtoolBackend<I> {
    ethtool: Ethtool<I>,
    allowlist: Regex,
}

impl<I: EthtoolIo> EthtoolBackend<I> {
    /// Reads through `io`; exports the statistics whose names match `allowlist`.
    pub(crate) const fn new(io: I, allowlist: Regex) -> Self {
        Self {
            ethtool: Ethtool::new(io),
            allowlist,
        }
    }

    /// Probes `interface` (once per lifetime; see [`Ethtool::probe`]).
    pub(crate) fn probe(&self, interface: &str) -> Probe {
        self.ethtool.probe(interface)
    }

    /// The per-interface state of an interface whose probe found `names`.
    pub(crate) fn driver_stats(&self, names: Vec<String>) -> DriverStats {
        DriverStats::new(names, &self.allowlist)
    }
}

impl<I: EthtoolIo> Collect for EthtoolBackend<I> {
    const BACKEND: Backend = Backend::Ethtool;

    /// One `GSTATS` per ethtool-routed interface with statistics. When the driver's count moved
    /// the values are refused, the names read again for the next scrape, and the interface's
    /// raw statistics are left out of this one.
    async fn collect<A: Attachment>(
        &mut self,
        interfaces: &mut Interfaces<A>,
        out: &mut Snapshot,
    ) -> Vec<CollectError> {
        let mut failures = Vec::new();
        for (n, (ifindex, interface)) in interfaces.iter_mut().enumerate() {
            if n % YIELD_EVERY == YIELD_EVERY - 1 {
                // One ioctl per interface adds up: let the server take in scrapes meanwhile.
                tokio::task::yield_now().await;
            }
            let Measure::Ethtool(stats) = &mut interface.measure else {
                continue;
            };
            if stats.count() == 0 {
                continue;
            }
            let name = &interface.link.name;
            match self.ethtool.values(name, stats.count()) {
                Ok(values) => {
                    if let Some(exported) = out.interface_mut(*ifindex) {
                        exported.ethtool = stats.export(&values);
                    }
                }
                Err(err) => {
                    if err.count_changed()
                        && let Ok(names) = self.ethtool.names(name)
                    {
                        *stats = DriverStats::new(names, &self.allowlist);
                    }
                    failures.push(err.into());
                }
            }
        }
        failures
    }
}
