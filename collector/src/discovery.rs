//! Interface discovery over rtnetlink: a full dump of links (name, ifindex, kind, oper state,
//! `IFLA_STATS64`) and a subscription to link events.

use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkInfo, LinkMessage},
};
use rtnetlink::{Handle, MulticastGroup};

use crate::backend::netdev::LinkStats;

/// What rtnetlink tells about one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`vxlan`, `veth`, `bridge`, ...); `None` for physical NICs and `lo`.
    pub kind: Option<String>,
    /// Operational state (`UP`, `DOWN`, `UNKNOWN`, ...).
    pub oper_state: String,
    /// Kernel link statistics.
    pub stats: LinkStats,
}

/// A link event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed (`RTM_NEWLINK`).
    New(LinkFacts),
    /// A link was deleted (`RTM_DELLINK`).
    Deleted {
        /// Its index.
        ifindex: u32,
    },
}

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The netlink socket cannot be opened.
    #[error("opening an rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The link dump failed.
    #[error("dumping links over rtnetlink: {0}")]
    Dump(#[source] rtnetlink::Error),
}

/// Extracts the facts linkmeter uses from a link message; `None` without a name.
pub fn parse_link(msg: &LinkMessage) -> Option<LinkFacts> {
    let mut name = None;
    let mut kind = None;
    let mut oper_state = String::from("UNKNOWN");
    let mut stats = LinkStats::default();
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::OperState(s) => oper_state = s.to_string(),
            LinkAttribute::Stats64(s) => stats = LinkStats::from(s),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Some(LinkFacts {
        ifindex: msg.header.index,
        name: name?,
        kind,
        oper_state,
        stats,
    })
}

/// A netlink connection for dumps, driven by a background task.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection (in the calling thread's network namespace).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Socket`].
    pub fn open() -> Result<Self, DiscoveryError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(DiscoveryError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Dumps every link.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Dump`].
    pub async fn dump(&self) -> Result<Vec<LinkFacts>, DiscoveryError> {
        let mut links = Vec::new();
        let mut stream = self.handle.link().get().execute();
        while let Some(msg) = stream.try_next().await.map_err(DiscoveryError::Dump)? {
            links.extend(parse_link(&msg));
        }
        Ok(links)
    }
}

impl Netlink {
    /// Whether a cls_bpf filter with `handle` sits on both the ingress and the egress hook of
    /// `ifindex` (legacy tc attachments). A failed dump counts as present, so that a netlink
    /// hiccup never triggers a re-attach.
    pub async fn has_filter_on_both_hooks(&self, ifindex: u32, handle: u32) -> bool {
        let Ok(index) = i32::try_from(ifindex) else {
            return true;
        };
        let mut found = [false, false];
        for (slot, egress) in [(0, false), (1, true)] {
            let mut tc = self.handle.traffic_filter(index);
            let request = tc.get();
            let request = if egress {
                request.egress()
            } else {
                request.ingress()
            };
            let mut stream = request.execute();
            loop {
                match stream.try_next().await {
                    Ok(Some(msg)) => {
                        let h = msg.header.handle;
                        if (u32::from(h.major) << 16 | u32::from(h.minor)) == handle {
                            found[slot] = true;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return true,
                }
            }
        }
        found[0] && found[1]
    }
}

/// Subscribes to link events (`RTNLGRP_LINK`).
///
/// A lost event (socket overrun) is repaired by the periodic full resync.
///
/// # Errors
///
/// [`DiscoveryError::Socket`].
pub fn link_events() -> Result<impl Stream<Item = LinkEvent> + Send, DiscoveryError> {
    let (connection, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .map_err(DiscoveryError::Socket)?;
    tokio::spawn(connection);
    Ok(messages.filter_map(|(message, _)| async move {
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                parse_link(&link).map(LinkEvent::New)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                Some(LinkEvent::Deleted {
                    ifindex: link.header.index,
                })
            }
            _ => None,
        }
    }))
}
