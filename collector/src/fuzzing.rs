//! Entry points for the cargo-fuzz targets under `fuzz/` (feature `fuzzing` only).
