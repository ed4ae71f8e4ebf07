//! The families the eBPF program adds beyond packet and byte counts: the protocol mix, TCP
//! flags and packet sizes of every interface the counter is attached to, and traffic per
//! remote tunnel endpoint.

use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::{
    InterfaceSnapshot, Snapshot,
    family::{Result, counter, gauge},
    names,
};
use collector_common::{Protocol, SIZE_BOUNDS, SIZE_BUCKETS, Stats, TcpFlag};

/// Each direction's statistics of every interface the eBPF counter measures.
fn directions(s: &Snapshot) -> impl Iterator<Item = (&InterfaceSnapshot, &'static str, &Stats)> {
    s.interfaces
        .iter()
        .filter(|i| i.monitored())
        .filter_map(|i| Some((i, i.ebpf.as_ref()?)))
        .flat_map(|(i, stats)| [(i, "rx", &stats.rx), (i, "tx", &stats.tx)])
}

/// Encodes the breakdown and overlay families of `s`.
pub(super) fn encode(s: &Snapshot, encoder: &mut DescriptorEncoder<'_>) -> Result {
    let per_protocol = |value: fn(&Stats, usize) -> u64| {
        directions(s).flat_map(move |(i, direction, stats)| {
            Protocol::ALL.into_iter().map(move |p| {
                let labels = [
                    ("interface", i.name.as_str()),
                    ("direction", direction),
                    ("protocol", p.as_str()),
                ];
                (labels, value(stats, p as usize))
            })
        })
    };
    counter(
        encoder,
        names::PROTOCOL_PACKETS,
        "Packets per interface, direction and protocol (eBPF; on tunnel devices the inner packet).",
        per_protocol(|stats, p| stats.protocols[p].packets),
    )?;
    counter(
        encoder,
        names::PROTOCOL_BYTES,
        "Bytes per interface, direction and protocol (eBPF: the whole frame as the TC hook sees it, skb->len).",
        per_protocol(|stats, p| stats.protocols[p].bytes),
    )?;
    counter(
        encoder,
        names::TCP_FLAGS,
        "TCP segments per interface, direction and flag combination: syn (SYN without ACK), syn_ack, fin, rst (eBPF).",
        directions(s).flat_map(|(i, direction, stats)| {
            TcpFlag::ALL.into_iter().map(move |f| {
                let labels = [
                    ("interface", i.name.as_str()),
                    ("direction", direction),
                    ("flag", f.as_str()),
                ];
                (labels, stats.tcp_flags[f as usize])
            })
        }),
    )?;
    sizes(s, encoder)?;
    if s.overlay_series.zones() {
        zones(s, encoder)?;
    }
    if s.overlay_series.peers() {
        peers(s, encoder)?;
    }
    Ok(())
}

/// The overlay traffic per peer (also the whole of `/metrics/peers`).
pub(super) fn peers(s: &Snapshot, encoder: &mut DescriptorEncoder<'_>) -> Result {
    let peers = |value: fn(&super::PeerSnapshot) -> u64| {
        s.peers.iter().map(move |p| {
            let labels = [
                ("interface", p.interface.as_str()),
                ("direction", p.direction.as_rx_tx()),
                ("peer", p.peer.as_str()),
            ];
            (labels, value(p))
        })
    };
    counter(
        encoder,
        names::OVERLAY_PACKETS,
        "Packets per external-mode tunnel device, direction and remote tunnel endpoint (peer); peer=\"none\": egress packets without a tunnel key, which the device drops without counting them.",
        peers(|p| p.packets),
    )?;
    counter(
        encoder,
        names::OVERLAY_BYTES,
        "Bytes per external-mode tunnel device, direction and remote tunnel endpoint (eBPF: the inner frame, skb->len).",
        peers(|p| p.bytes),
    )
}

/// The overlay traffic per zone, and this node's zone.
fn zones(s: &Snapshot, encoder: &mut DescriptorEncoder<'_>) -> Result {
    let per_zone = |value: fn(&crate::zones::ZoneCount) -> u64| {
        s.zones.iter().map(move |z| {
            let labels = [
                ("interface", z.interface.as_str()),
                ("direction", z.direction.as_rx_tx()),
                ("zone", z.zone.as_str()),
            ];
            (labels, value(z))
        })
    };
    counter(
        encoder,
        names::OVERLAY_ZONE_PACKETS,
        "Packets per external-mode tunnel device, direction and zone of the remote tunnel endpoint (peer_zones; zone=\"unknown\": a peer in no CIDR; zone=\"none\": egress packets without a tunnel key). The zones of a device and direction add up to its eBPF packets.",
        per_zone(|z| z.counter.packets),
    )?;
    counter(
        encoder,
        names::OVERLAY_ZONE_BYTES,
        "Bytes per external-mode tunnel device, direction and zone of the remote tunnel endpoint (eBPF: the inner frame, skb->len).",
        per_zone(|z| z.counter.bytes),
    )?;
    gauge(
        encoder,
        names::NODE_ZONE_INFO,
        "This node's zone (node_zone), value 1: the source zone of its cross-zone traffic.",
        MetricType::Gauge,
        s.node_zone
            .iter()
            .map(|zone| ([("zone", zone.as_str())], 1_i64)),
    )
}

/// The packet-size histogram: RMON-style buckets, `_sum` = bytes, `_count` = packets.
fn sizes(s: &Snapshot, encoder: &mut DescriptorEncoder<'_>) -> Result {
    let mut rows = directions(s).peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        names::PACKET_SIZE_BYTES,
        "Packet sizes per interface and direction, in bytes (eBPF: skb->len at the TC hook; a GSO super-packet counts once at its full size). _count and _sum are the eBPF packet and byte counts.",
        None,
        MetricType::Histogram,
    )?;
    for (i, direction, stats) in rows {
        let mut buckets = [(f64::INFINITY, 0); SIZE_BUCKETS];
        for (bucket, (bound, count)) in buckets.iter_mut().enumerate() {
            if let Some(upper) = SIZE_BOUNDS.get(bucket) {
                *bound = f64::from(*upper);
            }
            *count = stats.sizes[bucket];
        }
        let labels = [("interface", i.name.as_str()), ("direction", direction)];
        // Byte totals stay exact as floats up to 2^53 bytes (8 PiB).
        #[allow(clippy::cast_precision_loss)]
        let sum = stats.bytes() as f64;
        // `_count` from the buckets themselves, so that it equals the +Inf bucket even when the
        // read fell between a CPU's bucket and protocol increments.
        let count = stats.sizes.iter().fold(0_u64, |n, b| n.wrapping_add(*b));
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}
