//! A fixture kernel for discovery: the links, statistics and link modes a test sets, and how
//! many dumps were made. Cloning shares the state, so a test keeps a handle on what the code
//! under test owns.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use super::{DiscoveryError, Framing, Link, LinkFacts, LinkMode, LinkModeError, LinkStats, Links};

/// A link as a fixture.
pub(crate) fn link(ifindex: u32, name: &str, kind: Option<&str>) -> Link {
    Link {
        ifindex,
        name: name.to_owned(),
        kind: kind.map(str::to_owned),
        framing: Framing::default(),
    }
}

#[derive(Debug, Default)]
struct State {
    links: BTreeMap<u32, LinkFacts>,
    modes: HashMap<u32, LinkMode>,
    dumps: usize,
    failing: bool,
    /// Links left out of dumps, though they exist.
    hidden: std::collections::BTreeSet<u32>,
    /// While set, dumps wait until it turns `false`.
    held: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The links of a fixture node.
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeLinks {
    state: Arc<Mutex<State>>,
    /// This handle's requests wait while it holds `true` (see [`FakeLinks::gated`]).
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

impl FakeLinks {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Another handle on the same links whose requests (dumps, lookups, link modes) wait while
    /// the returned sender holds `true` — a socket whose kernel stops answering — and go on
    /// when it holds `false` again. It starts open.
    pub(crate) fn gated(&self) -> (Self, tokio::sync::watch::Sender<bool>) {
        let (gate, closed) = tokio::sync::watch::channel(false);
        let handle = Self {
            state: Arc::clone(&self.state),
            gate: Some(closed),
        };
        (handle, gate)
    }

    /// Waits while this handle's gate is closed.
    async fn pass_gate(&self) {
        if let Some(mut gate) = self.gate.clone() {
            let _open = gate.wait_for(|closed| !closed).await;
        }
    }

    /// Adds (or replaces) a link with zero statistics and returns it.
    pub(crate) fn add(&self, ifindex: u32, name: &str, kind: Option<&str>) -> Link {
        let link = link(ifindex, name, kind);
        self.state().links.insert(
            ifindex,
            LinkFacts {
                link: link.clone(),
                stats: Some(LinkStats::default()),
            },
        );
        link
    }

    /// Removes a link.
    pub(crate) fn remove(&self, ifindex: u32) {
        self.state().links.remove(&ifindex);
    }

    /// Leaves `ifindex` out of the next dumps while it still exists (as an interrupted dump
    /// could), or puts it back (`false`).
    pub(crate) fn hide_from_dumps(&self, ifindex: u32, hidden: bool) {
        let mut state = self.state();
        if hidden {
            state.hidden.insert(ifindex);
        } else {
            state.hidden.remove(&ifindex);
        }
    }

    /// Sets the kernel statistics of a link.
    pub(crate) fn set_stats(&self, ifindex: u32, stats: LinkStats) {
        if let Some(facts) = self.state().links.get_mut(&ifindex) {
            facts.stats = Some(stats);
        }
    }

    /// Sets the link mode reported for the link with index `ifindex`.
    pub(crate) fn set_mode(&self, ifindex: u32, mode: LinkMode) {
        self.state().modes.insert(ifindex, mode);
    }

    /// Makes every dump fail (`true`) or succeed again.
    pub(crate) fn fail_dumps(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// How many dumps were made (counted when they start).
    pub(crate) fn dumps(&self) -> usize {
        self.state().dumps
    }

    /// Holds every dump until the returned sender sends `false` (or is dropped), as a kernel
    /// answering slowly would.
    pub(crate) fn hold_dumps(&self) -> tokio::sync::watch::Sender<bool> {
        let (release, held) = tokio::sync::watch::channel(true);
        self.state().held = Some(held);
        release
    }
}

impl Links for FakeLinks {
    /// The links as they are now, delivered once this handle's gate and the dump hold let
    /// them through (an answer the kernel made, slow to arrive).
    async fn dump(&self) -> Result<Vec<LinkFacts>, DiscoveryError> {
        // A real dump waits for the kernel's answer: let other tasks run meanwhile.
        tokio::task::yield_now().await;
        let (answer, held) = {
            let mut state = self.state();
            state.dumps += 1;
            let answer = if state.failing {
                Err(DiscoveryError::Socket(std::io::Error::from_raw_os_error(
                    libc::ENOBUFS,
                )))
            } else {
                Ok(state
                    .links
                    .values()
                    .filter(|facts| !state.hidden.contains(&facts.link.ifindex))
                    .cloned()
                    .collect())
            };
            (answer, state.held.clone())
        };
        self.pass_gate().await;
        if let Some(mut held) = held {
            let _released = held.wait_for(|held| !held).await;
        }
        answer
    }

    async fn get(&self, ifindex: u32) -> Result<Option<LinkFacts>, DiscoveryError> {
        self.pass_gate().await;
        let state = self.state();
        if state.failing {
            return Err(DiscoveryError::Socket(std::io::Error::from_raw_os_error(
                libc::ENOBUFS,
            )));
        }
        Ok(state.links.get(&ifindex).cloned())
    }

    async fn link_modes(&self) -> Result<HashMap<u32, LinkMode>, LinkModeError> {
        self.pass_gate().await;
        Ok(self.state().modes.clone())
    }
}
