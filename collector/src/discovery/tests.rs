//! Link messages serialized by netlink-packet-route (an independent implementation of the
//! format) and read by [`wire`], without a kernel.

use netlink_packet_core::{Emitable as _, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, Stats64},
};

use super::*;

/// `msg` as netlink-packet-route writes it, read back by [`wire::parse_link`].
fn parse_link(msg: &LinkMessage) -> Option<LinkFacts> {
    let mut bytes = vec![0; msg.buffer_len()];
    msg.emit(&mut bytes);
    wire::parse_link(&bytes)
}

fn message(ifindex: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    msg.attributes = attributes;
    msg
}

fn stats64(rx_packets: u64, tx_packets: u64) -> Stats64 {
    let mut s = Stats64::default();
    s.rx_packets = rx_packets;
    s.tx_packets = tx_packets;
    s.rx_bytes = rx_packets * 100;
    s.tx_bytes = tx_packets * 100;
    s.rx_errors = 1;
    s.tx_errors = 2;
    s.rx_dropped = 3;
    s.tx_dropped = 4;
    s
}

#[test]
fn a_vxlan_link_gives_its_name_kind_and_statistics() {
    let facts = parse_link(&message(
        3,
        vec![
            LinkAttribute::IfName("cilium_vxlan".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Vxlan)]),
            LinkAttribute::Stats64(stats64(10, 20)),
        ],
    ))
    .expect("named");
    assert_eq!(facts.link, fake::link(3, "cilium_vxlan", Some("vxlan")));
    let stats = facts.stats.expect("stats");
    assert_eq!((stats.rx_packets, stats.tx_packets), (10, 20));
    assert_eq!((stats.rx_bytes, stats.tx_bytes), (1000, 2000));
    assert_eq!((stats.rx_errors, stats.tx_errors), (1, 2));
    assert_eq!((stats.rx_dropped, stats.tx_dropped), (3, 4));
}

#[test]
fn framing_follows_collect_metadata_and_the_link_layer_type() {
    use netlink_packet_route::link::{InfoData, InfoGeneve, InfoVxlan, LinkLayerType};
    let framing = |data: Option<InfoData>, link_layer: LinkLayerType| {
        let kind = match data {
            Some(InfoData::Geneve(_)) => InfoKind::Geneve,
            _ => InfoKind::Vxlan,
        };
        let mut info = vec![LinkInfo::Kind(kind)];
        info.extend(data.map(LinkInfo::Data));
        let mut msg = message(
            4,
            vec![
                LinkAttribute::IfName("dev".into()),
                LinkAttribute::LinkInfo(info),
            ],
        );
        msg.header.link_layer_type = link_layer;
        let Framing {
            tunnel_peers,
            raw_ip,
        } = parse_link(&msg).expect("named").link.framing;
        (tunnel_peers, raw_ip)
    };
    let external = InfoData::Vxlan(vec![InfoVxlan::CollectMetadata(true)]);
    let fixed = InfoData::Vxlan(vec![InfoVxlan::CollectMetadata(false), InfoVxlan::Id(5)]);
    let geneve = InfoData::Geneve(vec![InfoGeneve::CollectMetadata]);
    assert_eq!(framing(Some(external), LinkLayerType::Ether), (true, false));
    assert_eq!(framing(Some(fixed), LinkLayerType::Ether), (false, false));
    assert_eq!(framing(Some(geneve), LinkLayerType::Ether), (true, false));
    assert_eq!(framing(None, LinkLayerType::Ether), (false, false));
    for layer3 in [
        LinkLayerType::None,
        LinkLayerType::Rawip,
        LinkLayerType::Tunnel,
        LinkLayerType::Tunnel6,
        LinkLayerType::Ipgre,
    ] {
        assert_eq!(framing(None, layer3), (false, true), "{layer3:?}");
    }
}

#[test]
fn a_nic_has_no_kind_and_a_link_without_stats_has_none() {
    let facts = parse_link(&message(2, vec![LinkAttribute::IfName("eth0".into())])).expect("named");
    assert_eq!(facts.link.kind, None);
    assert_eq!(facts.stats, None);
}

#[test]
fn kinds_the_library_does_not_know_keep_their_name() {
    let facts = parse_link(&message(
        9,
        vec![
            LinkAttribute::IfName("nk0".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Other("netkit".into()))]),
        ],
    ))
    .expect("named");
    assert_eq!(facts.link.kind.as_deref(), Some("netkit"));
}

#[test]
fn a_link_without_a_name_is_skipped() {
    assert_eq!(parse_link(&message(4, vec![])), None);
}

#[test]
fn odd_names_are_kept_exactly_as_they_are() {
    for (name, shown) in [
        ("we\"ird\\na me", "we\"ird\\na me"),
        ("lxc\u{e9}t\u{e9}", "lxc\u{e9}t\u{e9}"),
        ("a\nb", "a\nb"),
        ("x", "x"),
    ] {
        let facts =
            parse_link(&message(5, vec![LinkAttribute::IfName(name.into())])).expect("named");
        assert_eq!(facts.link.name, shown);
    }
}

/// A datagram of netlink messages as the kernel would send them.
fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, inner) in messages.into_iter().enumerate() {
        let mut header = NetlinkHeader::default();
        header.sequence_number = u32::try_from(seq).expect("few");
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        out.extend_from_slice(&bytes);
    }
    out
}

#[test]
fn new_and_deleted_links_become_events_and_other_messages_are_ignored() {
    let new = message(
        6,
        vec![
            LinkAttribute::IfName("vx6".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Vxlan)]),
        ],
    );
    let bytes = datagram(vec![
        RouteNetlinkMessage::NewLink(new),
        RouteNetlinkMessage::NewLink(message(7, vec![])),
        RouteNetlinkMessage::DelLink(message(6, vec![])),
        RouteNetlinkMessage::NewAddress(Default::default()),
    ]);
    assert_eq!(
        rtnl::events(&bytes),
        vec![
            LinkEvent::New(fake::link(6, "vx6", Some("vxlan"))),
            LinkEvent::Deleted { ifindex: 6 },
        ]
    );
    // A datagram cut in the middle of a message: what came before, then "events lost".
    let cut = &bytes[..bytes.len() - 3];
    let events = rtnl::events(cut);
    assert_eq!(events.last(), Some(&LinkEvent::Lost));
    assert_eq!(
        events[0],
        LinkEvent::New(fake::link(6, "vx6", Some("vxlan")))
    );
}

/// A netlink message of sequence `seq` with `flags`, serialized.
fn serialized(seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    header.flags = flags;
    let mut message = NetlinkMessage::new(header, payload);
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

fn new_link(ifindex: u32, name: &str) -> NetlinkPayload<RouteNetlinkMessage> {
    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(message(
        ifindex,
        vec![LinkAttribute::IfName(name.into())],
    )))
}

#[test]
fn a_dump_answer_is_read_until_done_and_an_interruption_is_noticed() {
    use netlink_packet_core::DoneMessage;
    const NLM_F_MULTI: u16 = 0x2;
    let mut links = Vec::new();
    let mut interrupted = false;
    let mut read = |datagram: &[u8], interrupted: &mut bool| {
        rtnl::read_reply(datagram, 5, false, interrupted, |m| {
            links.extend(wire::parse_link(m.payload).map(|f| f.link.name));
        })
        .expect("reads")
    };
    // A stale answer (seq 4) is skipped; the first datagram does not finish the dump.
    let mut first = serialized(4, NLM_F_MULTI, new_link(9, "old"));
    first.extend(serialized(5, NLM_F_MULTI, new_link(1, "lo")));
    assert_eq!(read(&first, &mut interrupted), None);
    // The kernel flags the second part: links changed while it dumped.
    let mut second = serialized(5, NLM_F_MULTI | wire::NLM_F_DUMP_INTR, new_link(2, "eth0"));
    second.extend(serialized(
        5,
        NLM_F_MULTI | wire::NLM_F_DUMP_INTR,
        NetlinkPayload::Done(DoneMessage::default()),
    ));
    assert_eq!(read(&second, &mut interrupted), Some(true));
    assert_eq!(links, ["lo", "eth0"]);
}

#[test]
fn a_lookup_ends_with_its_one_link_or_with_enodev() {
    let mut found = Vec::new();
    let mut interrupted = false;
    let answer = serialized(3, 0, new_link(7, "vx7"));
    let done = rtnl::read_reply(&answer, 3, true, &mut interrupted, |m| {
        found.extend(wire::parse_link(m.payload));
    });
    assert_eq!(done.expect("reads"), Some(false));
    assert_eq!(found[0].link.ifindex, 7);
    let mut error = netlink_packet_core::ErrorMessage::default();
    error.code = std::num::NonZeroI32::new(-libc::ENODEV);
    let answer = serialized(3, 0, NetlinkPayload::Error(error));
    match rtnl::read_reply(&answer, 3, true, &mut interrupted, |_| {}) {
        Err(RequestError::Kernel(libc::ENODEV)) => {}
        other => panic!("{other:?}"),
    }
}
