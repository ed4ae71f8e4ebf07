//! `BPF_PROG_TEST_RUN`: the kernel runs a loaded TC program on one packet many times and
//! reports the average duration. No traffic, no `bpf_stats`, hot caches: the noise-free view
//! of a program's cost, next to the live view under load.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use integration_tests::netns::NetNs;
use nix::libc;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
/// `offsetof(struct __sk_buff, ifindex)`.
const SKB_IFINDEX: usize = 40;
/// `sizeof(struct __sk_buff)`.
const SKB_SIZE: usize = 192;

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (the `test` member), and large enough for
/// `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut TestRunAttr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, initialized prefix of `union bpf_attr` for `cmd` that lives for
    // the call; its size is passed exactly, and every pointer in it points at a live buffer of
    // the size given next to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A file descriptor for the loaded program with kernel id `id`.
fn program_fd(id: u32) -> io::Result<OwnedFd> {
    let mut attr = TestRunAttr {
        prog_fd: id,
        ..TestRunAttr::default()
    };
    let fd = i32::try_from(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Average nanoseconds per run of program `id` on `packet` arriving at `ifindex` (of `ns`,
/// where the run happens), over `repeat` runs.
///
/// # Panics
///
/// When the kernel refuses the run.
pub fn nanos_per_run(ns: &NetNs, id: u32, ifindex: u32, packet: &[u8], repeat: u32) -> f64 {
    let fd = program_fd(id).expect("program fd by id");
    let mut ctx = [0u8; SKB_SIZE];
    ctx[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(fd.as_raw_fd()).expect("fd"),
        data_size_in: u32::try_from(packet.len()).expect("small"),
        data_in: packet.as_ptr() as u64,
        repeat,
        ctx_size_in: u32::try_from(ctx.len()).expect("small"),
        ctx_in: ctx.as_ptr() as u64,
        ..TestRunAttr::default()
    };
    ns.within(|| bpf(BPF_PROG_TEST_RUN, &mut attr))
        .expect("BPF_PROG_TEST_RUN");
    f64::from(attr.duration)
}

/// A 64-byte Ethernet frame carrying IPv4 UDP.
pub fn udp_frame() -> Vec<u8> {
    let mut frame = vec![0u8; 64];
    frame[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14..34].copy_from_slice(&[
        0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    frame[34..42].copy_from_slice(&[0x04, 0xd2, 0, 9, 0, 30, 0, 0]);
    frame
}
