//! The memory the kernel writes `ETHTOOL_GSTRINGS` and `ETHTOOL_GSTATS` replies into, placed so
//! that a reply longer than the buffer cannot corrupt anything.
//!
//! Kernels before "ethtool: Avoid overflowing userspace buffer on stats query" (December 2025)
//! ignore the count in the request and copy the driver's *current* number of entries. A driver
//! whose count grew between `ETHTOOL_GSSET_INFO` and the read (`ethtool -L`, private flags)
//! would write past a heap buffer. Here the command lives in its own anonymous mapping:
//!
//! ```text
//! | unused | header | data (capacity entries) | canary (64 B) | guard page (PROT_NONE) |
//! ```
//!
//! A small overrun lands in the canary and is detected ([`UserBuffer::canary_intact`]); a large
//! one reaches the guard page, where the kernel's `copy_to_user` stops and the ioctl fails with
//! `EFAULT`. Either way the reply is refused as "count changed" and nothing else is touched.
//! The mapping is kept and reused, and grown when a larger command is prepared.

use std::{io, ptr::NonNull};

/// Bytes between the end of the data and the guard page, filled with [`CANARY`].
const CANARY_BYTES: usize = 64;
const CANARY: u8 = 0xa5;

/// A reusable, guarded command buffer for one ethtool request at a time.
#[derive(Debug)]
pub struct UserBuffer {
    /// The mapping, guard page included; `None` until the first [`UserBuffer::prepare`].
    map: Option<NonNull<u8>>,
    /// Length of the mapping in bytes, guard page included.
    map_len: usize,
    /// Offset of the guard page in the mapping.
    guard: usize,
    /// Offset of the command (header then data) in the mapping.
    start: usize,
    header: usize,
    data: usize,
}

// SAFETY: the mapping is owned by this value alone (never shared or aliased), so moving it to
// another thread is like moving a `Vec`.
unsafe impl Send for UserBuffer {}
// SAFETY: `&UserBuffer` only reads the mapping; writes need `&mut`.
unsafe impl Sync for UserBuffer {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

impl Default for UserBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl UserBuffer {
    /// An empty buffer; memory is mapped by the first [`UserBuffer::prepare`].
    #[must_use]
    pub const fn new() -> Self {
        Self {
            map: None,
            map_len: 0,
            guard: 0,
            start: 0,
            header: 0,
            data: 0,
        }
    }

    /// Lays out a zeroed command of `header` bytes followed by `data` bytes, ending 8-byte
    /// aligned right before the canary and the guard page, and fills the canary.
    ///
    /// # Errors
    ///
    /// The mapping could not be (re)created (`mmap`/`mprotect`).
    pub fn prepare(&mut self, header: usize, data: usize) -> io::Result<()> {
        let command = (header + data).div_ceil(8) * 8;
        let needed = command + CANARY_BYTES;
        if self.map.is_none() || self.guard < needed {
            self.remap(needed)?;
        }
        self.start = self.guard - needed;
        self.header = header;
        self.data = data;
        let bytes = self.usable_mut();
        let start = bytes.len() - needed;
        bytes[start..start + command].fill(0);
        bytes[start + command..].fill(CANARY);
        Ok(())
    }

    fn remap(&mut self, needed: usize) -> io::Result<()> {
        self.unmap();
        let page = page_size();
        let guard = needed.div_ceil(page) * page;
        let len = guard + page;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; the
        // result is checked before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(addr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        // Owned from here on, so an `mprotect` failure unmaps it in `unmap`.
        self.map = Some(map);
        self.map_len = len;
        self.guard = 0;
        // SAFETY: `map + guard` is the page-aligned last page of the mapping just created.
        let rc = unsafe { libc::mprotect(map.as_ptr().add(guard).cast(), page, libc::PROT_NONE) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            self.unmap();
            return Err(err);
        }
        self.guard = guard;
        Ok(())
    }

    fn unmap(&mut self) {
        if let Some(map) = self.map.take() {
            // SAFETY: `map`/`map_len` describe a mapping this value created and still owns;
            // nothing borrows it (`&mut self`).
            unsafe { libc::munmap(map.as_ptr().cast(), self.map_len) };
        }
        self.map_len = 0;
        self.guard = 0;
    }

    /// The readable and writable part of the mapping (everything before the guard page).
    fn usable(&self) -> &[u8] {
        match self.map {
            // SAFETY: the first `guard` bytes of the mapping are readable, initialized
            // (anonymous mappings are zero-filled) and live as long as `self`.
            Some(map) => unsafe { std::slice::from_raw_parts(map.as_ptr(), self.guard) },
            None => &[],
        }
    }

    fn usable_mut(&mut self) -> &mut [u8] {
        match self.map {
            // SAFETY: as in `usable`, and `&mut self` makes this the only reference.
            Some(map) => unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), self.guard) },
            None => &mut [],
        }
    }

    /// The command's header.
    pub fn header(&self) -> &[u8] {
        &self.usable()[self.start..self.start + self.header]
    }

    /// The command's header, to fill in before the ioctl.
    pub fn header_mut(&mut self) -> &mut [u8] {
        let (start, header) = (self.start, self.header);
        &mut self.usable_mut()[start..start + header]
    }

    /// The data the kernel wrote after the header (`data` bytes as prepared).
    pub fn data(&self) -> &[u8] {
        let at = self.start + self.header;
        &self.usable()[at..at + self.data]
    }

    /// The start of the command, for the ioctl's `ifr_data`.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        let start = self.start;
        self.usable_mut()[start..].as_mut_ptr().cast()
    }

    /// Whether the canary between the data and the guard page is as [`UserBuffer::prepare`]
    /// left it: `false` when a reply ran past the data.
    pub fn canary_intact(&self) -> bool {
        let bytes = self.usable();
        bytes.len() >= CANARY_BYTES
            && bytes[bytes.len() - CANARY_BYTES..]
                .iter()
                .all(|&b| b == CANARY)
    }

    /// Writes `bytes` at `offset` into the data as the kernel's `copy_to_user` would: whatever
    /// fits before the guard page is written (running into the canary if need be) and the rest
    /// fails with `EFAULT`. Test drivers use it to behave like a kernel that ignores the
    /// requested count.
    #[cfg(test)]
    pub(crate) fn copy_to_user(&mut self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let at = self.start + self.header + offset;
        let usable = self.usable_mut();
        let fits = usable.len().saturating_sub(at).min(bytes.len());
        if fits > 0 {
            usable[at..at + fits].copy_from_slice(&bytes[..fits]);
        }
        if fits < bytes.len() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }
}

impl Drop for UserBuffer {
    fn drop(&mut self) {
        self.unmap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ends_before_the_canary_and_is_aligned() {
        let mut buf = UserBuffer::new();
        buf.prepare(12, 3 * 32).expect("map");
        assert_eq!(buf.header().len(), 12);
        assert_eq!(buf.data().len(), 96);
        assert!(buf.data().iter().all(|&b| b == 0));
        assert_eq!(buf.as_mut_ptr() as usize % 8, 0);
        assert!(buf.canary_intact());
    }

    #[test]
    fn an_overrun_into_the_canary_is_detected_and_one_past_the_guard_is_efault() {
        let mut buf = UserBuffer::new();
        buf.prepare(8, 4 * 8).expect("map");
        buf.copy_to_user(0, &[1; 32]).expect("fits");
        assert!(buf.canary_intact());
        // Two entries more than prepared: into the canary, detected.
        buf.copy_to_user(0, &[1; 48])
            .expect("still before the guard");
        assert!(!buf.canary_intact());
        // Far more: stopped at the guard page.
        buf.prepare(8, 4 * 8).expect("reuse");
        assert!(buf.canary_intact());
        let err = buf.copy_to_user(0, &vec![1; 1 << 20]).expect_err("guard");
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
    }

    #[test]
    fn a_larger_command_grows_the_mapping_and_a_smaller_one_reuses_it() {
        let mut buf = UserBuffer::new();
        buf.prepare(8, 16).expect("map");
        let small = buf.map_len;
        buf.prepare(8, 100_000).expect("grow");
        assert!(buf.map_len > small);
        let grown = buf.map_len;
        buf.prepare(8, 16).expect("reuse");
        assert_eq!(buf.map_len, grown);
        assert_eq!(buf.data().len(), 16);
        assert!(buf.data().iter().all(|&b| b == 0));
    }
}
