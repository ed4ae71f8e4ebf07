//! The ethtool backend: driver info and driver statistics over `SIOCETHTOOL`, and link speed
//! over the ethtool generic-netlink family.
//!
//! An interface is probed once per lifetime ([`Ethtool::probe`]); the stat names are fetched
//! then, and only values afterwards ([`Ethtool::values`]). When the driver's stat count changes
//! the values are refused ([`EthtoolError::CountChanged`]) and the caller fetches names again.
//! Every decision is made from the errno, never from an error message.
//!
//! [`EthtoolBackend`] is what the node uses: the probe, and the per-scrape collection of the
//! values of every ethtool-routed interface ([`DriverStats`]).

mod driver_stats;
#[cfg(test)]
pub(crate) mod fake;
mod ioctl;
mod link_mode;

use std::io;

pub(crate) use driver_stats::{DriverStats, EthtoolBackend};
pub(crate) use ioctl::ETH_GSTRING_LEN;
pub use ioctl::{DriverInfo, EthtoolIo, Ioctl, Reply};
pub(crate) use link_mode::{LinkMode, LinkModeError, link_modes};

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
}

impl EthtoolError {
    /// The errno, when the kernel returned one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Self::Io { source, .. } => source.raw_os_error(),
            Self::CountChanged { .. } => None,
        }
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
}

impl<I: EthtoolIo> Ethtool<I> {
    /// Uses `io` for the requests ([`Ioctl`] on the real kernel).
    pub const fn new(io: I) -> Self {
        Self { io }
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
                Err(EthtoolError::CountChanged { .. }) => {}
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
    /// The ioctl fails, or the driver reported more names than the buffer holds.
    pub(crate) fn names(&self, interface: &str) -> Result<Vec<String>, EthtoolError> {
        let io_err = |request| {
            move |source| EthtoolError::Io {
                interface: interface.to_owned(),
                request,
                source,
            }
        };
        let count = self
            .io
            .stats_count(interface)
            .map_err(io_err("GSSET_INFO"))? as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        let capacity = with_headroom(count);
        let reply = self
            .io
            .stat_names(interface, count, capacity)
            .map_err(io_err("GSTRINGS"))?;
        parse_names(&reply, capacity).ok_or_else(|| EthtoolError::CountChanged {
            interface: interface.to_owned(),
            expected: count,
            reported: reply.reported as usize,
        })
    }

    /// Reads the stat values; `expected` is the number of names known for this interface.
    ///
    /// # Errors
    ///
    /// The ioctl fails, or the driver now reports a different number of statistics
    /// ([`EthtoolError::CountChanged`]: fetch the names again).
    pub fn values(&self, interface: &str, expected: usize) -> Result<Vec<u64>, EthtoolError> {
        let capacity = with_headroom(expected);
        let reply = self
            .io
            .stat_values(interface, expected, capacity)
            .map_err(|source| EthtoolError::Io {
                interface: interface.to_owned(),
                request: "GSTATS",
                source,
            })?;
        parse_values(reply, expected).map_err(|reported| EthtoolError::CountChanged {
            interface: interface.to_owned(),
            expected,
            reported,
        })
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

/// Splits a `GSTRINGS` reply into names; `None` when the kernel reported more than fit.
pub(crate) fn parse_names(reply: &Reply<Vec<u8>>, capacity: usize) -> Option<Vec<String>> {
    let n = reply.reported as usize;
    // 0 is how recent kernels refuse a request whose count no longer matches the driver's.
    if n == 0 || n > capacity || reply.data.len() < n * ETH_GSTRING_LEN {
        return None;
    }
    Some(
        reply.data[..n * ETH_GSTRING_LEN]
            .chunks_exact(ETH_GSTRING_LEN)
            .map(|raw| {
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            })
            .collect(),
    )
}

/// Checks a `GSTATS` reply against the expected count; `Err(reported)` when it differs.
pub(crate) fn parse_values(reply: Reply<Vec<u64>>, expected: usize) -> Result<Vec<u64>, usize> {
    let n = reply.reported as usize;
    if n != expected || reply.data.len() < n {
        return Err(n);
    }
    let mut data = reply.data;
    data.truncate(n);
    Ok(data)
}

#[cfg(test)]
mod tests;
