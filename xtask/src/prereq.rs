//! Installing what the tasks need, with a clear message for each install.

use std::{
    env,
    ffi::OsString,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The bpf-linker release that uses the LLVM inside the nightly toolchain (no system LLVM).
const BPF_LINKER: &str = "bpf-linker@0.10.4";

/// A command the tasks run, and the Debian package that provides it.
#[derive(Debug, PartialEq, Eq)]
pub struct Tool {
    /// The command looked up on `PATH`, or an absolute path (a file the package installs,
    /// such as a cross toolchain's C library) that must exist.
    pub command: &'static str,
    /// The Debian package to install when it is missing.
    pub package: &'static str,
    /// What it is needed for, printed when it is installed.
    pub why: &'static str,
}

/// `$CARGO_HOME/bin`, where `cargo install` puts bpf-linker.
fn cargo_bin() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// `PATH` with `$CARGO_HOME/bin` in front, so a freshly installed bpf-linker is found.
fn search_path() -> OsString {
    let mut paths = vec![cargo_bin()];
    if let Some(path) = env::var_os("PATH") {
        paths.extend(env::split_paths(&path));
    }
    env::join_paths(paths).unwrap_or_default()
}

/// A command that sees `$CARGO_HOME/bin` on its `PATH`, without the variables that describe
/// the package `cargo` ran ([`is_cargo_package_variable`]).
pub fn cmd(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", search_path());
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(is_cargo_package_variable) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `name` is one of the variables `cargo run` and `cargo test` set for the program they
/// run (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, `OUT_DIR`, ...), here xtask's own. A build
/// started with them sees an environment that differs from a build started from a shell, and
/// build scripts that track them (ring's, through the cc crate: `CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, `OUT_DIR`) run again and rebuild ring and everything above it, in each
/// direction. The test helper that builds `linkmeter` removes the same ones.
fn is_cargo_package_variable(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || ["OUT_DIR", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&name)
}

/// Runs `command`, failing with its command line when it does not succeed.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure nightly with `rust-src` and `bpf-linker` are there, installing them if not.
pub fn ensure_ebpf_toolchain() -> anyhow::Result<()> {
    if which::which("rustup").is_err() {
        bail!(
            "rustup not found: the eBPF build needs rustup (https://rustup.rs) with a nightly toolchain"
        );
    }
    if !succeeds(cmd("rustup").args(["run", "nightly", "rustc", "--version"])) {
        eprintln!(
            "xtask: installing the nightly toolchain with rust-src (needed to build the eBPF object)"
        );
        run(cmd("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .args(["--component", "rust-src"]))?;
    }
    let sysroot = cmd("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("asking nightly rustc for its sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        eprintln!(
            "xtask: installing rust-src for nightly (the eBPF build compiles core with -Z build-std)"
        );
        run(cmd("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    if which::which_in("bpf-linker", Some(search_path()), ".").is_err() {
        eprintln!("xtask: installing {BPF_LINKER} (links the eBPF object; about 1-2 minutes)");
        run(cmd("cargo").args(["install", BPF_LINKER, "--locked"]))?;
    }
    Ok(())
}

/// Installs the Debian packages of the tools that are missing (`apt-get`, as root).
pub fn ensure_debian_tools(tools: &[Tool]) -> anyhow::Result<()> {
    let missing: Vec<&Tool> = tools
        .iter()
        .filter(|t| {
            if t.command.starts_with('/') {
                !std::path::Path::new(t.command).exists()
            } else {
                which::which_in(t.command, Some(search_path()), ".").is_err()
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.sort_unstable();
    packages.dedup();
    for tool in &missing {
        eprintln!(
            "xtask: installing Debian package {} ({} is missing; needed for {})",
            tool.package, tool.command, tool.why
        );
    }
    if !is_root() {
        bail!(
            "missing Debian packages: run `sudo apt-get install -y {}`",
            packages.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// PyPI packages the manifest validation uses, pinned.
const PYTHON_PACKAGES: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "jsonschema>=4.17,<5",
    "pyyaml>=6,<7",
];

/// A Python virtual environment under `target/pyenv` with the manifest validators; returns
/// its interpreter, creating or completing it when needed.
pub fn ensure_python_env(root: &std::path::Path) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/pyenv");
    let python = venv.join("bin/python");
    let ready = || {
        succeeds(Command::new(&python).args(["-c", "import kubernetes_validate, jsonschema, yaml"]))
    };
    if python.exists() && ready() {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing PyPI packages {} into {} (offline validation of the Kubernetes manifests)",
        PYTHON_PACKAGES.join(" "),
        venv.display()
    );
    let python3 = which::which("python3")
        .context("python3 not found: install Debian package python3-venv")?;
    run(Command::new(python3).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES))?;
    Ok(python)
}

/// Makes sure the Rust standard library for `target` is installed for the toolchain cargo uses
/// here, adding it with rustup if not.
pub fn ensure_rust_target(target: &str) -> anyhow::Result<()> {
    let installed = cmd("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("asking rustup for the installed targets")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == target)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the Rust standard library for {target} (rustup target add)");
    run(cmd("rustup").args(["target", "add", target]))
}
