//! The ethtool backend: driver info and driver statistics over `SIOCETHTOOL`, and link speed
//! over the ethtool generic-netlink family.
//!
//! An interface is probed once per lifetime ([`Ethtool::probe`]); the stat names are fetched
//! then, and only values afterwards ([`Ethtool::values`]). Every `GSTRINGS` and `GSTATS` is
//! preceded by a `GSSET_INFO`, its buffer sized from that fresh count, and written into a
//! guarded [`UserBuffer`]. When the driver's stat count changes the values are refused
//! ([`EthtoolError::CountChanged`], [`EthtoolError::Overrun`]) and the caller fetches names
//! again. Every decision is made from the errno, never from an error message.
//!
//! The node keeps each ethtool-routed interface's `DriverStats` and reads them at each scrape
//! (`Ethtool::read_driver_stats`).

mod driver_stats;
#[cfg(test)]
pub(crate) mod fake;
mod ioctl;
mod user_buffer;

use std::{
    io,
    sync::{Mutex, PoisonError},
};

pub(crate) use driver_stats::DriverStats;
pub(crate) use ioctl::ETH_GSTRING_LEN;
pub use ioctl::{DriverInfo, EthtoolIo, Ioctl};
#[cfg(test)]
pub(crate) use ioctl::{GSTATS_HEADER, GSTRINGS_HEADER};
pub use user_buffer::UserBuffer;

/// Result of probing an interface once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The driver exports statistics: their names, in driver order.
    Stats {
        /// Driver name from `GDRVINFO`.
        driver: String,
        /// Stat names (`ETHTOOL_GSTRINGS`).
        names: Vec<String>,
    },
    /// The driver answers `GDRVINFO` but has no statistics (vxlan, bridge, ...).
    NoStats {
        /// Driver name from `GDRVINFO`.
        driver: String,
    },
    /// ethtool is not supported at all (`EOPNOTSUPP`), as for `lo` or Cilium's devices.
    Unsupported {
        /// The errno (`EOPNOTSUPP`).
        errno: i32,
    },
    /// Another error (`ENODEV` for a vanished interface, `EPERM`, ...).
    Failed {
        /// The errno.
        errno: i32,
    },
}

impl Probe {
    /// The driver name, when the interface answered `GDRVINFO`.
    pub(crate) fn driver(&self) -> Option<&str> {
        match self {
            Self::Stats { driver, .. } | Self::NoStats { driver } => Some(driver),
            Self::Unsupported { .. } | Self::Failed { .. } => None,
        }
    }
}

/// Errors from reading driver statistics.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    /// The ioctl failed.
    #[error("ethtool {request} on {interface:?}")]
    Io {
        /// The interface.
        interface: String,
        /// The request (`GSTRINGS`, `GSTATS`, ...).
        request: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The driver's number of statistics is not the one the names were fetched for.
    #[error(
        "ethtool stats of {interface:?} changed count: expected {expected}, driver reported {reported}"
    )]
    CountChanged {
        /// The interface.
        interface: String,
        /// The number of names known.
        expected: usize,
        /// The number the driver reported.
        reported: usize,
    },
    /// The kernel wrote more than the buffer holds (a kernel that ignores the requested count,
    /// and a driver whose count grew past the headroom): caught by the buffer's canary or
    /// guard page, and refused.
    #[error(
        "ethtool {request} on {interface:?} wrote past its buffer of {capacity} entries: the driver's stat count grew"
    )]
    Overrun {
        /// The interface.
        interface: String,
        /// `GSTRINGS` or `GSTATS`.
        request: &'static str,
        /// The entries the buffer held.
        capacity: usize,
    },
}

impl EthtoolError {
    /// The errno, when the kernel returned one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Self::Io { source, .. } => source.raw_os_error(),
            Self::CountChanged { .. } | Self::Overrun { .. } => None,
        }
    }

    /// Whether the driver's statistics changed under us: fetch the names again.
    pub(crate) const fn count_changed(&self) -> bool {
        matches!(self, Self::CountChanged { .. } | Self::Overrun { .. })
    }
}

/// Room for drivers that add statistics between `GSSET_INFO` and the read.
const fn with_headroom(n: usize) -> usize {
    n * 2 + 64
}

/// Driver statistics through an [`EthtoolIo`].
#[derive(Debug)]
pub struct Ethtool<I> {
    io: I,
    /// The guarded buffer every `GSTRINGS`/`GSTATS` reply is written into, reused.
    buffer: Mutex<UserBuffer>,
}

impl<I: EthtoolIo> Ethtool<I> {
    /// Uses `io` for the requests ([`Ioctl`] on the real kernel).
    pub const fn new(io: I) -> Self {
        Self {
            io,
            buffer: Mutex::new(UserBuffer::new()),
        }
    }

    /// The driver's current stat count (`GSSET_INFO`).
    fn count(&self, interface: &str) -> Result<usize, EthtoolError> {
        self.io
            .stats_count(interface)
            .map(|n| n as usize)
            .map_err(|source| io_error(interface, "GSSET_INFO", source))
    }

    /// Runs `request` (a `GSTRINGS` or `GSTATS` of `capacity` entries) on the buffer, then
    /// `parse` on the count it reported and the data; an overrun (`EFAULT` from the guard page,
    /// or a damaged canary) is [`EthtoolError::Overrun`].
    fn read<T>(
        &self,
        interface: &str,
        request: &'static str,
        capacity: usize,
        call: impl FnOnce(&mut UserBuffer) -> io::Result<u32>,
        parse: impl FnOnce(u32, &[u8]) -> Result<T, EthtoolError>,
    ) -> Result<T, EthtoolError> {
        let mut buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let overrun = || EthtoolError::Overrun {
            interface: interface.to_owned(),
            request,
            capacity,
        };
        let reported = match call(&mut buf) {
            Ok(reported) => reported,
            Err(err) if err.raw_os_error() == Some(libc::EFAULT) => return Err(overrun()),
            Err(source) => return Err(io_error(interface, request, source)),
        };
        if !buf.canary_intact() {
            return Err(overrun());
        }
        parse(reported, buf.data())
    }

    /// Probes `interface`: driver info, then stat names when it has any.
    pub fn probe(&self, interface: &str) -> Probe {
        let info = match self.io.driver_info(interface) {
            Ok(info) => info,
            Err(err) => return errno_probe(&err),
        };
        // A driver whose count moves while we fetch is asked again a few times.
        for _ in 0..3 {
            match self.names(interface) {
                Ok(names) if names.is_empty() => {
                    return Probe::NoStats {
                        driver: info.driver,
                    };
                }
                Ok(names) => {
                    return Probe::Stats {
                        driver: info.driver,
                        names,
                    };
                }
                Err(err) if err.count_changed() => {}
                Err(err) => {
                    return match err.errno() {
                        Some(libc::EOPNOTSUPP) => Probe::NoStats {
                            driver: info.driver,
                        },
                        errno => Probe::Failed {
                            errno: errno.unwrap_or(libc::EIO),
                        },
                    };
                }
            }
        }
        Probe::Failed {
            errno: libc::EAGAIN,
        }
    }

    /// Fetches the stat names with a buffer sized from a fresh count plus headroom.
    ///
    /// # Errors
    ///
    /// An ioctl fails, or the driver's count changed between `GSSET_INFO` and `GSTRINGS`.
    pub(crate) fn names(&self, interface: &str) -> Result<Vec<String>, EthtoolError> {
        let count = self.count(interface)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let capacity = with_headroom(count);
        self.read(
            interface,
            "GSTRINGS",
            capacity,
            |buf| self.io.stat_names(interface, count, capacity, buf),
            |reported, data| {
                parse_names(reported, data, count).ok_or_else(|| EthtoolError::CountChanged {
                    interface: interface.to_owned(),
                    expected: count,
                    reported: reported as usize,
                })
            },
        )
    }

    /// Reads the stat values; `expected` is the number of names known for this interface.
    /// The count is asked again first, and the buffer sized from it.
    ///
    /// # Errors
    ///
    /// An ioctl fails, or the driver now reports a different number of statistics
    /// ([`EthtoolError::CountChanged`], [`EthtoolError::Overrun`]: fetch the names again).
    pub fn values(&self, interface: &str, expected: usize) -> Result<Vec<u64>, EthtoolError> {
        let changed = |reported| EthtoolError::CountChanged {
            interface: interface.to_owned(),
            expected,
            reported,
        };
        let count = self.count(interface)?;
        if count != expected {
            return Err(changed(count));
        }
        let capacity = with_headroom(count);
        self.read(
            interface,
            "GSTATS",
            capacity,
            |buf| self.io.stat_values(interface, expected, capacity, buf),
            |reported, data| parse_values(reported, data, expected).map_err(changed),
        )
    }
}

fn io_error(interface: &str, request: &'static str, source: io::Error) -> EthtoolError {
    EthtoolError::Io {
        interface: interface.to_owned(),
        request,
        source,
    }
}

fn errno_probe(err: &io::Error) -> Probe {
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Probe::Unsupported {
            errno: libc::EOPNOTSUPP,
        },
        Some(errno) => Probe::Failed { errno },
        None => Probe::Failed { errno: libc::EIO },
    }
}

/// Splits a `GSTRINGS` reply of `reported` names into names; `None` unless the kernel reported
/// exactly `expected` names and they are all in `data` (0 is how recent kernels refuse a
/// request whose count no longer matches the driver's).
pub(crate) fn parse_names(reported: u32, data: &[u8], expected: usize) -> Option<Vec<String>> {
    let n = reported as usize;
    if n == 0 || n != expected || data.len() / ETH_GSTRING_LEN < n {
        return None;
    }
    Some(
        data[..n * ETH_GSTRING_LEN]
            .chunks_exact(ETH_GSTRING_LEN)
            .map(|raw| {
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            })
            .collect(),
    )
}

/// Reads a `GSTATS` reply of `reported` native-endian values from `data`; `Err(reported)`
/// unless that is `expected` and they are all in `data`.
pub(crate) fn parse_values(reported: u32, data: &[u8], expected: usize) -> Result<Vec<u64>, usize> {
    let n = reported as usize;
    if n != expected || data.len() / 8 < n {
        return Err(n);
    }
    Ok(data[..n * 8]
        .chunks_exact(8)
        .map(|raw| u64::from_ne_bytes(raw.try_into().expect("8 bytes")))
        .collect())
}

#[cfg(test)]
mod tests;
