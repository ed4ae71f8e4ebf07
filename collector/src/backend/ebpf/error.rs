//! Why attaching, detaching or using the maps failed.

use std::io;

use aya::maps::MapError;

use super::hooks::{AttachedMode, Hook};

/// Errors from attaching to or detaching from a TC hook. Each names the interface and hook.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The interface does not exist (or vanished meanwhile).
    #[error("interface {interface:?} not found")]
    NoSuchInterface {
        /// The interface name.
        interface: String,
    },
    /// TCX was requested but the kernel does not have it.
    #[error("attach mode tcx needs Linux >= 6.6 (interface {interface:?}); use mode tc or auto")]
    TcxUnsupported {
        /// The interface name.
        interface: String,
    },
    /// Adding the clsact qdisc failed.
    #[error("adding the clsact qdisc to {interface:?} failed")]
    Clsact {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Every legacy tc handle of ours on the hook is taken by other tools' filters (or other
    /// linkmeter commands').
    #[error("no free linkmeter tc filter handle on {interface:?} {hook}")]
    NoFreeHandle {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
    },
    /// Listing the hook's filters, or removing a filter an earlier linkmeter left, failed.
    #[error("checking the tc filters of {interface:?} {hook} failed")]
    StaleFilter {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the attachment.
    #[error("attaching to {interface:?} {hook} ({mode}) failed")]
    Attach {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The mechanism used.
        mode: AttachedMode,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to remove the attachment.
    #[error("detaching from {interface:?} {hook} ({mode}) failed")]
    Detach {
        /// The interface name.
        interface: String,
        /// The hook.
        hook: Hook,
        /// The mechanism used.
        mode: AttachedMode,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No counter slot could be given to the interface.
    #[error("no eBPF counter slot for {interface:?}")]
    Slot {
        /// The interface name.
        interface: String,
        /// Why.
        #[source]
        source: MapReadError,
    },
    /// The hook worker thread stopped (it panicked) before it answered.
    #[error("the hook worker stopped before attaching to {interface:?}")]
    Stopped {
        /// The interface name.
        interface: String,
    },
    /// The network namespace of the calling thread cannot be recorded.
    #[error("recording the network namespace of {interface:?}")]
    Netns {
        /// The interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl AttachError {
    /// Whether the interface got no counter slot because the maps are full (`max_interfaces`
    /// slots taken, or no free directory position): worth trying again once others leave.
    pub(crate) const fn is_map_full(&self) -> bool {
        matches!(
            self,
            Self::Slot {
                source: MapReadError::Full { .. } | MapReadError::Crowded { .. },
                ..
            }
        )
    }
}

/// Errors from reading or writing the maps.
#[derive(Debug, thiserror::Error)]
pub enum MapReadError {
    /// A map lookup, update or iteration failed.
    #[error("accessing map {map}")]
    Access {
        /// Name of the map.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: MapError,
    },
    /// Every slot is taken: `max_interfaces` interfaces are attached already.
    #[error("all {capacity} interface slots are taken (raise max_interfaces)")]
    Full {
        /// The number of slots.
        capacity: u32,
    },
    /// The directory has no free position for this ifindex (it is too crowded).
    #[error("no free directory position for ifindex {ifindex}")]
    Crowded {
        /// The interface.
        ifindex: u32,
    },
    /// The number of possible CPUs cannot be read.
    #[error("reading the number of possible CPUs")]
    Cpus(#[source] std::io::Error),
}

/// Wraps a map error with the map's name.
pub(super) fn access(map: &'static str) -> impl FnOnce(MapError) -> MapReadError {
    move |source| MapReadError::Access { map, source }
}
