//! The image's binary: linkmeter built static (glibc `+crt-static`), checked to need no
//! dynamic loader.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail, ensure};

use super::{Out, TARGET};

/// Builds `linkmeter` (release) statically linked for [`TARGET`] in `target/image/` (never in
/// `target/` itself, so it does not wait for or invalidate the developer builds there) and
/// returns its path.
///
/// `+crt-static` goes in as `target.<triple>.rustflags` on the command line with `--target`:
/// cargo then applies it to the binary only, not to build scripts and proc macros (which cannot
/// be static), and since it is not in the environment it does not reach the nested nightly cargo
/// that collector's build script (aya-build) runs for the eBPF object. The environment's own
/// rustflags are removed so they cannot replace it.
pub(super) fn build_static_binary(root: &Path, out: &Out) -> anyhow::Result<PathBuf> {
    let target_dir = root.join("target/image");
    let mut build = out.cargo();
    build
        .current_dir(root)
        .args(["build", "--release", "--locked"])
        .args(["--package", "collector", "--bin", "linkmeter"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .args([
            "--config",
            &format!(r#"target.{TARGET}.rustflags = ["-C", "target-feature=+crt-static"]"#),
        ])
        // Without the symbol table (0.7 MB): release builds carry no debug information, so a
        // backtrace from the image shows no function names; panics still say where.
        .args(["--config", r#"profile.release.strip = "symbols""#]);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_STRIP",
    ] {
        build.env_remove(var);
    }
    out.run(&mut build)?;
    let binary = target_dir.join(TARGET).join("release/linkmeter");
    let elf = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
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
