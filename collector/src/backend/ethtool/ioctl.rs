//! The `SIOCETHTOOL` ioctls: driver info and driver statistics. All unsafe code of the ethtool
//! backend is in this file, behind [`Ioctl`], whose methods are safe.
//!
//! `ETHTOOL_GSTRINGS` and `ETHTOOL_GSTATS` carry the caller's expected count in the request.
//! Recent kernels answer with a count of 0 and no data when it no longer matches the driver's;
//! older kernels ignore it and write the driver's *current* number of entries whatever the
//! buffer size. The caller therefore asks `ETHTOOL_GSSET_INFO` right before each of them and
//! sizes the buffer from that fresh count plus headroom, and the replies are written into a
//! [`UserBuffer`], where an overrun hits a canary or a guard page instead of other memory. The
//! count the kernel reports is returned so the caller can check it.

use std::{
    ffi::c_void,
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use super::UserBuffer;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GSTRINGS: u32 = 0x0000_001b;
const ETHTOOL_GSTATS: u32 = 0x0000_001d;
const ETHTOOL_GSSET_INFO: u32 = 0x0000_0037;
const ETH_SS_STATS: u32 = 1;
/// Bytes per stat name in `ETHTOOL_GSTRINGS`.
pub(crate) const ETH_GSTRING_LEN: usize = 32;
const IFNAMSIZ: usize = 16;

/// What `ETHTOOL_GDRVINFO` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name (`veth`, `virtio_net`, `vxlan`, ...).
    pub driver: String,
    /// Number of driver statistics at that moment.
    pub n_stats: u32,
}

/// The ethtool requests linkmeter makes, per interface name. Implemented by [`Ioctl`] on the
/// real kernel and by fixtures in tests.
pub trait EthtoolIo: Send + Sync {
    /// `ETHTOOL_GDRVINFO`.
    fn driver_info(&self, interface: &str) -> io::Result<DriverInfo>;
    /// `ETHTOOL_GSSET_INFO` for `ETH_SS_STATS`: the current number of driver statistics.
    fn stats_count(&self, interface: &str) -> io::Result<u32>;
    /// `ETHTOOL_GSTRINGS` for `ETH_SS_STATS`, expecting `expected` names, into `buf` prepared
    /// for `capacity >= expected` names (`capacity * ETH_GSTRING_LEN` data bytes). Returns the
    /// count the kernel reported; the names are `buf.data()`.
    fn stat_names(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32>;
    /// `ETHTOOL_GSTATS`, expecting `expected` values, into `buf` prepared for
    /// `capacity >= expected` native-endian `u64`s. Returns the count the kernel reported.
    fn stat_values(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32>;
}

/// The real `SIOCETHTOOL` ioctls on an `AF_INET` datagram socket (in the namespace the socket
/// was created in).
#[derive(Debug)]
pub struct Ioctl {
    socket: OwnedFd,
}

#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

#[repr(C)]
struct DrvInfoRaw {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// Header of `struct ethtool_gstrings` / `struct ethtool_stats` / `struct ethtool_sset_info`:
/// `u32`s then 8-byte aligned data (the fixed-size commands are `u64` vectors so they are
/// aligned; the others live in a [`UserBuffer`]).
pub(crate) const GSTRINGS_HEADER: usize = 12;
pub(crate) const GSTATS_HEADER: usize = 8;
const SSET_HEADER: usize = 16;

impl Ioctl {
    /// Opens the socket the ioctls go through.
    ///
    /// # Errors
    ///
    /// The socket cannot be created.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { socket })
    }

    /// Issues `SIOCETHTOOL` for `interface` with `data` as the ethtool command buffer.
    fn call(&self, interface: &str, data: &mut [u64]) -> io::Result<()> {
        self.call_raw(interface, data.as_mut_ptr().cast())
    }

    /// Issues `SIOCETHTOOL` for `interface` with the command at `data`, which every caller
    /// has sized for the command's header plus whatever the kernel may write: a fixed-size
    /// command in [`Ioctl::call`], or a [`UserBuffer`], whose guard page turns an overrun into
    /// `EFAULT`.
    fn call_raw(&self, interface: &str, data: *mut c_void) -> io::Result<()> {
        // The kernel's bytes of a name escaped because it is not UTF-8.
        let Some(name) = crate::discovery::wire::unescape_name(interface) else {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        };
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            data,
            _pad: [0; 16],
        };
        req.name[..name.len()].copy_from_slice(&name);
        // SAFETY: `req` is a valid `struct ifreq` whose `ifr_data` points at `data`, a live,
        // writable, 8-byte aligned buffer that outlives the call: a fixed-size command the
        // kernel cannot write past, or a `UserBuffer`, which ends in a guard page.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), SIOCETHTOOL, &mut req) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

fn u32_at(buf: &[u64], byte: usize) -> u32 {
    let bytes = as_bytes(buf);
    u32::from_ne_bytes(bytes[byte..byte + 4].try_into().expect("4 bytes"))
}

fn as_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: any `u64` slice is a valid, initialized byte slice of 8x its length; the
    // lifetime is tied to `buf`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), std::mem::size_of_val(buf)) }
}

fn set_u32(buf: &mut [u64], byte: usize, value: u32) {
    // SAFETY: as in `as_bytes`, mutable; every byte pattern is a valid `u64`.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(buf))
    };
    bytes[byte..byte + 4].copy_from_slice(&value.to_ne_bytes());
}

fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

impl EthtoolIo for Ioctl {
    fn driver_info(&self, interface: &str) -> io::Result<DriverInfo> {
        let mut buf = vec![0u64; words_for(size_of::<DrvInfoRaw>())];
        set_u32(&mut buf, 0, ETHTOOL_GDRVINFO);
        self.call(interface, &mut buf)?;
        let bytes = as_bytes(&buf);
        let driver = &bytes[4..36];
        let end = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
        let n_stats_at = std::mem::offset_of!(DrvInfoRaw, n_stats);
        Ok(DriverInfo {
            driver: String::from_utf8_lossy(&driver[..end]).into_owned(),
            n_stats: u32_at(&buf, n_stats_at),
        })
    }

    fn stats_count(&self, interface: &str) -> io::Result<u32> {
        let mut buf = vec![0u64; words_for(SSET_HEADER + 4)];
        set_u32(&mut buf, 0, ETHTOOL_GSSET_INFO);
        buf[1] = 1 << ETH_SS_STATS; // sset_mask
        self.call(interface, &mut buf)?;
        // The kernel clears the bits of sets the driver lacks and writes one length per set.
        if buf[1] & (1 << ETH_SS_STATS) == 0 {
            return Ok(0);
        }
        Ok(u32_at(&buf, SSET_HEADER))
    }

    fn stat_names(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        buf.prepare(GSTRINGS_HEADER, capacity * ETH_GSTRING_LEN)?;
        let header = buf.header_mut();
        header[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        header[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        header[8..12].copy_from_slice(&count_u32(expected).to_ne_bytes());
        self.call_raw(interface, buf.as_mut_ptr())?;
        Ok(header_u32(buf.header(), 8))
    }

    fn stat_values(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        buf.prepare(GSTATS_HEADER, capacity * 8)?;
        let header = buf.header_mut();
        header[0..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
        header[4..8].copy_from_slice(&count_u32(expected).to_ne_bytes());
        self.call_raw(interface, buf.as_mut_ptr())?;
        Ok(header_u32(buf.header(), 4))
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn header_u32(header: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(header[at..at + 4].try_into().expect("4 bytes"))
}
