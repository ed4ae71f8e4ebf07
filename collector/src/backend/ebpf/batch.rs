//! `BPF_MAP_LOOKUP_BATCH` on a per-CPU array: a run of entries in one system call, where aya
//! 0.14 (which has no batch operations) would make one per entry. A scrape of a node with a
//! tunnel device reads both halves of the peer table this way.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{MapData, MapError},
    sys::SyscallError,
};

/// `BPF_MAP_LOOKUP_BATCH` in uapi `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of uapi `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The values of `count` entries of the per-CPU array `map` from index `first` on, each as the
/// values of its `cpus` possible CPUs in CPU order: `out[entry * cpus + cpu]`.
///
/// # Errors
///
/// The system call's error (`EINVAL` on kernels before 5.6, which have no batch operations),
/// or `EIO` when the kernel returned fewer entries than asked (the range passes the array's
/// end).
pub(super) fn per_cpu_values<T: Pod + Default>(
    map: &MapData,
    first: u32,
    count: u32,
    cpus: usize,
) -> Result<Vec<T>, MapError> {
    let fail = |io_error| {
        MapError::SyscallError(SyscallError {
            call: "bpf_map_lookup_batch",
            io_error,
        })
    };
    let entries = usize::try_from(count).map_err(|_| fail(io::Error::other("count")))?;
    // The kernel lays out each CPU's value at a multiple of 8 bytes.
    let stride = std::mem::size_of::<T>().next_multiple_of(8);
    let mut values = vec![0u8; entries * cpus * stride];
    let mut keys = vec![0u32; entries];
    // The batch starts after `in_batch`, the last key of a previous batch; none: at index 0.
    let before = first.wrapping_sub(1);
    let mut after = 0u32;
    let mut attr = BatchAttr {
        in_batch: if first == 0 {
            0
        } else {
            std::ptr::from_ref(&before) as u64
        },
        out_batch: std::ptr::from_mut(&mut after) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: u32::try_from(map.fd().as_fd().as_raw_fd())
            .map_err(|_| fail(io::Error::other("fd")))?,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a `union bpf_attr` batch member, passed with its size; the buffers it
    // points at (`before`, `after`, `keys`, `values`) live until the call returns and hold
    // `count` keys and `count × cpus` values of the kernel's per-CPU stride, what it writes at
    // most. `in_batch` is read, `out_batch`, `keys`, `values` and `count` written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    if attr.count != count {
        return Err(fail(io::Error::from_raw_os_error(libc::EIO)));
    }
    Ok(values
        .chunks_exact(stride)
        // SAFETY: each chunk holds at least `size_of::<T>()` bytes the kernel copied from a
        // value of type `T`; `T: Pod` takes any bit pattern, and the read is unaligned.
        .map(|chunk| unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast::<T>()) })
        .collect())
}
