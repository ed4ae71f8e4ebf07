//! Builds the eBPF crate so the tests can load its test-only programs
//! (`linkmeter-tc-testprogs`: an observer and a chain-ending program).

use std::path::PathBuf;

#[path = "../collector/ebpf_build.rs"]
mod ebpf_build;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ has a parent");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("collector-common").display()
    );
    if let Err(err) = ebpf_build::build_ebpf_bins(root) {
        eprintln!(
            "error: building the eBPF test programs failed: {err} (run `cargo xtask build-ebpf` once to install the toolchain)"
        );
        std::process::exit(1);
    }
}
