//! The eBPF build of the build scripts of `collector` and `integration-tests` (both include this
//! file with `#[path]`): builds the binaries of `collector-ebpf` with nightly for
//! `bpf{el,eb}-unknown-none` and copies them into the script's `OUT_DIR`.
//!
//! The nested cargo builds into one directory per workspace and BPF target architecture,
//! `<target>/ebpf-build/<arch>/`, not into `OUT_DIR`: every build of the collector in another
//! profile, target or target directory (clippy, test, release, each image platform, the fuzz
//! build) would otherwise compile `core` and the programs again from scratch, about a minute of
//! CPU each. In the shared directory cargo's own fingerprints decide, so after the first build the
//! others find the objects fresh. Two builds at once wait for each other on cargo's lock of that
//! directory.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The package whose binaries are the eBPF programs.
const PACKAGE: &str = "collector-ebpf";

/// Builds the eBPF binaries of the workspace at `root` for this build's architecture and copies
/// each into `OUT_DIR/<bin name>`.
///
/// # Errors
///
/// A missing build-script variable, a failed nested build (its diagnostics are on stderr) or a
/// failed copy, as a sentence.
pub fn build_ebpf_bins(root: &Path) -> Result<(), String> {
    let var = |name: &str| env::var(name).map_err(|_| format!("{name} is not set"));
    println!("cargo:rerun-if-changed={}", root.join(PACKAGE).display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = match var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => return Err(format!("no BPF target for endianness {other}")),
    };
    // The `bpf_target_arch` cfg of aya-ebpf (register layouts of kprobes): the architecture the
    // programs will be loaded on, so a directory of its own.
    let arch = match var("CARGO_CFG_TARGET_ARCH")? {
        a if a.starts_with("riscv64") => "riscv64".to_owned(),
        a => a,
    };
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("ebpf-build")
        .join(&arch);

    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f");
    let mut build = Command::new("rustup");
    build
        .current_dir(root)
        .args(["run", "nightly", "cargo", "build", "--package", PACKAGE])
        .args(["--bins", "--release", "--target", target])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        // Artifacts as JSON on stdout, diagnostics rendered on stderr (shown when this fails).
        .arg("--message-format=json-render-diagnostics")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler and wrappers (clippy's among them) are not nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let output = build
        .output()
        .map_err(|e| format!("cannot run {build:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{build:?} failed ({}); its messages are above",
            output.status
        ));
    }

    let executables = executables(&output.stdout)?;
    if executables.is_empty() {
        return Err(format!("{PACKAGE} built no binaries"));
    }
    for (name, path) in executables {
        let to = out_dir.join(&name);
        fs::copy(&path, &to)
            .map_err(|e| format!("copying {} to {}: {e}", path.display(), to.display()))?;
    }
    Ok(())
}

/// `(binary name, path)` of each executable in cargo's JSON messages.
fn executables(stdout: &[u8]) -> Result<Vec<(OsString, PathBuf)>, String> {
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let message: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("cargo printed a line that is not JSON ({e}): {line}"))?;
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            found.push((OsString::from(name), PathBuf::from(path)));
        }
    }
    Ok(found)
}
