//! Removing another process's TCX link, as a tool with CAP_BPF can do (`bpftool link detach`):
//! used to prove that linkmeter notices and re-attaches.

use std::{io, os::fd::RawFd};

use aya::programs::{SchedClassifier, TcAttachType, loaded_links};
use nix::libc::c_long;

use crate::netns::NetNs;

const BPF_LINK_GET_FD_BY_ID: c_long = 30;
const BPF_LINK_DETACH: c_long = 34;

/// `union bpf_attr` as used by the two commands (both take one `u32` first).
#[repr(C)]
#[derive(Default)]
struct Attr {
    first: u32,
    pad: [u32; 3],
}

fn bpf(cmd: c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, initialized `bpf_attr` prefix for `cmd` and lives for the call;
    // the size passed is its exact size, and the kernel zero-extends the rest.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
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

/// Detaches every TCX link on `ingress` of `interface` (in `ns`) whose program name starts
/// with `prefix`; returns how many were detached.
pub fn detach_links_of(ns: &NetNs, interface: &str, prefix: &str) -> usize {
    let programs: Vec<u32> = ns
        .within(|| SchedClassifier::query_tcx(interface, TcAttachType::Ingress))
        .expect("query_tcx")
        .1
        .iter()
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix)))
        .map(aya::programs::ProgramInfo::id)
        .collect();
    let mut detached = 0;
    for link in loaded_links().filter_map(Result::ok) {
        if !programs.contains(&link.program_id()) {
            continue;
        }
        let mut get = Attr {
            first: link.id(),
            ..Attr::default()
        };
        let fd = RawFd::try_from(bpf(BPF_LINK_GET_FD_BY_ID, &mut get).expect("link fd by id"))
            .expect("fd");
        let mut detach = Attr {
            first: u32::try_from(fd).expect("fd"),
            ..Attr::default()
        };
        bpf(BPF_LINK_DETACH, &mut detach).expect("BPF_LINK_DETACH");
        let _closed = nix::unistd::close(fd);
        detached += 1;
    }
    detached
}
