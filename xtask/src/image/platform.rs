//! The platforms the image is built for: a static linkmeter per architecture, cross-compiled
//! from this machine with rustup's standard library for the target and Debian's cross gcc (the
//! linker, and the C compiler of the zstd library), installed when missing.

use anyhow::bail;

use crate::prereq::{Tool, ensure_debian_tools, ensure_rust_target};

/// One platform of the image index.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Platform {
    /// The OCI architecture (`GOARCH` spelling), as in `linux/<arch>` and the Containerfile's
    /// `TARGETARCH`.
    pub(crate) arch: &'static str,
    /// The Rust target of its binary: glibc, linked statically (`+crt-static`), so the binary runs
    /// on an empty filesystem. linkmeter resolves no host names and looks up no users, so glibc's
    /// NSS (which a static glibc cannot load) is never needed.
    pub(crate) target: &'static str,
    /// `std::env::consts::ARCH` of a machine that builds it natively.
    native_arch: &'static str,
    /// The ELF `e_machine` of its binary.
    pub(crate) elf_machine: u16,
    /// The GNU triple of Debian's cross toolchain for it (`<triple>-gcc`, `/usr/<triple>/lib`).
    gnu_triple: &'static str,
    /// What cross-compiling it needs from Debian: gcc, and glibc's static libraries.
    cross_tools: [Tool; 2],
}

/// Every platform the image can be built for; the default is all of them.
pub(crate) const PLATFORMS: &[Platform] = &[
    Platform {
        arch: "amd64",
        target: "x86_64-unknown-linux-gnu",
        native_arch: "x86_64",
        elf_machine: 62,
        gnu_triple: "x86_64-linux-gnu",
        cross_tools: [
            Tool {
                command: "x86_64-linux-gnu-gcc",
                package: "gcc-x86-64-linux-gnu",
                why: "linking the amd64 binary of the image",
            },
            Tool {
                command: "/usr/x86_64-linux-gnu/lib/libc.a",
                package: "libc6-dev-amd64-cross",
                why: "glibc's static libraries for the amd64 binary of the image",
            },
        ],
    },
    Platform {
        arch: "arm64",
        target: "aarch64-unknown-linux-gnu",
        native_arch: "aarch64",
        elf_machine: 183,
        gnu_triple: "aarch64-linux-gnu",
        cross_tools: [
            Tool {
                command: "aarch64-linux-gnu-gcc",
                package: "gcc-aarch64-linux-gnu",
                why: "linking the arm64 binary of the image",
            },
            Tool {
                command: "/usr/aarch64-linux-gnu/lib/libc.a",
                package: "libc6-dev-arm64-cross",
                why: "glibc's static libraries for the arm64 binary of the image",
            },
        ],
    },
];

impl Platform {
    /// `linux/<arch>`, as buildah, docker and the OCI index spell it.
    pub(crate) fn name(&self) -> String {
        format!("linux/{}", self.arch)
    }

    /// Whether this machine builds it without a cross toolchain.
    fn is_native(&self) -> bool {
        std::env::consts::ARCH == self.native_arch
    }

    /// The GNU triple of the cross toolchain (`<triple>-gcc`, `<triple>-ar`), when this machine
    /// is of another architecture.
    pub(crate) fn cross_triple(&self) -> Option<&'static str> {
        (!self.is_native()).then_some(self.gnu_triple)
    }

    /// Installs what building its binary here needs and is missing: the Rust standard library
    /// for its target and, when cross-compiling, Debian's cross toolchain.
    pub(crate) fn ensure_toolchain(&self) -> anyhow::Result<()> {
        ensure_rust_target(self.target)?;
        if !self.is_native() {
            ensure_debian_tools(&self.cross_tools)?;
        }
        Ok(())
    }
}

/// The platforms of `--platform` (`linux/amd64,linux/arm64`, or the bare architectures), in
/// the order given, without repeats.
pub(crate) fn parse(list: &[String]) -> anyhow::Result<Vec<&'static Platform>> {
    let mut platforms: Vec<&'static Platform> = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let arch = item.strip_prefix("linux/").unwrap_or(item);
        let Some(platform) = PLATFORMS.iter().find(|p| p.arch == arch) else {
            bail!(
                "unknown platform {item:?}: the image is built for {}",
                PLATFORMS
                    .iter()
                    .map(Platform::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        bail!("--platform names no platform");
    }
    Ok(platforms)
}

/// The ELF `e_machine` of a little-endian ELF file.
pub(crate) fn elf_machine(elf: &[u8]) -> anyhow::Result<u16> {
    anyhow::ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 file"
    );
    let bytes = elf
        .get(0x12..0x14)
        .ok_or_else(|| anyhow::anyhow!("truncated ELF file"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_parsed_in_order_without_repeats() {
        let given = |s: &str| vec![s.to_owned()];
        let arches = |list: Vec<&Platform>| list.iter().map(|p| p.arch).collect::<Vec<_>>();
        assert_eq!(
            arches(parse(&given("linux/amd64,linux/arm64")).unwrap()),
            ["amd64", "arm64"]
        );
        assert_eq!(
            arches(parse(&given("arm64, linux/arm64,amd64")).unwrap()),
            ["arm64", "amd64"]
        );
        let err = parse(&given("linux/riscv64")).unwrap_err().to_string();
        assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
        assert!(parse(&given(" , ")).is_err());
    }

    #[test]
    fn the_elf_machine_of_this_machine_is_known() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        let machine = elf_machine(&own).unwrap();
        let native = PLATFORMS.iter().find(|p| p.is_native()).unwrap();
        assert_eq!(machine, native.elf_machine);
        assert!(elf_machine(b"#!/bin/sh\n").is_err());
    }
}
