//! The tc side of rtnetlink, by interface index: adding the `clsact` qdisc, adding, changing,
//! listing and removing cls_bpf filters. Used for legacy tc attachments (see `legacy`), so that
//! no step depends on an interface's name.

use std::io;

use aya::programs::tc::TcHandle;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Parseable as _,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle as NlHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::hooks::{Hook, is_linkmeter_program};

/// One filter on a hook, as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Filter {
    /// Its priority.
    pub(super) priority: u16,
    /// Its handle.
    pub(super) handle: TcHandle,
    /// The id of its BPF program, for cls_bpf filters.
    pub(super) program_id: Option<u32>,
    /// The name of its BPF program, for cls_bpf filters.
    pub(super) name: Option<String>,
}

impl Filter {
    fn from_message(msg: &TcMessage) -> Self {
        let bpf_options = || {
            msg.attributes.iter().flat_map(|attr| match attr {
                TcAttribute::Options(options) => options.as_slice(),
                _ => &[],
            })
        };
        let program_id = bpf_options().find_map(|o| match o {
            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => Some(*id),
            _ => None,
        });
        let name = bpf_options().find_map(|o| match o {
            TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => Some(name.clone()),
            _ => None,
        });
        Self {
            // `tcm_info` holds the priority in its upper and the protocol in its lower half.
            priority: u16::try_from(msg.header.info >> 16).unwrap_or(u16::MAX),
            handle: TcHandle::new(msg.header.handle.major, msg.header.handle.minor),
            program_id,
            name,
        }
    }

    /// Whether it runs a linkmeter program (of this process or another).
    pub(super) fn is_linkmeter(&self) -> bool {
        self.name.as_deref().is_some_and(is_linkmeter_program)
    }
}

/// The clsact parent of `hook` (`TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / _EGRESS)`).
const fn clsact_parent(hook: Hook) -> NlHandle {
    NlHandle {
        major: 0xffff,
        minor: match hook {
            Hook::Ingress => 0xfff2,
            Hook::Egress => 0xfff3,
        },
    }
}

/// How long a filter dump may take before the check gives up (and counts as "cannot check").
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The filters on `hook` of `ifindex`, in the calling thread's network namespace (an
/// `RTM_GETTFILTER` dump; a hook without a clsact qdisc, or a device that is gone, has none).
///
/// # Errors
///
/// The netlink socket, the request or the kernel's answer failed, or no answer came within
/// [`DUMP_TIMEOUT`].
pub(super) fn filters(ifindex: u32, hook: Hook) -> io::Result<Vec<Filter>> {
    let socket = request_socket()?;
    socket.send(&dump_request(ifindex, hook)?, 0)?;
    let mut found = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        if parse_dump(&data, &mut found)? {
            return Ok(found);
        }
    }
}

/// The `RTM_GETTFILTER` dump request for `hook` of `ifindex`.
/// A netlink socket connected to the kernel, whose reads give up after [`DUMP_TIMEOUT`].
fn request_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    let timeout =
        nix::sys::time::TimeVal::new(i64::try_from(DUMP_TIMEOUT.as_secs()).unwrap_or(i64::MAX), 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Removes the filter at `priority` and `handle` from `hook` of `ifindex` (`RTM_DELTFILTER`),
/// whatever its name: the callers have checked what it runs.
///
/// # Errors
///
/// The kernel refused (`ENOENT`: no such filter).
pub(super) fn delete_filter(
    ifindex: u32,
    hook: Hook,
    priority: u16,
    handle: TcHandle,
) -> io::Result<()> {
    let mut tc = tc_message(ifindex)?;
    tc.header.parent = clsact_parent(hook);
    tc.header.handle = nl_handle(handle);
    // Priority in the upper half; protocol 0 in the lower matches the filter's, whatever it is.
    tc.header.info = u32::from(priority) << 16;
    tc.attributes = vec![TcAttribute::Kind("bpf".into())];
    request_ack(RouteNetlinkMessage::DelTrafficFilter(tc))
}

/// Sends `message` as a request with `NLM_F_ACK` (and `extra` flags) and waits for the
/// kernel's answer.
///
/// # Errors
///
/// The kernel's errno, or a socket error.
fn request_ack_with(message: RouteNetlinkMessage, extra: u16) -> io::Result<()> {
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(message),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    let socket = request_socket()?;
    socket.send(&buf, 0)?;
    let (data, _) = socket.recv_from_full()?;
    let buffer = NetlinkBuffer::new_checked(&data).map_err(io::Error::other)?;
    match NetlinkMessage::<RouteNetlinkMessage>::parse(&buffer)
        .map_err(io::Error::other)?
        .payload
    {
        NetlinkPayload::Error(err) if err.code.is_some() => Err(err.to_io()),
        _ => Ok(()),
    }
}

fn request_ack(message: RouteNetlinkMessage) -> io::Result<()> {
    request_ack_with(message, 0)
}

/// A tc message for the interface with index `ifindex`.
fn tc_message(ifindex: u32) -> io::Result<TcMessage> {
    let mut tc = TcMessage::default();
    tc.header.index =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    Ok(tc)
}

fn nl_handle(handle: TcHandle) -> NlHandle {
    let raw = u32::from(handle);
    NlHandle {
        major: (raw >> 16) as u16,
        minor: (raw & 0xffff) as u16,
    }
}

/// Adds the `clsact` qdisc to the interface with index `ifindex`; one already there is left as
/// it is (`EEXIST` is success).
///
/// # Errors
///
/// The kernel refused (`ENODEV`: no such interface).
pub(super) fn add_clsact(ifindex: u32) -> io::Result<()> {
    let mut tc = tc_message(ifindex)?;
    tc.header.handle = NlHandle {
        major: 0xffff,
        minor: 0,
    };
    tc.header.parent = NlHandle {
        major: 0xffff,
        minor: 0xfff1,
    };
    tc.attributes = vec![TcAttribute::Kind("clsact".into())];
    match request_ack_with(
        RouteNetlinkMessage::NewQueueDiscipline(tc),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Adds a direct-action cls_bpf filter running `program` (named `name`) to `hook` of the
/// interface with index `ifindex`, at `priority` and `handle`, for every protocol; with
/// `replace`, changes the program of the filter already there instead (atomically).
///
/// # Errors
///
/// The kernel refused (`EEXIST`: a filter is there; `ENOENT`: none to replace).
pub(super) fn add_filter(
    ifindex: u32,
    hook: Hook,
    at: (u16, TcHandle),
    program: (std::os::fd::BorrowedFd<'_>, &str),
    replace: bool,
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (priority, handle) = at;
    let (fd, name) = program;
    let mut tc = tc_message(ifindex)?;
    tc.header.parent = clsact_parent(hook);
    tc.header.handle = nl_handle(handle);
    // Priority in the upper half, the protocol (`htons(ETH_P_ALL)`) in the lower.
    tc.header.info = (u32::from(priority) << 16) | u32::from(0x0003u16.to_be());
    tc.attributes = vec![
        TcAttribute::Kind("bpf".into()),
        TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(
                u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
            )),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_owned())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]),
    ];
    let flags = if replace {
        0
    } else {
        NLM_F_CREATE | NLM_F_EXCL
    };
    request_ack_with(RouteNetlinkMessage::NewTrafficFilter(tc), flags)
}

fn dump_request(ifindex: u32, hook: Hook) -> io::Result<Vec<u8>> {
    let mut tc = TcMessage::default();
    tc.header.index =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    tc.header.parent = clsact_parent(hook);
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetTrafficFilter(tc)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    Ok(buf)
}

/// Parses one datagram of a filter dump into `found`; `true` once the dump is complete.
///
/// # Errors
///
/// A message that does not parse, or the kernel's error answer.
fn parse_dump(mut data: &[u8], found: &mut Vec<Filter>) -> io::Result<bool> {
    while !data.is_empty() {
        let buffer = NetlinkBuffer::new_checked(&data).map_err(io::Error::other)?;
        // NLMSG_ALIGN: each message starts on a 4-byte boundary.
        let length = (buffer.length() as usize).next_multiple_of(4);
        let msg =
            NetlinkMessage::<RouteNetlinkMessage>::parse(&buffer).map_err(io::Error::other)?;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(err) => return Err(err.to_io()),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(tc)) => {
                found.push(Filter::from_message(&tc));
            }
            _ => {}
        }
        data = data.get(length..).unwrap_or_default();
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
