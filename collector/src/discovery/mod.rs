//! What the kernel says about the node's links: a full dump over rtnetlink (name, ifindex,
//! kind, `IFLA_STATS64`), the subscription to link events, and link speed and duplex over
//! ethtool netlink. The owner task and the netdev backend use it through [`Links`], so the
//! routing logic is tested with fixtures instead of a kernel.

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, future::Future};

use futures_util::{Stream, StreamExt as _, TryStreamExt as _, stream::BoxStream};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoData, InfoGeneve, InfoVxlan, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage},
};
use rtnetlink::{Handle, MulticastGroup};

use crate::backend::{
    ebpf::Framing,
    ethtool::{LinkMode, LinkModeError, link_modes},
    netdev::LinkStats,
};

/// One network interface during its lifetime: an ifindex with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub(crate) ifindex: u32,
    /// Interface name.
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
}

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// The netlink socket cannot be opened.
    #[error("opening an rtnetlink socket")]
    Socket(#[source] std::io::Error),
    /// The link dump failed.
    #[error("dumping links over rtnetlink")]
    Dump(#[source] rtnetlink::Error),
}

/// The link information linkmeter reads from the kernel: implemented by [`Netlink`], and by
/// fixtures in tests.
pub(crate) trait Links {
    /// Every link with its kernel statistics.
    fn dump(&self) -> impl Future<Output = Result<Vec<LinkFacts>, DiscoveryError>>;
    /// Speed and duplex of every interface that reports a speed, by name.
    fn link_modes(&self) -> impl Future<Output = Result<HashMap<String, LinkMode>, LinkModeError>>;
}

/// Extracts the facts linkmeter uses from a link message; `None` without a name.
pub(crate) fn parse_link(msg: &LinkMessage) -> Option<LinkFacts> {
    let mut name = None;
    let mut kind = None;
    let mut stats = None;
    let mut framing = Framing {
        tunnel_peers: false,
        raw_ip: has_no_link_layer_header(msg.header.link_layer_type),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Stats64(s) => stats = Some(LinkStats::from(s)),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => kind = Some(k.to_string()),
                        LinkInfo::Data(data) => framing.tunnel_peers |= carries_tunnel_keys(data),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(LinkFacts {
        link: Link {
            ifindex: msg.header.index,
            name: name?,
            kind,
            framing,
        },
        stats,
    })
}

/// Whether a vxlan or geneve device is in external (collect_md) mode: each packet carries its
/// own tunnel key, as on Cilium's `cilium_vxlan` / `cilium_geneve`.
fn carries_tunnel_keys(data: &InfoData) -> bool {
    match data {
        InfoData::Vxlan(options) => options
            .iter()
            .any(|o| matches!(o, InfoVxlan::CollectMetadata(true))),
        InfoData::Geneve(options) => options
            .iter()
            .any(|o| matches!(o, InfoGeneve::CollectMetadata)),
        _ => false,
    }
}

/// Whether packets of a device of this type start with the IP header (tun, WireGuard, ipip,
/// sit, GRE): a TC program finds no Ethernet header there.
const fn has_no_link_layer_header(link_layer: LinkLayerType) -> bool {
    matches!(
        link_layer,
        LinkLayerType::None
            | LinkLayerType::Rawip
            | LinkLayerType::Tunnel
            | LinkLayerType::Tunnel6
            | LinkLayerType::Sit
            | LinkLayerType::Ipgre
            | LinkLayerType::Ip6gre
    )
}

/// A netlink connection for dumps, driven by a background task, in the network namespace of
/// the thread that opened it.
#[derive(Clone, Debug)]
pub(crate) struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Socket`].
    pub(crate) fn open() -> Result<Self, DiscoveryError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(DiscoveryError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }
}

impl Links for Netlink {
    async fn dump(&self) -> Result<Vec<LinkFacts>, DiscoveryError> {
        let mut links = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(msg) = stream.try_next().await.map_err(DiscoveryError::Dump)? {
            links.extend(parse_link(&msg));
        }
        Ok(links)
    }

    async fn link_modes(&self) -> Result<HashMap<String, LinkMode>, LinkModeError> {
        link_modes().await
    }
}

/// Subscribes to link events (`RTNLGRP_LINK`).
///
/// A lost event (socket overrun) is repaired by the periodic full resync.
///
/// # Errors
///
/// [`DiscoveryError::Socket`].
pub(crate) fn link_events() -> Result<BoxStream<'static, LinkEvent>, DiscoveryError> {
    let (connection, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .map_err(DiscoveryError::Socket)?;
    tokio::spawn(connection);
    Ok(events(messages.map(|(message, _)| message)).boxed())
}

fn events(
    messages: impl Stream<Item = netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>>,
) -> impl Stream<Item = LinkEvent> {
    messages.filter_map(|message| async move {
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                parse_link(&link).map(|facts| LinkEvent::New(facts.link))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                Some(LinkEvent::Deleted {
                    ifindex: link.header.index,
                })
            }
            _ => None,
        }
    })
}
