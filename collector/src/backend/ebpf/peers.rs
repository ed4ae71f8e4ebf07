//! Traffic per remote tunnel endpoint, as user space sees it, and the ageing of idle peers.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use collector_common::{Counter, Direction, PEER_IPV4, PEER_IPV6, PeerKey};

/// Traffic of one tunnel device in one direction to or from one remote endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The tunnel device.
    pub ifindex: u32,
    /// The direction.
    pub direction: Direction,
    /// The remote endpoint; `None` for packets without a tunnel key.
    pub endpoint: Option<IpAddr>,
    /// Packets and bytes.
    pub counter: Counter,
}

impl Peer {
    pub(super) fn from_key(key: &PeerKey, counter: Counter) -> Option<Self> {
        let bytes = key.addr_bytes();
        let endpoint = match key.family {
            PEER_IPV4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
            PEER_IPV6 => Some(IpAddr::from(bytes)),
            _ => None,
        };
        Some(Self {
            ifindex: key.ifindex,
            direction: Direction::from_raw(u32::from(key.direction))?,
            endpoint,
            counter,
        })
    }
}

/// The peers as the API shows them, from their keys and counts.
pub(super) fn shown(counts: &[(PeerKey, Counter)]) -> Vec<Peer> {
    counts
        .iter()
        .filter_map(|(key, counter)| Peer::from_key(key, *counter))
        .collect()
}

/// When each peer's counter last moved, to forget the peers that went idle.
#[derive(Debug, Default)]
pub(super) struct PeerAges {
    seen: HashMap<PeerKey, (u64, Instant)>,
}

impl PeerAges {
    /// Records a reading of every peer (its key and count) at `now`: a peer whose packet count
    /// moved (or that is new) is seen now. Peers no longer in the map are forgotten.
    pub(super) fn observe(&mut self, peers: &[(PeerKey, Counter)], now: Instant) {
        let mut seen = HashMap::with_capacity(peers.len());
        for (key, counter) in peers {
            let since = match self.seen.get(key) {
                Some(&(packets, at)) if packets == counter.packets => at,
                _ => now,
            };
            seen.insert(*key, (counter.packets, since));
        }
        self.seen = seen;
    }

    /// The peers whose counter has not moved for `idle` or longer at `now`, with the packet
    /// count they have stayed at.
    pub(super) fn idle(&self, idle: Duration, now: Instant) -> Vec<(PeerKey, u64)> {
        self.seen
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= idle)
            .map(|(key, (packets, _))| (*key, *packets))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector_common::PEER_NONE;

    /// The map key of `peer`, counted under its device's slot `generation`.
    fn peer_key(peer: &Peer, generation: u16) -> PeerKey {
        let (family, addr) = match peer.endpoint {
            None => (PEER_NONE, [0; 16]),
            Some(IpAddr::V4(v4)) => {
                let mut addr = [0; 16];
                addr[..4].copy_from_slice(&v4.octets());
                (PEER_IPV4, addr)
            }
            Some(IpAddr::V6(v6)) => (PEER_IPV6, v6.octets()),
        };
        PeerKey {
            ifindex: peer.ifindex,
            direction: peer.direction as u8,
            family,
            generation,
            addr: PeerKey::addr_words(addr),
        }
    }

    fn peer(last: u8, packets: u64) -> (PeerKey, Counter) {
        let peer = Peer {
            ifindex: 3,
            direction: Direction::Ingress,
            endpoint: Some(IpAddr::from([192, 0, 2, last])),
            counter: Counter {
                packets,
                bytes: packets * 100,
            },
        };
        (peer_key(&peer, 1), peer.counter)
    }

    #[test]
    fn a_peer_whose_counter_does_not_move_goes_idle() {
        let start = Instant::now();
        let mut ages = PeerAges::default();
        ages.observe(&[peer(1, 5), peer(2, 5)], start);
        let later = start + Duration::from_secs(60);
        ages.observe(&[peer(1, 6), peer(2, 5)], later);
        let idle = ages.idle(Duration::from_secs(30), later);
        assert_eq!(idle, vec![(peer(2, 0).0, 5)]);
        assert!(ages.idle(Duration::from_secs(61), later).is_empty());
    }

    #[test]
    fn peers_round_trip_through_their_map_key() {
        for endpoint in [
            None,
            Some(IpAddr::from([192, 0, 2, 7])),
            Some("2001:db8::7".parse().expect("address")),
        ] {
            let peer = Peer {
                ifindex: 3,
                direction: Direction::Egress,
                endpoint,
                counter: Counter::default(),
            };
            assert_eq!(
                Peer::from_key(&peer_key(&peer, 9), Counter::default()),
                Some(peer)
            );
        }
    }
}
