//! The configuration: a TOML file, the flags of `linkmeter run`, patterns and overrides.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::config(data));
