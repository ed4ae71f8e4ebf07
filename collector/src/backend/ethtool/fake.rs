//! Fixture drivers for the ethtool backend: [`FakeDriver`] answers like one driver, with a stat
//! count that can change between calls; [`FakeEthtool`] holds one per interface name and
//! counts the probes, for the node's tests.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex, PoisonError},
};

use super::{DriverInfo, ETH_GSTRING_LEN, EthtoolIo, GSTATS_HEADER, GSTRINGS_HEADER, UserBuffer};

/// A fake driver: `counts` is what successive `GSSET_INFO`/`GSTRINGS`/`GSTATS` calls see, so a
/// test can make the count change between calls. Stat `i` is named `stat_{i}` and has the
/// value `10 * i`. Like a kernel before the December 2025 fix, it writes the driver's whole
/// current count whatever the buffer holds (through [`UserBuffer::copy_to_user`], which fails
/// with `EFAULT` where the kernel's copy would hit the guard page), unless built
/// [`FakeDriver::fail_closed`].
#[derive(Debug)]
pub(crate) struct FakeDriver {
    driver_info: Result<DriverInfo, i32>,
    counts: Mutex<Vec<u32>>,
    /// Answer a request whose expected count is stale with 0, as Linux >= 6.9 does; otherwise
    /// write the current count regardless, as older kernels do.
    fail_closed: bool,
    /// `GSTATS` fails with this errno.
    values_errno: Option<i32>,
}

impl FakeDriver {
    /// Driver `fake` with the stat counts `counts` (the last one repeats).
    pub(crate) fn new(counts: &[u32]) -> Self {
        Self::named("fake", counts)
    }

    /// Driver `driver` with the stat counts `counts`.
    pub(crate) fn named(driver: &str, counts: &[u32]) -> Self {
        Self {
            driver_info: Ok(DriverInfo {
                driver: driver.into(),
                n_stats: counts[0],
            }),
            counts: Mutex::new(counts.to_vec()),
            fail_closed: false,
            values_errno: None,
        }
    }

    /// As [`FakeDriver::new`], answering stale requests with 0 like recent kernels.
    pub(crate) fn fail_closed(counts: &[u32]) -> Self {
        Self {
            fail_closed: true,
            ..Self::new(counts)
        }
    }

    /// A driver whose every request fails with `errno`.
    pub(crate) fn failing(errno: i32) -> Self {
        Self {
            driver_info: Err(errno),
            ..Self::new(&[0])
        }
    }

    /// This driver, with `GSTATS` failing with `errno`.
    pub(crate) fn with_values_failing(self, errno: i32) -> Self {
        Self {
            values_errno: Some(errno),
            ..self
        }
    }

    /// The count the kernel would report for a request expecting `expected`.
    fn reported(&self, expected: usize) -> u32 {
        let n = self.next_count();
        if self.fail_closed && n as usize != expected {
            0
        } else {
            n
        }
    }

    /// The driver's current count; each call moves to the next listed one (the last repeats).
    fn next_count(&self) -> u32 {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() > 1 {
            counts.remove(0)
        } else {
            counts[0]
        }
    }
}

impl EthtoolIo for FakeDriver {
    fn driver_info(&self, _: &str) -> io::Result<DriverInfo> {
        self.driver_info
            .clone()
            .map_err(io::Error::from_raw_os_error)
    }

    fn stats_count(&self, _: &str) -> io::Result<u32> {
        if let Err(errno) = self.driver_info {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(self.next_count())
    }

    fn stat_names(
        &self,
        _: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        buf.prepare(GSTRINGS_HEADER, capacity * ETH_GSTRING_LEN)?;
        let n = self.reported(expected);
        let mut names = vec![0u8; n as usize * ETH_GSTRING_LEN];
        for (i, raw) in names.chunks_exact_mut(ETH_GSTRING_LEN).enumerate() {
            let name = format!("stat_{i}");
            raw[..name.len()].copy_from_slice(name.as_bytes());
        }
        buf.copy_to_user(0, &names)?;
        Ok(n)
    }

    fn stat_values(
        &self,
        _: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        if let Some(errno) = self.values_errno {
            return Err(io::Error::from_raw_os_error(errno));
        }
        buf.prepare(GSTATS_HEADER, capacity * 8)?;
        let n = self.reported(expected);
        let values: Vec<u8> = (0..u64::from(n))
            .flat_map(|i| (i * 10).to_ne_bytes())
            .collect();
        buf.copy_to_user(0, &values)?;
        Ok(n)
    }
}

#[derive(Debug, Default)]
struct Drivers {
    by_name: HashMap<String, Arc<FakeDriver>>,
    probes: usize,
}

/// One [`FakeDriver`] per interface name; an unknown name answers `ENODEV` like a vanished
/// interface. Cloning shares the drivers, so a test keeps a handle on what the node owns.
#[derive(Clone, Debug, Default)]
pub(crate) struct FakeEthtool(Arc<Mutex<Drivers>>);

impl FakeEthtool {
    fn drivers(&self) -> std::sync::MutexGuard<'_, Drivers> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `driver` for interface `name`.
    pub(crate) fn set(&self, name: &str, driver: FakeDriver) {
        self.drivers()
            .by_name
            .insert(name.to_owned(), Arc::new(driver));
    }

    /// How many probes were made (`GDRVINFO` requests).
    pub(crate) fn probes(&self) -> usize {
        self.drivers().probes
    }

    fn driver(&self, name: &str) -> io::Result<Arc<FakeDriver>> {
        self.drivers()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }
}

impl EthtoolIo for FakeEthtool {
    fn driver_info(&self, interface: &str) -> io::Result<DriverInfo> {
        self.drivers().probes += 1;
        self.driver(interface)?.driver_info(interface)
    }

    fn stats_count(&self, interface: &str) -> io::Result<u32> {
        self.driver(interface)?.stats_count(interface)
    }

    fn stat_names(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        self.driver(interface)?
            .stat_names(interface, expected, capacity, buf)
    }

    fn stat_values(
        &self,
        interface: &str,
        expected: usize,
        capacity: usize,
        buf: &mut UserBuffer,
    ) -> io::Result<u32> {
        self.driver(interface)?
            .stat_values(interface, expected, capacity, buf)
    }
}
