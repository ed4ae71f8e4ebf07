//! Builds the eBPF crate so the tests can load its test-only programs
//! (`linkmeter-tc-testprogs`: an observer and a chain-ending program).

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ has a parent");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("collector-common").display()
    );
    let ebpf_dir = root.join("collector-ebpf");
    let package = aya_build::Package {
        name: "collector-ebpf",
        root_dir: ebpf_dir.to_str().expect("workspace path is UTF-8"),
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], aya_build::Toolchain::default()) {
        eprintln!(
            "error: building the eBPF test programs failed: {err:#} (run `cargo xtask build-ebpf` once to install the toolchain)"
        );
        std::process::exit(1);
    }
}
