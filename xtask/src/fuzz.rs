//! `cargo xtask fuzz`: the cargo-fuzz targets under `fuzz/` (owned by the fuzzing work in
//! progress; see issue 12).

use std::path::Path;

use anyhow::bail;

/// Runs each target (all when `targets` is empty) for `seconds`.
pub(crate) fn run(_root: &Path, _seconds: u64, _targets: &[String]) -> anyhow::Result<()> {
    bail!("fuzzing is being built (issue 12)")
}
