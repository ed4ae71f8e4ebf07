//! Builds the eBPF object (`collector-ebpf`) on every build of the collector whose inputs changed,
//! so the object embedded in `linkmeter` is never stale: cargo reruns this script when anything
//! under `collector-ebpf/` or `collector-common/` changes, and [`ebpf_build`] rebuilds the object
//! with nightly for `bpf{el,eb}-unknown-none` (in a directory shared by every build of the
//! workspace) and copies it into `OUT_DIR`.

use std::{path::PathBuf, process::Command};

#[path = "ebpf_build.rs"]
mod ebpf_build;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("collector/ has a parent");
    let common_dir = root.join("collector-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    if let Err(missing) = check_prerequisites() {
        println!("cargo:warning={missing}");
        eprintln!("error: {missing}");
        std::process::exit(1);
    }

    if let Err(err) = ebpf_build::build_ebpf_bins(root) {
        eprintln!("error: building the eBPF object failed: {err}");
        std::process::exit(1);
    }
}

/// The eBPF build needs nightly with `rust-src` and `bpf-linker`; say exactly what to run.
fn check_prerequisites() -> Result<(), String> {
    let fix = "run `cargo xtask build-ebpf` once (it installs what is missing)";
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustup ({e}): the eBPF build needs rustup with a nightly toolchain; {fix}"))?;
    if !sysroot.status.success() {
        return Err(format!(
            "no nightly toolchain: {fix}, or `rustup toolchain install nightly --component rust-src`"
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Err(format!(
            "nightly has no rust-src: {fix}, or `rustup component add rust-src --toolchain nightly`"
        ));
    }
    if which::which("bpf-linker").is_err() {
        return Err(format!(
            "bpf-linker not found on PATH: {fix}, or `cargo install bpf-linker@0.10.4 --locked`"
        ));
    }
    Ok(())
}
