//! The node's upkeep around the routing itself: settling what earlier daemons left, retrying
//! routings that failed for a while, and shutting down with or without pinning.

use tracing::{debug, info, warn};

use super::{Measure, Node, PROBE_RETRIES};
use crate::{
    Report,
    backend::{ebpf::TcCounter, ethtool::EthtoolIo},
    discovery::Links,
    policy::Reason,
};

impl<I: EthtoolIo, E: TcCounter, L: Links> Node<I, E, L> {
    /// After the first routing pass: frees what an earlier daemon pinned for interfaces that
    /// no longer get the eBPF counter, and removes from every link, whatever its routing, the
    /// legacy tc filters earlier daemons left (a SIGKILL leaves them; TCX links without pins
    /// go with their process) that do not run our programs.
    pub(crate) async fn settle_after_start(&mut self) {
        let attached: Vec<u32> = self
            .interfaces
            .iter()
            .filter(|(_, i)| matches!(i.measure, Measure::Ebpf(_)) || i.breakdown.is_some())
            .map(|(&ifindex, _)| ifindex)
            .collect();
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        let freed = ebpf.settle(&attached);
        if freed > 0 {
            info!(
                interfaces = freed,
                "freed pinned counters of interfaces no longer counted with eBPF"
            );
        }
        let links = match self.netdev.links().dump().await {
            Ok(links) => links,
            Err(err) => {
                warn!(error = %Report(&err), "cannot list links to remove stale tc filters");
                return;
            }
        };
        let mut removed = 0;
        for facts in links {
            match ebpf.remove_stale_filters(facts.link.ifindex) {
                Ok(n) => removed += n,
                Err(err) => debug!(interface = %facts.link.name, error = %err,
                    "cannot check the interface for stale tc filters"),
            }
        }
        if removed > 0 {
            info!(removed, "removed tc filters left by an earlier linkmeter");
        }
    }

    /// On shutdown: with pinning, the attachments stay in the kernel, counting, for the next
    /// daemon to adopt; otherwise every one is detached.
    pub(crate) fn shutdown(&mut self) {
        if self.ebpf.as_ref().is_some_and(TcCounter::persists) {
            // Dropping a persistent attachment keeps it in the kernel.
            self.interfaces.clear();
        } else {
            self.detach_all();
        }
    }

    /// Routes again the interfaces whose retry is due (a transient probe error, a full map).
    pub(super) fn retry_due(&mut self) {
        let due: Vec<(u32, u32)> = self
            .interfaces
            .iter()
            .filter_map(|(&ifindex, i)| {
                i.retry
                    .filter(|r| r.due <= self.resyncs)
                    .map(|r| (ifindex, r.attempt))
            })
            .collect();
        for (ifindex, attempt) in due {
            let Some(link) = self.take_out(ifindex) else {
                continue;
            };
            info!(interface = %link.name, ifindex, attempt, "routing the interface again");
            let interface = self.route_new(link, attempt);
            if attempt >= PROBE_RETRIES && interface.reason == Reason::EthtoolError {
                warn!(interface = %interface.link.name, attempts = PROBE_RETRIES,
                    "the ethtool probe kept failing; measuring the interface with kernel link stats");
            }
            self.interfaces.insert(ifindex, interface);
        }
    }
}
