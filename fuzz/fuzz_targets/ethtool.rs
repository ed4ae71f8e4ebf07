//! The ethtool `GSTRINGS` string-table and `GSTATS` value parsers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::ethtool(data));
