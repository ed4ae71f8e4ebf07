//! rtnetlink datagrams and link messages; interface-name escaping.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::netlink(data));
