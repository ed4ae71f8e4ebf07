//! Legacy tc (clsact qdisc + cls_bpf filters in direct-action mode): used on kernels without
//! TCX or when asked for.
//!
//! The `clsact` qdisc is added when missing and **never** deleted or replaced, since other
//! tools' filters live there. Our filters use a fixed priority ([`LEGACY_PRIORITY`]) and a
//! handle of their [`Role`]: the daemon's and the one-shot commands' (`list --attach`, `dump`,
//! `watch`) never share one, so a command never touches the daemon's filters. A filter is ours
//! when it runs the program id we loaded; a filter at one of our handles that runs another
//! linkmeter program was left by an earlier daemon (removed by the daemon at start and before
//! attaching there), and a filter that is not linkmeter's is reported and left alone, ours
//! going to the next free handle. Filters are found by dumping the hook's filters over
//! rtnetlink ([`filters`]), removed by index ([`delete_filter`]), and detached from the network
//! namespace they were added in ([`AttachNetns`]).

use std::{
    fs::File,
    io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    sync::Arc,
};

use aya::programs::tc::{self, TcError, TcHandle};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, Parseable as _,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcHandle as NlHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, setns};

use super::{attach::AttachError, hooks::Hook};

/// Priority of linkmeter's cls_bpf filters in legacy tc mode (lower runs earlier).
pub(crate) const LEGACY_PRIORITY: u16 = 1;

/// Names of linkmeter's programs start with this: how a filter of another linkmeter process
/// is told from another tool's.
const PROGRAM_PREFIX: &str = "linkmeter";

/// Handles a role tries, in order, when earlier ones are taken by another tool's filter.
const HANDLES_PER_ROLE: u16 = 4;

/// Who attaches: the daemon, or a one-shot command running beside it. They use different
/// legacy tc handles, so that neither removes or replaces the other's filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// `linkmeter run`: handles `0x4c4d` ("LM"), then `0x1:4c4d`, ...; at start it removes the
    /// filters earlier daemons left at them.
    #[default]
    Daemon,
    /// `list --attach`, `dump`, `watch`: handles `0x4c4e`, then `0x1:4c4e`, ...; removes
    /// nothing but its own.
    Command,
}

impl Role {
    /// The handles this role attaches at, in order of preference.
    pub(crate) fn handles(self) -> impl Iterator<Item = TcHandle> {
        let minor = match self {
            Self::Daemon => 0x4c4d,
            Self::Command => 0x4c4e,
        };
        (0..HANDLES_PER_ROLE).map(move |major| TcHandle::new(major, minor))
    }
}

/// Adds the clsact qdisc if missing (never replacing an existing one).
pub(super) fn add_clsact(interface: &str) -> Result<(), AttachError> {
    match tc::qdisc_add_clsact(interface) {
        Ok(()) => {}
        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(AttachError::NoSuchInterface {
                interface: interface.to_owned(),
            });
        }
        Err(err) if tc_errno(&err) == Some(libc::EEXIST) => {}
        Err(source) => {
            return Err(AttachError::Clsact {
                interface: interface.to_owned(),
                source,
            });
        }
    }
    Ok(())
}

/// Where a legacy filter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// A free handle: a new filter.
    Free(TcHandle),
    /// A handle holding an earlier daemon's filter, whose program is replaced in place
    /// (atomically: the filter keeps counting into the pinned maps until ours takes over).
    Replace(TcHandle),
}

/// The handle `role` attaches at on this hook: the first of its handles that is free, or holds
/// a filter an earlier daemon left (daemon only): replaced in place when `adopt` (pinned maps
/// continue), removed first otherwise. A handle held by another tool's filter is reported and
/// skipped.
pub(super) fn choose_handle(
    interface: &str,
    ifindex: u32,
    hook: Hook,
    role: Role,
    adopt: bool,
) -> Result<Slot, AttachError> {
    let stale_error = |source| AttachError::StaleFilter {
        interface: interface.to_owned(),
        hook,
        source,
    };
    let present = filters(ifindex, hook).map_err(stale_error)?;
    for handle in role.handles() {
        let Some(filter) = present
            .iter()
            .find(|f| f.priority == LEGACY_PRIORITY && f.handle == handle)
        else {
            return Ok(Slot::Free(handle));
        };
        if !filter.is_linkmeter() {
            tracing::warn!(interface, %hook, handle = format_args!("{:#x}", u32::from(handle)),
                program = filter.name.as_deref().unwrap_or("?"),
                "another tool's tc filter sits at linkmeter's handle; attaching beside it");
        } else if role == Role::Daemon && adopt {
            return Ok(Slot::Replace(handle));
        } else if role == Role::Daemon {
            delete_filter(ifindex, hook, filter.priority, handle).map_err(stale_error)?;
            tracing::info!(interface, %hook, "removed a tc filter an earlier linkmeter left");
            return Ok(Slot::Free(handle));
        }
    }
    Err(AttachError::NoFreeHandle {
        interface: interface.to_owned(),
        hook,
    })
}

/// Removes the filters of other linkmeter processes from both hooks of `ifindex`: at the
/// daemon's handles (`Some(Role::Daemon)`: what an earlier daemon left, e.g. after SIGKILL),
/// except those running a program in `keep` (ours), or at any priority and handle (`None`:
/// `linkmeter cleanup`). Returns how many were removed.
///
/// # Errors
///
/// Listing or removing a filter failed.
pub(crate) fn remove_stale_filters(
    ifindex: u32,
    scope: Option<Role>,
    keep: &[u32],
) -> io::Result<usize> {
    let mut removed = 0;
    for hook in Hook::ALL {
        for filter in filters(ifindex, hook)? {
            let in_scope = scope.is_none_or(|role| {
                filter.priority == LEGACY_PRIORITY && role.handles().any(|h| h == filter.handle)
            });
            let ours = filter.program_id.is_some_and(|id| keep.contains(&id));
            if filter.is_linkmeter() && in_scope && !ours {
                match delete_filter(ifindex, hook, filter.priority, filter.handle) {
                    Ok(()) => removed += 1,
                    // Gone meanwhile (the device, or another cleanup).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// The errno inside a [`TcError`], when there is one.
fn tc_errno(err: &TcError) -> Option<i32> {
    match err {
        TcError::IoError(e) => e.raw_os_error(),
        TcError::NetlinkError(e) => e.raw_os_error(),
        _ => None,
    }
}

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
    fn is_linkmeter(&self) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| n.starts_with(PROGRAM_PREFIX))
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
    let mut tc = TcMessage::default();
    tc.header.index =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    tc.header.parent = clsact_parent(hook);
    let raw = u32::from(handle);
    tc.header.handle = NlHandle {
        major: (raw >> 16) as u16,
        minor: (raw & 0xffff) as u16,
    };
    // Priority in the upper half; protocol 0 in the lower matches the filter's, whatever it is.
    tc.header.info = u32::from(priority) << 16;
    tc.attributes = vec![TcAttribute::Kind("bpf".into())];
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelTrafficFilter(tc)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
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

/// The network namespace an attachment was made in.
///
/// Legacy tc filters are found and removed over netlink, which acts on the *calling thread's*
/// namespace and names the device by ifindex; TCX hooks are queried by interface name. Doing
/// either from another namespace would miss the attachment or, worse, hit a device with the
/// same ifindex or name there. Callers therefore enter this namespace first when elsewhere.
#[derive(Debug)]
pub(crate) struct AttachNetns {
    fd: File,
    inode: u64,
}

impl AttachNetns {
    /// The calling thread's namespace, reusing `cached` when it is the same one (so that a
    /// thousand attachments share one file descriptor).
    pub(super) fn current(cached: &mut Option<Arc<Self>>) -> io::Result<Arc<Self>> {
        let inode = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        if let Some(netns) = cached.as_ref().filter(|n| n.inode == inode) {
            return Ok(Arc::clone(netns));
        }
        let netns = Arc::new(Self::open()?);
        *cached = Some(Arc::clone(&netns));
        Ok(netns)
    }

    fn open() -> io::Result<Self> {
        let fd = File::open("/proc/thread-self/ns/net")?;
        let inode = fd.metadata()?.ino();
        Ok(Self { fd, inode })
    }

    /// Moves the calling thread into this namespace (if it is elsewhere) until the guard drops.
    pub(super) fn enter(&self) -> io::Result<Option<NetnsRestore>> {
        let current = Self::open()?;
        if current.inode == self.inode {
            return Ok(None);
        }
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        Ok(Some(NetnsRestore {
            original: current.fd,
        }))
    }
}

/// Returns the thread to the namespace it came from.
#[derive(Debug)]
pub(super) struct NetnsRestore {
    original: File,
}

impl Drop for NetnsRestore {
    fn drop(&mut self) {
        if let Err(err) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %err, "cannot return to the original network namespace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_daemon_and_the_commands_never_share_a_handle() {
        let daemon: Vec<u32> = Role::Daemon.handles().map(u32::from).collect();
        let command: Vec<u32> = Role::Command.handles().map(u32::from).collect();
        assert_eq!(daemon, [0x4c4d, 0x1_4c4d, 0x2_4c4d, 0x3_4c4d]);
        assert!(command.iter().all(|h| !daemon.contains(h)));
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
}
