//! Entry points for the cargo-fuzz targets under `fuzz/` (feature `fuzzing` only).
//!
//! Each function takes the fuzzer's bytes, feeds them to one parser of kernel or user input and
//! asserts what must hold for every input; a panic (an assertion included) is a finding. The
//! targets in `fuzz/fuzz_targets/` are one line each, calling one of these.
//!
//! Where a function needs several strings, the input is split at the byte `0xFF`, which never
//! occurs in UTF-8, and each part is read as UTF-8 (invalid sequences become U+FFFD), so every
//! character, NUL and newline included, can reach the parser.

mod config;
mod ethtool;
mod labels;
mod netlink;
mod web_config;
mod web_reload;

pub use self::{
    config::config, ethtool::ethtool, labels::labels, netlink::netlink, web_config::web_config,
    web_reload::web_reload,
};

/// The parts of `data` between `0xFF` bytes, as strings.
fn fields(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0xff)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_seeds_pass() {
        for dir in [
            "ethtool",
            "netlink",
            "config",
            "labels",
            "web_config",
            "web_reload",
        ] {
            let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/corpus")
                .join(dir);
            for entry in std::fs::read_dir(&corpus).expect("seed corpus") {
                let data = std::fs::read(entry.expect("entry").path()).expect("seed");
                match dir {
                    "ethtool" => ethtool(&data),
                    "netlink" => netlink(&data),
                    "config" => config(&data),
                    "web_config" => web_config(&data),
                    "web_reload" => web_reload(&data),
                    _ => labels(&data),
                }
            }
        }
        labels(b"eth0\xffvxlan\xff\xff\xff10.0.0.2\xffbreakdown");
    }
}
