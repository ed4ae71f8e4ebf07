//! The tc messages linkmeter writes and reads, without a kernel.

use super::*;
/// linkmeter's legacy tc priority.
const LEGACY_PRIORITY: u16 = 1;

const DAEMON_HANDLE: TcHandle = TcHandle::new(0, 0x4c4d);

#[test]
fn filter_messages_give_priority_handle_program_id_and_name() {
    let filter = Filter::from_message(&ours(42));
    assert_eq!(
        filter,
        Filter {
            priority: LEGACY_PRIORITY,
            handle: DAEMON_HANDLE,
            program_id: Some(42),
            name: Some("linkmeter_i".into()),
        }
    );
    assert!(filter.is_linkmeter());
    let other = Filter {
        name: Some("cil_from_container".into()),
        ..filter
    };
    assert!(!other.is_linkmeter());
    // The chain head the kernel lists first has no handle and no program.
    let head = Filter::from_message(&TcMessage::default());
    assert_eq!(head.program_id, None);
}

#[test]
fn clsact_parents_are_the_kernels() {
    let raw = |h: NlHandle| (u32::from(h.major) << 16) | u32::from(h.minor);
    assert_eq!(raw(clsact_parent(Hook::Ingress)), 0xffff_fff2);
    assert_eq!(raw(clsact_parent(Hook::Egress)), 0xffff_fff3);
}

fn serialized(payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut msg = NetlinkMessage::new(NetlinkHeader::default(), payload);
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn ours(program_id: u32) -> TcMessage {
    let mut msg = TcMessage::default();
    // Priority in the upper half, the protocol (`htons(ETH_P_ALL)`) in the lower.
    msg.header.info = (u32::from(LEGACY_PRIORITY) << 16) | 0x0300;
    msg.header.handle = NlHandle {
        major: 0,
        minor: 0x4c4d,
    };
    // An odd-length name, so that the next message starts after alignment padding.
    msg.attributes = vec![
        TcAttribute::Kind("bpf".into()),
        TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgName("linkmeter_i".into())),
            TcOption::Bpf(TcFilterBpfOption::ProgId(program_id)),
        ]),
    ];
    msg
}

#[test]
fn a_dump_of_several_datagrams_is_read_until_done() {
    let filter = |id| {
        serialized(NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewTrafficFilter(ours(id)),
        ))
    };
    let mut first = filter(7);
    first.extend(filter(8));
    let mut found = Vec::new();
    assert!(!parse_dump(&first, &mut found).expect("parses"));
    let done = serialized(NetlinkPayload::Done(Default::default()));
    assert!(parse_dump(&done, &mut found).expect("parses"));
    let ids: Vec<Option<u32>> = found.iter().map(|f| f.program_id).collect();
    assert_eq!(ids, [Some(7), Some(8)]);
    assert!(found.iter().all(|f| f.handle == DAEMON_HANDLE));
}

#[test]
fn an_error_answer_and_garbage_are_errors_not_panics() {
    let mut error = netlink_packet_core::ErrorMessage::default();
    error.code = std::num::NonZeroI32::new(-libc::EPERM);
    let answer = serialized(NetlinkPayload::Error(error));
    let err = parse_dump(&answer, &mut Vec::new()).expect_err("EPERM");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    for garbage in [
        &[1u8, 2, 3][..],
        &[0xff; 40][..],
        &answer[..answer.len() - 3],
    ] {
        assert!(parse_dump(garbage, &mut Vec::new()).is_err(), "{garbage:?}");
    }
}

#[test]
fn the_request_asks_for_a_dump_of_the_hooks_filters() {
    let bytes = dump_request(7, Hook::Egress).expect("request");
    let buffer = NetlinkBuffer::new_checked(&bytes).expect("buffer");
    let msg = NetlinkMessage::<RouteNetlinkMessage>::parse(&buffer).expect("parses");
    assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_DUMP);
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetTrafficFilter(tc)) = msg.payload
    else {
        panic!("{msg:?}");
    };
    assert_eq!(
        (tc.header.index, tc.header.parent),
        (7, clsact_parent(Hook::Egress))
    );
}
