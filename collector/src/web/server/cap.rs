//! The connection cap with idle eviction: the table of the connections kept, what each shares
//! with it (its address, its requests in flight, its eviction), and which one makes room for a
//! newcomer at the cap.
//!
//! A connection with no request in flight (idle, still sending its header, or waiting for its
//! password to be checked) can be evicted: the oldest of the source address that holds the most
//! connections, so one noisy client evicts its own connections first. When every connection has
//! an authorised request in flight, the newcomer is refused.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::{Notify, futures::Notified};

/// The connections kept, oldest first, for eviction.
#[derive(Debug)]
pub(super) struct Connections {
    max: usize,
    next: AtomicUsize,
    /// The connections by id: ids grow, so the oldest comes first.
    pub(super) open: Mutex<BTreeMap<usize, Arc<Shared>>>,
}

/// What a connection shares with the registry.
#[derive(Debug)]
pub(super) struct Shared {
    /// The client's address.
    ip: IpAddr,
    /// Authorised requests in flight (from the password check until hyper has taken the last
    /// frame of the response body).
    in_flight: AtomicUsize,
    /// Closes the connection.
    evict: Notify,
}

impl Shared {
    /// Completes once the connection is evicted (also when the eviction came before this call).
    pub(super) fn evicted(&self) -> Notified<'_> {
        self.evict.notified()
    }

    /// Whether an authorised request is in flight on the connection.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// A connection's place in the registry; leaves it when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    /// The connection's key in [`Connections::open`].
    pub(super) id: usize,
    /// What the connection shares with the registry.
    pub(super) shared: Arc<Shared>,
    connections: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Connections {
    /// An empty table that keeps at most `max` connections.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            next: AtomicUsize::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// A slot for a new connection from `ip`. At the cap, an idle connection makes room: the
    /// oldest of the address with the most connections. `None` when every connection has a
    /// request in flight.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max {
            let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
            for shared in open.values() {
                *per_ip.entry(shared.ip).or_default() += 1;
            }
            // Oldest first, so among the busiest addresses the oldest idle one is taken.
            let idle = open
                .iter()
                .filter(|(_, s)| s.in_flight.load(Ordering::Acquire) == 0)
                .max_by_key(|(id, s)| (per_ip[&s.ip], std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)?;
            if let Some(shared) = open.remove(&idle) {
                shared.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            ip,
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        open.insert(id, Arc::clone(&shared));
        Some(Slot {
            id,
            shared,
            connections: Arc::clone(self),
        })
    }
}

/// Marks a request in flight on its connection while alive.
#[derive(Debug)]
pub(super) struct Busy(Arc<Shared>);

impl Busy {
    /// Marks a request in flight on the connection of `shared`.
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(shared))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
