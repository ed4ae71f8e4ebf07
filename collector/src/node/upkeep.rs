//! The node's upkeep around the routing itself: settling what earlier daemons left, and
//! shutting down with or without pinning.

use futures_util::FutureExt as _;
use tracing::info;

use super::{Done, Interface, Node};
use crate::{
    backend::{ebpf::TcCounter, ethtool::EthtoolIo},
    discovery::Links,
};

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// After the first routing pass: frees what an earlier daemon pinned for interfaces that
    /// no longer get the eBPF counter, and starts removing from every link, whatever its
    /// routing, the legacy tc filters earlier daemons left (a SIGKILL leaves them; TCX links
    /// without pins go with their process) that do not run our programs.
    pub(crate) fn settle_after_start(&mut self) {
        let known = || self.interfaces.values().chain(self.attaching.values());
        let attached: Vec<u32> = known()
            .filter(|i| i.counted_by_ebpf())
            .map(|i| i.link.ifindex)
            .collect();
        let links: Vec<u32> = known().map(|i| i.link.ifindex).collect();
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
        let answer = ebpf.remove_stale_filters(links);
        self.start(answer.map(Done::StaleRemoved));
    }

    /// Shuts the node down: with pinning, the attachments stay in the kernel, counting, for
    /// the next daemon to adopt; otherwise every one is detached. Waits for the detaches and
    /// for what the hook worker does before them (a running resync's listing is given up); the
    /// caller bounds the wait.
    pub(crate) async fn shutdown(&mut self) {
        self.stopping = true;
        // A listing would not be used: not waited for either.
        if let Some(abort) = self.listing_abort.take() {
            abort.abort();
        }
        let persist = self.ebpf.as_ref().is_some_and(TcCounter::persists);
        let interfaces: Vec<Interface> = std::mem::take(&mut self.interfaces)
            .into_values()
            .chain(std::mem::take(&mut self.attaching).into_values())
            .collect();
        if !persist {
            for interface in &interfaces {
                self.release(interface, "detaching on shutdown", false);
            }
        }
        if let Some(ebpf) = self.ebpf.as_mut() {
            let answer = ebpf.release();
            self.start(answer.map(|()| Done::Released));
        }
        self.until_idle().await;
    }
}
