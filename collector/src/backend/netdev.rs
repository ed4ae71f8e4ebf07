//! The netdev backend: kernel link statistics (`IFLA_STATS64`), read for every interface with
//! one rtnetlink dump per collection.

use super::{Collect, CollectError, ebpf::Attachment};
use crate::{
    discovery::Links,
    metrics::{RxTx, Snapshot},
    node::Interfaces,
    policy::Backend,
};

/// The subset of `IFLA_STATS64` linkmeter exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LinkStats {
    /// Received packets.
    pub(crate) rx_packets: u64,
    /// Transmitted packets.
    pub(crate) tx_packets: u64,
    /// Received bytes (vxlan/geneve: without the inner Ethernet header).
    pub(crate) rx_bytes: u64,
    /// Transmitted bytes.
    pub(crate) tx_bytes: u64,
    /// Receive errors.
    pub(crate) rx_errors: u64,
    /// Transmit errors.
    pub(crate) tx_errors: u64,
    /// Received packets dropped.
    pub(crate) rx_dropped: u64,
    /// Transmitted packets dropped.
    pub(crate) tx_dropped: u64,
}

impl LinkStats {
    /// Packets, received and transmitted.
    pub(crate) const fn packets(&self) -> RxTx {
        RxTx {
            rx: self.rx_packets,
            tx: self.tx_packets,
        }
    }

    /// Bytes, received and transmitted.
    pub(crate) const fn bytes(&self) -> RxTx {
        RxTx {
            rx: self.rx_bytes,
            tx: self.tx_bytes,
        }
    }

    /// Errors, received and transmitted.
    pub(crate) const fn errors(&self) -> RxTx {
        RxTx {
            rx: self.rx_errors,
            tx: self.tx_errors,
        }
    }

    /// Dropped packets, received and transmitted.
    pub(crate) const fn dropped(&self) -> RxTx {
        RxTx {
            rx: self.rx_dropped,
            tx: self.tx_dropped,
        }
    }
}

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
