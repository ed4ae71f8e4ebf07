//! A reload of the web configuration (the one in force, `0xFF`, its replacement).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::web_reload(data));
