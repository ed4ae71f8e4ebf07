//! The rtnetlink sockets linkmeter reads links from: one for requests (the link dump, a lookup
//! by index) and one subscribed to link events. Non-blocking `NETLINK_ROUTE` sockets driven by
//! tokio, in the network namespace of the thread that opened them; the bytes are read by
//! [`super::wire`].

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::unix::AsyncFd;

use super::{
    LinkEvent, LinkFacts,
    wire::{self, Message, NLM_F_DUMP_INTR, NLMSG_DONE, RTM_DELLINK, RTM_NEWLINK},
};

/// Receive buffer per `recv` to begin with: a dump datagram is at most 32 KiB (the kernel's
/// cap) unless one message alone is larger, an event one message. A larger datagram (a link
/// with hundreds of long altnames makes an `RTM_NEWLINK` of over 64 KiB) grows the buffer: each
/// read is sized first with `MSG_PEEK | MSG_TRUNC`.
const RECV_BUFFER: usize = 64 * 1024;
/// The largest datagram read whole; a larger one is an error (the caller resynchronises).
const MAX_DATAGRAM: usize = 16 << 20;

/// `RTNLGRP_LINK`.
const RTNLGRP_LINK: u32 = 1;

/// A non-blocking netlink socket registered with tokio.
#[derive(Debug)]
struct Rtnl {
    fd: AsyncFd<Socket>,
    buffer: Vec<u8>,
}

impl Rtnl {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.set_non_blocking(true)?;
        // SAFETY: `socket` owns a valid descriptor, which the `AsyncFd` takes ownership of and
        // nothing replaces or closes while it is registered.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self {
            fd,
            buffer: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Receives one datagram into the buffer, grown to the datagram's size first; a datagram
    /// larger than [`MAX_DATAGRAM`] is an error, never a silently truncated read.
    async fn recv(&mut self) -> io::Result<&[u8]> {
        loop {
            let mut ready = self.fd.readable().await?;
            self.buffer.clear();
            let buffer = &mut self.buffer;
            let read = |fd: &AsyncFd<Socket>| {
                let socket = fd.get_ref();
                // The size of the next datagram, left queued.
                let size = socket.recv(&mut Vec::new(), libc::MSG_PEEK | libc::MSG_TRUNC)?;
                if size > buffer.capacity() {
                    buffer.reserve(size.min(MAX_DATAGRAM));
                }
                socket.recv(buffer, libc::MSG_TRUNC)
            };
            match ready.try_io(read) {
                Ok(Ok(n)) if n > buffer.len() => {
                    return Err(io::Error::other(format!(
                        "netlink datagram of {n} bytes truncated to {}",
                        buffer.len()
                    )));
                }
                Ok(Ok(_)) => return Ok(&self.buffer),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// Discards every datagram queued on the socket (at most a few thousand, so that a
    /// steady stream of new ones cannot hold it here).
    fn drain(&mut self) {
        for _ in 0..4096 {
            self.buffer.clear();
            match self
                .fd
                .get_ref()
                .recv(&mut self.buffer, libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }

    async fn send(&self, request: &[u8]) -> io::Result<()> {
        let kernel = SocketAddr::new(0, 0);
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| fd.get_ref().send_to(request, &kernel, 0)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => {}
            }
        }
    }
}

/// Why a request over rtnetlink failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The socket failed.
    #[error("netlink socket")]
    Io(#[from] io::Error),
    /// The kernel answered with an error.
    #[error("the kernel answered errno {0}")]
    Kernel(i32),
    /// The answer could not be read.
    #[error("malformed netlink message")]
    Malformed,
    /// Every attempt at the dump was interrupted by link changes (`NLM_F_DUMP_INTR`).
    #[error("the link dump was interrupted by changes {0} times in a row")]
    Interrupted(u32),
    /// The kernel did not answer in time; the socket was opened anew.
    #[error("no answer from the kernel within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Datagrams of a dump read between two yields to the runtime (each is about 32 KiB, some
/// 30 links, a fraction of a millisecond of the kernel's and our work).
const YIELD_EVERY_DATAGRAMS: usize = 4;

/// Attempts at a dump that the kernel reports as interrupted before giving up.
pub(crate) const DUMP_ATTEMPTS: u32 = 5;

/// The request socket: link dumps and lookups by index, one at a time.
#[derive(Debug)]
pub(crate) struct Requests {
    rtnl: Rtnl,
    seq: u32,
}

/// A complete link dump and how many interrupted attempts it took.
#[derive(Debug)]
pub(crate) struct Dump {
    /// The links.
    pub(crate) links: Vec<LinkFacts>,
    /// Attempts the kernel flagged `NLM_F_DUMP_INTR` and that were repeated.
    pub(crate) interrupted: u32,
}

impl Requests {
    /// Opens the socket.
    pub(crate) fn open() -> io::Result<Self> {
        Ok(Self {
            rtnl: Rtnl::open()?,
            seq: 0,
        })
    }

    /// Replaces the socket by a new one: after a request abandoned part-way, the kernel may
    /// still hold a dump for the old one (and refuse the next with `EBUSY`). When no socket can
    /// be opened the old one stays.
    pub(crate) fn reopen(&mut self) {
        if let Ok(fresh) = Self::open() {
            *self = fresh;
        }
    }

    /// Sends `RTM_GETLINK` (a dump, or one index) and hands every reply message of this
    /// request to `each` until `NLMSG_DONE` (dump) or the one answer. Returns whether the
    /// kernel flagged the dump as interrupted.
    async fn request(
        &mut self,
        ifindex: Option<u32>,
        mut each: impl FnMut(&Message<'_>),
    ) -> Result<bool, RequestError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.rtnl.send(&wire::getlink_request(seq, ifindex)).await?;
        let mut interrupted = false;
        for received in 1usize.. {
            let datagram = self.rtnl.recv().await?;
            let single = ifindex.is_some();
            if let Some(done) = read_reply(datagram, seq, single, &mut interrupted, &mut each)? {
                return Ok(done);
            }
            if received.is_multiple_of(YIELD_EVERY_DATAGRAMS) {
                // The kernel writes each datagram of a dump as it is read, and the next is
                // ready at once: a dump of thousands of links would hold the runtime's one
                // thread for milliseconds on end. Let the server answer meanwhile.
                tokio::task::yield_now().await;
            }
        }
        unreachable!("the datagrams of one request are not counted past usize::MAX")
    }

    /// Every link with its statistics. A dump the kernel flags as interrupted (links changed
    /// while it ran, so some may be missing or doubled) is made again, up to [`DUMP_ATTEMPTS`].
    pub(crate) async fn dump(&mut self) -> Result<Dump, RequestError> {
        for attempt in 0..DUMP_ATTEMPTS {
            let mut links = Vec::new();
            let interrupted = self
                .request(None, |message| {
                    if message.kind == RTM_NEWLINK {
                        links.extend(wire::parse_link(message.payload));
                    }
                })
                .await?;
            if !interrupted {
                return Ok(Dump {
                    links,
                    interrupted: attempt,
                });
            }
        }
        Err(RequestError::Interrupted(DUMP_ATTEMPTS))
    }

    /// The link with index `ifindex`, or `None` when the kernel has none (`ENODEV`).
    pub(crate) async fn get(&mut self, ifindex: u32) -> Result<Option<LinkFacts>, RequestError> {
        let mut found = None;
        match self
            .request(Some(ifindex), |message| {
                if message.kind == RTM_NEWLINK {
                    found = wire::parse_link(message.payload);
                }
            })
            .await
        {
            Ok(_) => Ok(found),
            Err(RequestError::Kernel(libc::ENODEV)) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Reads one datagram of the answer to request `seq` (`single`: a lookup, answered by one
/// message), handing its link messages to `each` and noting `NLM_F_DUMP_INTR`. Returns
/// `Some(interrupted)` once the answer is complete, `None` when more datagrams follow.
/// Messages of other sequence numbers (answers to abandoned requests) are skipped.
///
/// # Errors
///
/// The kernel answered with an error, or a message is malformed.
pub(crate) fn read_reply(
    datagram: &[u8],
    seq: u32,
    single: bool,
    interrupted: &mut bool,
    mut each: impl FnMut(&Message<'_>),
) -> Result<Option<bool>, RequestError> {
    for message in wire::messages(datagram) {
        let message = message.map_err(|()| RequestError::Malformed)?;
        if message.seq != seq {
            continue;
        }
        *interrupted |= message.flags & NLM_F_DUMP_INTR != 0;
        match message.error() {
            Some(0) | None => {}
            Some(errno) => return Err(RequestError::Kernel(errno)),
        }
        if message.kind == NLMSG_DONE {
            // A dump that failed part-way ends with a negative errno in its DONE message.
            if let Some(errno) = wire::done_error(message.payload) {
                return Err(RequestError::Kernel(errno));
            }
            return Ok(Some(*interrupted));
        }
        each(&message);
        if single && message.kind == RTM_NEWLINK {
            return Ok(Some(false));
        }
    }
    Ok(None)
}

/// The link-event subscription (`RTNLGRP_LINK`).
#[derive(Debug)]
pub(crate) struct Events {
    rtnl: Rtnl,
}

impl Events {
    /// Subscribes, with a receive buffer of `buffer` bytes (forced past `rmem_max` when
    /// CAP_NET_ADMIN allows; the kernel doubles it for its bookkeeping).
    pub(crate) fn subscribe(buffer: usize) -> io::Result<Self> {
        let rtnl = Rtnl::open()?;
        let socket = rtnl.fd.get_ref();
        if set_buffer_forced(socket, buffer).is_err() {
            socket.set_rx_buf_sz(buffer)?;
        }
        socket.add_membership(RTNLGRP_LINK)?;
        Ok(Self { rtnl })
    }

    /// The next events: those of one datagram, or [`LinkEvent::Lost`] when the kernel
    /// dropped events because the socket's buffer was full (`ENOBUFS`).
    ///
    /// # Errors
    ///
    /// The socket failed: the subscription is lost.
    pub(crate) async fn next(&mut self) -> io::Result<Vec<LinkEvent>> {
        match self.rtnl.recv().await {
            Ok(datagram) => Ok(events(datagram)),
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                // What is still queued is older than the resync that follows: applied after it,
                // it would resurrect links deleted meanwhile. Drop it.
                self.rtnl.drain();
                Ok(vec![LinkEvent::Lost])
            }
            Err(err) => Err(err),
        }
    }
}

/// `SO_RCVBUFFORCE`: a receive buffer beyond `net.core.rmem_max` (needs CAP_NET_ADMIN).
fn set_buffer_forced(socket: &Socket, bytes: usize) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RcvBufForce, &bytes)
        .map_err(io::Error::from)
}

/// The link events in a datagram of the subscription; other messages are ignored. A malformed
/// message ends the datagram with [`LinkEvent::Lost`]: the caller resynchronises.
pub(crate) fn events(datagram: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    for message in wire::messages(datagram) {
        let Ok(message) = message else {
            out.push(LinkEvent::Lost);
            break;
        };
        match message.kind {
            RTM_NEWLINK => out
                .extend(wire::parse_link(message.payload).map(|facts| LinkEvent::New(facts.link))),
            RTM_DELLINK => out.extend(
                wire::link_index(message.payload).map(|ifindex| LinkEvent::Deleted { ifindex }),
            ),
            _ => {}
        }
    }
    out
}
