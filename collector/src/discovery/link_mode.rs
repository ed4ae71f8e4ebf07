//! Link speed and duplex from the ethtool generic-netlink family (`ETHTOOL_MSG_LINKMODES_GET`).

use std::{collections::HashMap, io};

use ethtool::{EthtoolAttr, EthtoolLinkModeAttr, EthtoolLinkModeDuplex};
use futures_util::StreamExt as _;

/// Speed and duplex of one interface, as its driver reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkMode {
    /// Megabits per second.
    pub(crate) speed_mbps: u32,
    /// Full duplex (`true`), half (`false`), or unknown (`None`).
    pub(crate) full_duplex: Option<bool>,
}

/// Link modes read between two yields to the runtime.
const YIELD_EVERY: usize = 64;

/// `SPEED_UNKNOWN` in the kernel's ethtool API.
const SPEED_UNKNOWN: u32 = u32::MAX;

/// Why link modes could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkModeError {
    /// The generic-netlink socket cannot be opened.
    #[error("opening an ethtool netlink socket")]
    Socket(#[source] io::Error),
    /// The dump failed (e.g. no ethtool netlink family in the kernel).
    #[error("dumping link modes over ethtool netlink")]
    Dump(#[source] ethtool::EthtoolError),
    /// The kernel did not answer in time.
    #[error("no answer to the link mode dump within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Dumps the link modes of every interface in the caller's namespace that reports a speed, by
/// ifindex (a name may meanwhile belong to another device, or not be UTF-8).
///
/// # Errors
///
/// [`LinkModeError`] when the connection cannot be opened or the dump fails.
pub(crate) async fn link_modes() -> Result<HashMap<u32, LinkMode>, LinkModeError> {
    let (connection, mut handle, _) = ethtool::new_connection().map_err(LinkModeError::Socket)?;
    // The connection's task ends with this dump, however it ends (given up on included).
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let mut out = HashMap::new();
    let mut stream = handle
        .link_mode()
        .get(None)
        .execute()
        .await
        .map_err(LinkModeError::Dump)?;
    let mut read = 0usize;
    while let Some(msg) = stream.next().await {
        read += 1;
        if read.is_multiple_of(YIELD_EVERY) {
            // Thousands of interfaces answer one by one: let the server answer meanwhile.
            tokio::task::yield_now().await;
        }
        let Ok(msg) = msg else { continue };
        let mut ifindex = None;
        let mut speed = None;
        let mut duplex = None;
        for attr in &msg.payload.nlas {
            let EthtoolAttr::LinkMode(attr) = attr else {
                continue;
            };
            match attr {
                EthtoolLinkModeAttr::Header(headers) => {
                    for h in headers {
                        if let ethtool::EthtoolHeader::DevIndex(index) = h {
                            ifindex = Some(*index);
                        }
                    }
                }
                EthtoolLinkModeAttr::Speed(s) if *s != SPEED_UNKNOWN && *s != 0 => speed = Some(*s),
                EthtoolLinkModeAttr::Duplex(d) => {
                    duplex = match d {
                        EthtoolLinkModeDuplex::Full => Some(true),
                        EthtoolLinkModeDuplex::Half => Some(false),
                        _ => None,
                    };
                }
                _ => {}
            }
        }
        if let (Some(ifindex), Some(speed_mbps)) = (ifindex, speed) {
            out.insert(
                ifindex,
                LinkMode {
                    speed_mbps,
                    full_duplex: duplex,
                },
            );
        }
    }
    Ok(out)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
