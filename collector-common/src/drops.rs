//! Drops by kernel drop reason: the maps and load-time constants of the `kfree_skb` tracing
//! program (`linkmeter-drops`). The program is not pinned: its counts start with each daemon.

/// Name of the per-CPU hash of drop counts (`u64`) by [`DropKey`].
pub const DROPS_MAP: &str = "LINKMETER_DROPS";
/// Name of the per-CPU array of the drop program's own counters ([`DROP_OVERFLOW`] and so on).
pub const DROP_STATS_MAP: &str = "LINKMETER_DROP_STATS";
/// Name of the `kfree_skb` BTF tracing program in the object.
pub const DROP_PROGRAM: &str = "linkmeter_kfree_skb";
/// The tracepoint the drop program attaches to.
pub const DROP_TRACEPOINT: &str = "kfree_skb";
/// Entries of [`DROPS_MAP`]: (interface, reason) pairs counted at once. A drop whose pair finds
/// the map full is counted in [`DROP_OVERFLOW`] instead.
pub const DROP_ENTRIES: u32 = 4096;

/// Index into [`DROP_STATS_MAP`]: drops whose (interface, reason) found [`DROPS_MAP`] full.
pub const DROP_OVERFLOW: u32 = 0;
/// Entries of [`DROP_STATS_MAP`].
pub const DROP_STATS_ENTRIES: u32 = 1;

/// Names of the program's load-time globals (`u32`), set by user space from the running
/// kernel's BTF: byte offsets of the fields the program reads, the daemon's network namespace
/// and the reason values that are not drops.
pub mod globals {
    /// Offset of `dev` in `struct sk_buff`.
    pub const SKB_DEV: &str = "SKB_DEV";
    /// Offset of `ifindex` in `struct net_device`.
    pub const DEV_IFINDEX: &str = "DEV_IFINDEX";
    /// Offset of the `struct net *` in `struct net_device` (`nd_net.net`).
    pub const DEV_NET: &str = "DEV_NET";
    /// Offset of the namespace's inode number in `struct net` (`ns.inum`).
    pub const NET_INUM: &str = "NET_INUM";
    /// The inode number of the daemon's network namespace (`stat /proc/self/ns/net`).
    pub const NETNS_INUM: &str = "NETNS_INUM";
    /// The value of `SKB_NOT_DROPPED_YET`.
    pub const NOT_DROPPED: &str = "REASON_NOT_DROPPED";
    /// The value of `SKB_CONSUMED`.
    pub const CONSUMED: &str = "REASON_CONSUMED";
}

/// Key of [`DROPS_MAP`]: a device of the daemon's network namespace and a drop reason (a value of
/// the kernel's `enum skb_drop_reason`, subsystem bits included).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// `skb->dev->ifindex`.
    pub ifindex: u32,
    /// The reason.
    pub reason: u32,
}
