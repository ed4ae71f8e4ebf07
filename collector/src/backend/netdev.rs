//! The netdev backend: kernel link statistics (`IFLA_STATS64`), read for every interface with
//! one rtnetlink dump per collection.

use super::{Collect, CollectError, ebpf::Attachment};
use crate::{discovery::Links, metrics::Snapshot, node::Interfaces, policy::Backend};

/// Kernel link statistics over `L`, which is also how the node discovers its links.
#[derive(Debug)]
pub(crate) struct Netdev<L> {
    links: L,
}

impl<L: Links> Netdev<L> {
    /// Reads link statistics through `links`.
    pub(crate) const fn new(links: L) -> Self {
        Self { links }
    }

    /// The link source (for discovery).
    pub(crate) const fn links(&self) -> &L {
        &self.links
    }
}

impl<L: Links> Collect for Netdev<L> {
    const BACKEND: Backend = Backend::Netdev;

    /// One dump; every interface of `out` present in it gets its statistics. An interface the
    /// dump does not show (deleted a moment ago) is left without them; links the node has not
    /// routed yet are ignored.
    async fn collect<A: Attachment>(
        &mut self,
        _interfaces: &mut Interfaces<A>,
        out: &mut Snapshot,
    ) -> Vec<CollectError> {
        match self.links.dump().await {
            Ok(links) => {
                for facts in links {
                    if let Some(interface) = out.interface_mut(facts.link.ifindex) {
                        interface.kernel = facts.stats;
                    }
                }
                Vec::new()
            }
            Err(err) => vec![err.into()],
        }
    }
}
