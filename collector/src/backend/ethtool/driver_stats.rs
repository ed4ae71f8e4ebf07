//! The driver statistics of one ethtool-routed interface: their names (read once per lifetime,
//! and again when the driver's count changes) and which of them are exported, and reading their
//! values at each scrape.

use regex::Regex;

use super::{Ethtool, EthtoolError, EthtoolIo};

/// The driver statistics of one interface: their names in driver order and which pass the
/// allowlist.
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

impl<I: EthtoolIo> Ethtool<I> {
    /// The exported statistics of `interface` (allowed names with their values), one `GSTATS`
    /// for the names `stats` knows.
    ///
    /// # Errors
    ///
    /// As [`Ethtool::values`]; when the driver's count changed
    /// ([`EthtoolError::count_changed`]), read the names again with [`Ethtool::names`].
    pub(crate) fn read_driver_stats(
        &self,
        interface: &str,
        stats: &DriverStats,
    ) -> Result<Vec<(String, u64)>, EthtoolError> {
        Ok(stats.export(&self.values(interface, stats.count())?))
    }
}
