//! What the kernel says about the node's links: a full dump over rtnetlink (name, ifindex,
//! kind, `IFLA_STATS64`), the subscription to link events, and link speed and duplex over
//! ethtool netlink. The owner task and the netdev backend use it through [`Links`], so the
//! routing logic is tested with fixtures instead of a kernel.

#[cfg(test)]
pub(crate) mod fake;
mod link_mode;
mod link_stats;
mod rtnl;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use futures_util::{StreamExt as _, stream::BoxStream};
use tracing::{debug, warn};

use crate::Report;

pub(crate) use self::{
    link_mode::{LinkMode, LinkModeError, link_modes},
    link_stats::{LinkStats, RxTx},
    rtnl::RequestError,
};

/// How a link's packets look to a TC program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Framing {
    /// Count traffic per remote tunnel endpoint: an external-mode (collect_md) vxlan or geneve
    /// device, whose packets carry a tunnel key.
    pub tunnel_peers: bool,
    /// Packets start with the IP header: the device has no link-layer header.
    pub raw_ip: bool,
}

/// One network interface during its lifetime: an ifindex with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub(crate) ifindex: u32,
    /// Interface name, escaped when the kernel's bytes are not UTF-8 or hold a backslash
    /// ([`wire::escape_name`]).
    pub(crate) name: String,
    /// `IFLA_INFO_KIND` (`vxlan`, `veth`, `bridge`, ...); `None` for physical NICs and `lo`.
    pub(crate) kind: Option<String>,
    /// How its packets look to a TC program: an external-mode (collect_md) vxlan or geneve
    /// carries tunnel keys; a device without a link-layer header starts with the IP header.
    pub(crate) framing: Framing,
}

/// One link of a dump: the link and its kernel statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkFacts {
    /// The link.
    pub(crate) link: Link,
    /// `IFLA_STATS64`, when the message carries it.
    pub(crate) stats: Option<LinkStats>,
}

/// A link event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// A link appeared or changed (`RTM_NEWLINK`).
    New(Link),
    /// A link was deleted (`RTM_DELLINK`).
    Deleted {
        /// Its index.
        ifindex: u32,
    },
    /// Events were lost: the kernel dropped some because the socket's buffer was full
    /// (`ENOBUFS`), or a message could not be read. Only a full resync can repair this.
    Lost,
}

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// The netlink socket cannot be opened.
    #[error("opening an rtnetlink socket")]
    Socket(#[source] std::io::Error),
    /// The link dump failed.
    #[error("dumping links over rtnetlink")]
    Dump(#[source] RequestError),
    /// Looking a link up by index failed.
    #[error("looking up ifindex {ifindex} over rtnetlink")]
    Get {
        /// The index.
        ifindex: u32,
        /// Why.
        #[source]
        source: RequestError,
    },
}

/// The link information linkmeter reads from the kernel: implemented by [`Netlink`], and by
/// fixtures in tests.
pub(crate) trait Links {
    /// Every link with its kernel statistics.
    fn dump(&self) -> impl Future<Output = Result<Vec<LinkFacts>, DiscoveryError>>;
    /// The link with index `ifindex`, or `None` when the kernel has none: how a link missing
    /// from a dump is confirmed gone.
    fn get(&self, ifindex: u32) -> impl Future<Output = Result<Option<LinkFacts>, DiscoveryError>>;
    /// Speed and duplex of every interface that reports a speed, by name.
    fn link_modes(&self) -> impl Future<Output = Result<HashMap<u32, LinkMode>, LinkModeError>>;
}

/// Requests over rtnetlink, one at a time, in the network namespace of the thread that opened
/// the socket.
#[derive(Clone, Debug)]
pub(crate) struct Netlink {
    requests: Arc<tokio::sync::Mutex<rtnl::Requests>>,
}

impl Netlink {
    /// Opens the socket.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Socket`].
    pub(crate) fn open() -> Result<Self, DiscoveryError> {
        let requests = rtnl::Requests::open().map_err(DiscoveryError::Socket)?;
        Ok(Self {
            requests: Arc::new(tokio::sync::Mutex::new(requests)),
        })
    }
}

/// How long a request over rtnetlink may wait for the kernel's answer: a dump of thousands of
/// links takes milliseconds. A request that is not answered in time fails (its socket is opened
/// anew), so that neither a scrape nor a resync waits for ever.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// `request` on `requests`, given up after [`REQUEST_DEADLINE`].
async fn bounded<T>(
    requests: &mut rtnl::Requests,
    request: impl AsyncFnOnce(&mut rtnl::Requests) -> Result<T, RequestError>,
) -> Result<T, RequestError> {
    match tokio::time::timeout(REQUEST_DEADLINE, request(&mut *requests)).await {
        Ok(answer) => answer,
        Err(_elapsed) => {
            requests.reopen();
            Err(RequestError::TimedOut(REQUEST_DEADLINE))
        }
    }
}

impl Links for Netlink {
    async fn dump(&self) -> Result<Vec<LinkFacts>, DiscoveryError> {
        let mut requests = self.requests.lock().await;
        let dump = bounded(&mut requests, async |r| r.dump().await)
            .await
            .map_err(DiscoveryError::Dump)?;
        if dump.interrupted > 0 {
            debug!(
                interrupted = dump.interrupted,
                "link dump repeated after interruptions"
            );
        }
        Ok(dump.links)
    }

    async fn get(&self, ifindex: u32) -> Result<Option<LinkFacts>, DiscoveryError> {
        let mut requests = self.requests.lock().await;
        bounded(&mut requests, async |r| r.get(ifindex).await)
            .await
            .map_err(|source| DiscoveryError::Get { ifindex, source })
    }

    async fn link_modes(&self) -> Result<HashMap<u32, LinkMode>, LinkModeError> {
        tokio::time::timeout(REQUEST_DEADLINE, link_modes())
            .await
            .unwrap_or(Err(LinkModeError::TimedOut(REQUEST_DEADLINE)))
    }
}

/// The addresses of this network namespace's interfaces (`getifaddrs`); empty when they
/// cannot be read (logged).
pub(crate) fn own_addresses() -> Vec<std::net::IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(addresses) => addresses
            .filter_map(|a| {
                let address = a.address?;
                if let Some(v4) = address.as_sockaddr_in() {
                    Some(std::net::IpAddr::V4(v4.ip()))
                } else {
                    address
                        .as_sockaddr_in6()
                        .map(|v6| std::net::IpAddr::V6(v6.ip()))
                }
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "reading the node's addresses failed");
            Vec::new()
        }
    }
}

/// Subscribes to link events (`RTNLGRP_LINK`) with a receive buffer of `buffer` bytes. Lost
/// events (a socket overrun) arrive as [`LinkEvent::Lost`]; the stream ends when the socket
/// fails, and the caller subscribes again.
///
/// # Errors
///
/// [`DiscoveryError::Socket`].
pub(crate) fn link_events(buffer: usize) -> Result<BoxStream<'static, LinkEvent>, DiscoveryError> {
    let events = rtnl::Events::subscribe(buffer).map_err(DiscoveryError::Socket)?;
    let batches = futures_util::stream::unfold(events, |mut events| async move {
        match events.next().await {
            Ok(batch) => Some((futures_util::stream::iter(batch), events)),
            Err(err) => {
                warn!(error = %Report(&err), "the link event socket failed");
                None
            }
        }
    });
    Ok(batches.flatten().boxed())
}
