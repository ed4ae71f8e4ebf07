//! Every metric name linkmeter exports, in one place. Counter names are given without the
//! `_total` suffix, which the encoder appends.

/// Gauge 1 per interface: `interface`, `ifindex`, `kind`, `driver`, `backend`, `reason`.
pub(crate) const INTERFACE_INFO: &str = "linkmeter_interface_info";
/// Counter: packets per `interface`, `direction`, `backend`.
pub(crate) const INTERFACE_PACKETS: &str = "linkmeter_interface_packets";
/// Counter: bytes per `interface`, `direction`, `backend`.
pub(crate) const INTERFACE_BYTES: &str = "linkmeter_interface_bytes";
/// Counter: kernel errors per `interface`, `direction`.
pub(crate) const INTERFACE_ERRORS: &str = "linkmeter_interface_errors";
/// Counter: kernel drops per `interface`, `direction`.
pub(crate) const INTERFACE_DROPPED: &str = "linkmeter_interface_dropped";
/// Counter: dropped packets per `interface`, `reason` (the kernel's drop reason, eBPF).
pub(crate) const INTERFACE_DROPS: &str = "linkmeter_interface_drops";
/// Gauge 1 if drops are counted by reason, 0 if not (`linkmeter check` says why).
pub(crate) const DROP_REASONS_AVAILABLE: &str = "linkmeter_drop_reasons_available";
/// Unknown-typed: raw driver statistics per `interface`, `stat`.
pub(crate) const ETHTOOL_STAT: &str = "linkmeter_ethtool_stat";
/// Gauge: link speed in bytes per second per `interface`.
pub(crate) const LINK_SPEED_BYTES: &str = "linkmeter_link_speed_bytes";
/// Gauge: 1 full duplex, 0 half duplex, per `interface`.
pub(crate) const LINK_FULL_DUPLEX: &str = "linkmeter_link_full_duplex";
/// Gauge: interfaces per `backend`.
pub(crate) const BACKEND_INTERFACES: &str = "linkmeter_backend_interfaces";
/// Gauge: duration of the last collection per `backend`, seconds.
pub(crate) const COLLECT_DURATION_SECONDS: &str = "linkmeter_collect_duration_seconds";
/// Counter: collection errors per `backend`.
pub(crate) const COLLECT_ERRORS: &str = "linkmeter_collect_errors";
/// Counter: failed eBPF attachments.
pub(crate) const EBPF_ATTACH_FAILURES: &str = "linkmeter_ebpf_attach_failures";
/// Counter: re-attachments after our program was removed by someone else.
pub(crate) const EBPF_REATTACH: &str = "linkmeter_ebpf_reattach";
/// Counter: moves of our program back to the head of a hook's chain.
pub(crate) const EBPF_REANCHOR: &str = "linkmeter_ebpf_reanchor";
/// Gauge: programs before ours on a hook, per `interface` and `direction`.
pub(crate) const EBPF_PROGRAMS_BEFORE: &str = "linkmeter_ebpf_programs_before";
/// Counter: resyncs made because link events were lost or the subscription re-opened, per
/// `reason`.
pub(crate) const NETLINK_RESYNCS: &str = "linkmeter_netlink_resyncs";
/// Counter: packets the eBPF programs could not count in their map, per `map`.
pub(crate) const EBPF_MAP_OVERFLOW: &str = "linkmeter_ebpf_map_overflow";
/// Gauge: interface slots of the eBPF maps, per `state` (`used`, `free`).
pub(crate) const EBPF_SLOTS: &str = "linkmeter_ebpf_slots";
/// Gauge: kernel memory of each eBPF map in bytes, per `map`.
pub(crate) const EBPF_MAP_BYTES: &str = "linkmeter_ebpf_map_bytes";
/// Counter: packets per `interface`, `direction`, `protocol` (eBPF).
pub(crate) const PROTOCOL_PACKETS: &str = "linkmeter_interface_protocol_packets";
/// Counter: bytes per `interface`, `direction`, `protocol` (eBPF).
pub(crate) const PROTOCOL_BYTES: &str = "linkmeter_interface_protocol_bytes";
/// Counter: TCP segments per `interface`, `direction`, `flag` (eBPF).
pub(crate) const TCP_FLAGS: &str = "linkmeter_interface_tcp_flags";
/// Histogram: packet sizes in bytes per `interface`, `direction` (eBPF).
pub(crate) const PACKET_SIZE_BYTES: &str = "linkmeter_interface_packet_size_bytes";
/// Counter: packets per tunnel `interface`, `direction`, `peer` (remote endpoint or `none`).
pub(crate) const OVERLAY_PACKETS: &str = "linkmeter_overlay_packets";
/// Counter: bytes per tunnel `interface`, `direction`, `peer`.
pub(crate) const OVERLAY_BYTES: &str = "linkmeter_overlay_bytes";
/// Gauge 1 if the eBPF backend is loaded, 0 if it is unavailable.
pub(crate) const EBPF_AVAILABLE: &str = "linkmeter_ebpf_available";
/// Gauge 1: `version`.
pub(crate) const BUILD_INFO: &str = "linkmeter_build_info";
/// Overlay packets per tunnel device, direction and zone.
pub(crate) const OVERLAY_ZONE_PACKETS: &str = "linkmeter_overlay_zone_packets";
/// Overlay bytes per tunnel device, direction and zone.
pub(crate) const OVERLAY_ZONE_BYTES: &str = "linkmeter_overlay_zone_bytes";
/// This node's zone.
pub(crate) const NODE_ZONE_INFO: &str = "linkmeter_node_zone_info";
