//! Label escaping in both exposition formats, read back by a strict reader.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::labels(data));
