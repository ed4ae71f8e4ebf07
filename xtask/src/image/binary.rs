//! The image's binaries: linkmeter built static (glibc `+crt-static`) for each platform,
//! checked to be of that platform's architecture and to need no dynamic loader.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail, ensure};

use super::{
    Out,
    platform::{Platform, elf_machine},
};

/// Builds `linkmeter` (release) statically linked for `platform`'s target in `target/image/`
/// (never in `target/` itself, so it does not wait for or invalidate the developer builds there)
/// and returns its path. For another architecture than this machine's, Debian's cross gcc links
/// it and compiles its C (zstd); the eBPF object inside is the same for every platform
/// (`bpfel-unknown-none`: both architectures are little-endian). The caller has installed the
/// toolchain ([`Platform::ensure_toolchain`]), before any build starts.
///
/// `+crt-static` goes in as `target.<triple>.rustflags` on the command line with `--target`:
/// cargo then applies it to the binary only, not to build scripts and proc macros (which cannot
/// be static), and since it is not in the environment it does not reach the nested nightly cargo
/// that collector's build script (`collector/ebpf_build.rs`) runs for the eBPF object. The
/// environment's own rustflags are removed so they cannot replace it.
pub(super) fn build_static_binary(
    root: &Path,
    platform: &Platform,
    out: &Out,
) -> anyhow::Result<PathBuf> {
    let target = platform.target;
    let target_dir = root.join("target/image");
    let mut build = out.cargo();
    build
        .current_dir(root)
        .args(["build", "--release", "--locked"])
        .args(["--package", "collector", "--bin", "linkmeter"])
        .args(["--target", target])
        .arg("--target-dir")
        .arg(&target_dir)
        .args([
            "--config",
            &format!(r#"target.{target}.rustflags = ["-C", "target-feature=+crt-static"]"#),
        ])
        // Without the symbol table (0.7 MB): release builds carry no debug information, so a
        // backtrace from the image shows no function names; panics still say where.
        .args(["--config", r#"profile.release.strip = "symbols""#]);
    if let Some(triple) = platform.cross_triple() {
        let var = target.replace('-', "_");
        build
            .args([
                "--config",
                &format!(r#"target.{target}.linker = "{triple}-gcc""#),
            ])
            .env(format!("CC_{var}"), format!("{triple}-gcc"))
            .env(format!("AR_{var}"), format!("{triple}-ar"));
    }
    let target_rustflags = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.replace('-', "_").to_uppercase()
    );
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        &target_rustflags,
        "CARGO_PROFILE_RELEASE_STRIP",
    ] {
        build.env_remove(var);
    }
    out.run(&mut build)?;
    let binary = target_dir.join(target).join("release/linkmeter");
    let elf = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let machine = elf_machine(&elf)?;
    ensure!(
        machine == platform.elf_machine,
        "{} is not a {} binary: its ELF machine is {machine}, not {}",
        binary.display(),
        platform.name(),
        platform.elf_machine
    );
    if let Some(interpreter) = elf_interpreter(&elf)? {
        bail!(
            "{} is not static: it asks for the dynamic loader {interpreter}",
            binary.display()
        );
    }
    Ok(binary)
}

/// The `PT_INTERP` of a little-endian ELF64 file (the dynamic loader a dynamically linked
/// program needs), `None` for a static one.
pub(crate) fn elf_interpreter(elf: &[u8]) -> anyhow::Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| -> anyhow::Result<u16> {
        let b = elf.get(at..at + 2).context("truncated ELF file")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> anyhow::Result<u32> {
        let b = elf.get(at..at + 4).context("truncated ELF file")?;
        Ok(u32::from_le_bytes(b.try_into()?))
    };
    let u64_at = |at: usize| -> anyhow::Result<usize> {
        let b = elf.get(at..at + 8).context("truncated ELF file")?;
        Ok(usize::try_from(u64::from_le_bytes(b.try_into()?))?)
    };
    ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 file"
    );
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    for i in 0..usize::from(phnum) {
        let header = phoff + i * phentsize;
        if u32_at(header)? == PT_INTERP {
            let (offset, size) = (u64_at(header + 8)?, u64_at(header + 32)?);
            let path = elf
                .get(offset..offset + size)
                .context("truncated PT_INTERP")?;
            let path = path.strip_suffix(b"\0").unwrap_or(path);
            return Ok(Some(String::from_utf8_lossy(path).into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_names_its_interpreter() {
        let sh = fs::read("/bin/sh").unwrap();
        let interpreter = elf_interpreter(&sh).unwrap();
        assert!(
            interpreter
                .as_deref()
                .is_some_and(|p| p.contains("ld-linux")),
            "{interpreter:?}"
        );
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }
}
