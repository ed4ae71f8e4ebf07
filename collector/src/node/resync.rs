//! The resync: the links read again (a dump, lookups of those missing from it, link modes) on a
//! socket of its own, as kernel work; then, when that answers, new links routed and vanished
//! ones forgotten (repairing missed events), link speeds refreshed, due retries made, the
//! attachments checked, idle peers forgotten.

use std::collections::{HashMap, HashSet};

use tracing::{info, warn};

use super::{Done, Node};
use crate::{
    Report,
    backend::{ebpf::TcCounter, ethtool::EthtoolIo},
    discovery::{DiscoveryError, LinkFacts, LinkMode, LinkModeError, Links},
};

/// What a resync read of the links.
#[derive(Debug)]
pub(crate) struct Listing {
    /// Every link, or why the dump failed.
    links: Result<Vec<LinkFacts>, DiscoveryError>,
    /// Links the node knew that the dump left out, each looked up by index: `None` when the
    /// kernel has no such link.
    missing: Vec<(u32, Result<Option<LinkFacts>, DiscoveryError>)>,
    /// Speed and duplex by ifindex, or why they could not be read.
    modes: Result<HashMap<u32, LinkMode>, LinkModeError>,
}

impl Listing {
    /// Reads the links through `links`; `known` are the ifindexes the node has.
    async fn read<L: Links>(links: L, known: Vec<u32>) -> Self {
        let dumped = links.dump().await;
        let mut missing = Vec::new();
        if let Ok(dumped) = &dumped {
            let present: HashSet<u32> = dumped.iter().map(|l| l.link.ifindex).collect();
            for ifindex in known.into_iter().filter(|i| !present.contains(i)) {
                missing.push((ifindex, links.get(ifindex).await));
            }
        }
        Self {
            links: dumped,
            missing,
            modes: links.link_modes().await,
        }
    }
}

impl<I: EthtoolIo, E: TcCounter, L: Links + Clone + 'static> Node<I, E, L> {
    /// Starts a full resynchronisation: the links are read again, and [`Node::finish`] puts the
    /// listing into effect when it answers. Asked for while one runs (whose dump may predate
    /// what the new request is about, events lost, say), another follows it.
    pub(crate) fn start_resync(&mut self) {
        if self.stopping {
            return;
        }
        if self.listing.is_some() {
            self.resync_again = true;
            return;
        }
        self.listing = Some(HashSet::new());
        let known: Vec<u32> = self
            .interfaces
            .keys()
            .chain(self.attaching.keys())
            .copied()
            .collect();
        let upkeep = self.upkeep.clone();
        let (listing, abort) = futures_util::future::abortable(Listing::read(upkeep, known));
        self.listing_abort = Some(abort);
        self.start(async move {
            match listing.await {
                Ok(listing) => Done::Listed(Box::new(listing)),
                Err(_aborted) => Done::Abandoned,
            }
        });
    }

    /// Starts a resync and waits for it, and for every attach it starts (the one-shot
    /// commands). Returns how many links the kernel listed.
    ///
    /// # Errors
    ///
    /// The link dump failed; link speeds and attachments were still checked.
    pub(crate) async fn resync_now(&mut self) -> Result<usize, DiscoveryError> {
        self.start_resync();
        self.until_idle().await.unwrap_or(Ok(0))
    }

    /// Puts a listing into effect; returns how many links the kernel listed. A link a link
    /// event touched since the listing started is left as the event put it: the event is newer.
    pub(super) fn listed(&mut self, listing: Listing) -> Result<usize, DiscoveryError> {
        let touched = self.listing.take().unwrap_or_default();
        self.listing_abort = None;
        let listed = match listing.links {
            Ok(links) => {
                for (ifindex, lookup) in listing.missing {
                    if touched.contains(&ifindex) {
                        continue;
                    }
                    // Forgotten only when a lookup by index confirms the kernel has no such
                    // link: its RTM_DELLINK may be on its way, or the dump may have missed it.
                    match lookup {
                        Ok(None) => self.remove(ifindex),
                        Ok(Some(facts)) => self.upsert(facts.link),
                        Err(err) => warn!(ifindex, error = %Report(&err),
                            "cannot confirm that a link missing from the dump is gone; keeping it"),
                    }
                }
                let count = links.len();
                for facts in links {
                    if !touched.contains(&facts.link.ifindex) {
                        self.upsert(facts.link);
                    }
                }
                let present: HashSet<&str> = self
                    .interfaces
                    .values()
                    .chain(self.attaching.values())
                    .map(|i| i.link.name.as_str())
                    .collect();
                self.warned.retain(|name| present.contains(name.as_str()));
                Ok(count)
            }
            Err(err) => Err(err),
        };
        if self.first_pass.is_none() {
            // The first pass is this one, whether its dump worked or not (a failure is logged).
            self.first_pass = Some(self.attaching.keys().copied().collect());
        }
        match listing.modes {
            Ok(modes) => {
                for (ifindex, interface) in self.interfaces.iter_mut().chain(&mut self.attaching) {
                    interface.link_mode = modes.get(ifindex).copied();
                }
            }
            Err(err) => warn!(error = %Report(&err), "link speeds unavailable"),
        }
        self.resyncs += 1;
        self.retry_due();
        self.start_check();
        let peer_idle = self.settings.peer_idle;
        if let Some(ebpf) = self.ebpf.as_mut() {
            match ebpf.expire_peers(peer_idle) {
                Ok(0) => {}
                Ok(expired) => info!(expired, "forgot idle overlay peers"),
                Err(err) => warn!(error = %Report(&err), "expiring idle overlay peers"),
            }
        }
        if std::mem::take(&mut self.resync_again) {
            self.start_resync();
        }
        listed
    }

    /// Routes again the interfaces whose retry is due (a transient probe error, a full map).
    fn retry_due(&mut self) {
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
            // The interface stays shown, measured with kernel link stats as it is (a routing is
            // tried again only after such a fallback), until its new routing is in effect: an
            // attach may take a while to answer. What it holds (a breakdown) is let go of first.
            let Some(mut old) = self.interfaces.remove(&ifindex) else {
                continue;
            };
            self.let_go(&old);
            old.breakdown = None;
            old.retry = None;
            let link = old.link.clone();
            self.interfaces.insert(ifindex, old);
            info!(interface = %link.name, ifindex, attempt, "routing the interface again");
            self.route(link, attempt);
        }
    }
}
