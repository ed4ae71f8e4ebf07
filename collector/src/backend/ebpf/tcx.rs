//! TCX links by interface index, over `bpf(2)` directly: created first in the hook's chain,
//! updated to another program atomically, pinned and opened from a bpffs, and the hook's
//! programs listed. aya attaches by interface *name*, which cannot name an interface whose name
//! is not UTF-8 and may meanwhile belong to another device; an ifindex names one device for its
//! lifetime. All the unsafe code of these commands is in [`bpf`].

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use super::hooks::Hook;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// `BPF_F_BEFORE` without a relative program: first in the chain.
const BPF_F_BEFORE: u32 = 1 << 3;

/// A `union bpf_attr`, large enough for the commands used here, zeroed, 8-byte aligned.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    const fn new() -> Self {
        Self([0; 128])
    }

    fn u32_at(&mut self, offset: usize, value: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64_at(&mut self, offset: usize, value: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().expect("4 bytes"))
    }
}

/// Issues `bpf(cmd, attr)`; the non-negative result.
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, zero-initialised `union bpf_attr` of 128 bytes (the kernel
    // accepts any size up to a page and checks that unknown trailing bytes are zero), filled for
    // `cmd` by the callers; every pointer inside it points at a buffer that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<Attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new file descriptor returned by `bpf(2)`.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const fn attach_type(hook: Hook) -> u32 {
    match hook {
        Hook::Ingress => BPF_TCX_INGRESS,
        Hook::Egress => BPF_TCX_EGRESS,
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Attaches `program` to `hook` of the interface with index `ifindex` (calling thread's
/// network namespace), first in the chain. The link lasts while the returned descriptor, or a
/// pin of it, exists.
///
/// # Errors
///
/// The kernel refused (`ENODEV`: no such interface).
pub(super) fn link_create(
    program: BorrowedFd<'_>,
    ifindex: u32,
    hook: Hook,
) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32_at(0, fd_u32(program))
        .u32_at(4, ifindex)
        .u32_at(8, attach_type(hook))
        .u32_at(12, BPF_F_BEFORE);
    owned(bpf(BPF_LINK_CREATE, &mut attr)?)
}

/// Gives the link `link` the program `program`, atomically.
///
/// # Errors
///
/// The kernel refused (`ENOLINK`: the link's device is gone).
pub(super) fn link_update(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32_at(0, fd_u32(link)).u32_at(4, fd_u32(program));
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// Detaches the link `link` from its hook now, whoever else holds it (a pin, a descriptor).
///
/// # Errors
///
/// The kernel refused (`ENOLINK`: detached already).
pub(super) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32_at(0, fd_u32(link));
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}

fn path_c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Pins the object `fd` at `path` on a bpffs.
///
/// # Errors
///
/// The kernel refused (`EEXIST`: something is pinned there).
pub(super) fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = path_c(path)?;
    let mut attr = Attr::new();
    attr.u64_at(0, path.as_ptr() as u64).u32_at(8, fd_u32(fd));
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// Opens the object pinned at `path`.
///
/// # Errors
///
/// Nothing is pinned there (`ENOENT`), or the kernel refused.
pub(super) fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let path = path_c(path)?;
    let mut attr = Attr::new();
    attr.u64_at(0, path.as_ptr() as u64);
    owned(bpf(BPF_OBJ_GET, &mut attr)?)
}

/// The kernel id of the link `link` (`bpf_link_info.id`).
///
/// # Errors
///
/// The kernel refused (not a link).
pub(super) fn link_id(link: BorrowedFd<'_>) -> io::Result<u32> {
    // `struct bpf_link_info` starts with `type`, `id`, `prog_id` (u32 each); the kernel copies
    // at most `info_len` bytes.
    let mut info = [0u8; 64];
    let mut attr = Attr::new();
    attr.u32_at(0, fd_u32(link))
        .u32_at(4, u32::try_from(info.len()).unwrap_or(0))
        .u64_at(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(u32::from_ne_bytes(info[4..8].try_into().expect("4 bytes")))
}

/// The name of the loaded program with kernel id `id` (`bpf_prog_info.name`: at most 15 bytes).
///
/// # Errors
///
/// The kernel refused (`ENOENT`: no such program any more).
pub(super) fn program_name(id: u32) -> io::Result<String> {
    let mut attr = Attr::new();
    attr.u32_at(0, id);
    let program = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)?;
    // `struct bpf_prog_info` has `name[16]` at offset 64; the kernel copies at most `info_len`.
    let mut info = [0u8; 80];
    let mut attr = Attr::new();
    attr.u32_at(0, fd_u32(program.as_fd()))
        .u32_at(4, u32::try_from(info.len()).unwrap_or(0))
        .u64_at(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// The ids of the links on `hook` of the interface with index `ifindex` (calling thread's
/// network namespace), in chain order; programs attached without a link have id 0.
///
/// # Errors
///
/// The kernel refused (`ENODEV`: no such interface).
pub(super) fn links(ifindex: u32, hook: Hook) -> io::Result<Vec<u32>> {
    let mut count = 64usize;
    loop {
        let (mut programs, mut links) = (vec![0u32; count], vec![0u32; count]);
        let mut attr = Attr::new();
        attr.u32_at(0, ifindex)
            .u32_at(4, attach_type(hook))
            .u64_at(16, programs.as_mut_ptr() as u64)
            .u32_at(24, u32::try_from(count).unwrap_or(u32::MAX))
            .u64_at(40, links.as_mut_ptr() as u64);
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                links.truncate((attr.read_u32(24) as usize).min(count));
                return Ok(links);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                count = (attr.read_u32(24) as usize).max(count * 2);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The ids of the programs on `hook` of the interface with index `ifindex`, in chain order.
///
/// # Errors
///
/// The kernel refused (`ENODEV`: no such interface).
pub(super) fn programs(ifindex: u32, hook: Hook) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = Attr::new();
        attr.u32_at(0, ifindex)
            .u32_at(4, attach_type(hook))
            .u64_at(16, ids.as_mut_ptr() as u64)
            .u32_at(24, u32::try_from(ids.len()).unwrap_or(u32::MAX));
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                let count = attr.read_u32(24) as usize;
                ids.truncate(count.min(ids.len()));
                return Ok(ids);
            }
            // More programs than room: the kernel wrote the count; ask again with enough.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                let count = attr.read_u32(24) as usize;
                ids = vec![0; count.max(ids.len() * 2)];
            }
            Err(e) => return Err(e),
        }
    }
}
