//! The web configuration file (`--web-config-file`, the exporter-toolkit YAML).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| collector::fuzzing::web_config(data));
