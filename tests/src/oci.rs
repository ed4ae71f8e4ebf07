//! The OCI archive `cargo xtask image --save` writes (and `cargo xtask test` builds in the
//! background): an OCI layout whose `index.json` names one image index, which lists an image
//! per platform. Unpacked and checked here: every blob against its size and digest, each
//! image's configuration against its platform, each layer into a root filesystem of its own.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::{eventually, netns::run};

/// The media type of an OCI image index.
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of an OCI image manifest.
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Waits while `cargo xtask test` is still building the archive in the background: it creates
/// `<archive>.building` first, renames the finished archive into place, writes
/// `<archive>.failed` (with the error) if the build fails, and removes `.building` last.
pub fn wait_for_archive(archive: &Path) {
    let marker = |suffix: &str| {
        let mut name = archive.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (building, failed) = (marker(".building"), marker(".failed"));
    let mut said = false;
    eventually(
        "the image build of cargo xtask test",
        Duration::from_secs(45 * 60),
        || {
            let done = !building.exists();
            if archive.is_file() {
                return Ok(());
            }
            if let Ok(error) = fs::read_to_string(&failed) {
                panic!("the image build failed: {error}");
            }
            assert!(
                !done,
                "no image archive at {} (and none being built)",
                archive.display()
            );
            if !said {
                println!("waiting for the image build ({})", building.display());
                said = true;
            }
            std::thread::sleep(Duration::from_secs(1));
            Err("still building")
        },
    );
}

/// One platform's image, unpacked: its configuration and root filesystem.
#[derive(Debug)]
pub struct OciImage {
    /// `architecture` of the index entry (`amd64`, `arm64`), checked equal to the
    /// configuration's.
    pub arch: String,
    /// The image configuration (`os`, `architecture`, `config` with entrypoint, labels ...).
    pub config: Value,
    /// The unpacked layer.
    pub rootfs: PathBuf,
    /// Configuration plus layers, as the manifest gives their sizes.
    pub stored_bytes: u64,
}

/// Unpacks the OCI archive `archive` under `work`: checks the layout, that `index.json` names
/// exactly one image index, and every blob's size and digest; returns the images of the index
/// in its order, each with one layer unpacked into `work/rootfs-<arch>`.
pub fn unpack_index(archive: &Path, work: &Path) -> Vec<OciImage> {
    let layout = work.join("oci");
    fs::create_dir_all(&layout).expect("layout dir");
    tar(&["-x", "-f", path_str(archive), "-C", path_str(&layout)]);
    let layout_version = read_json(&layout.join("oci-layout"));
    assert_eq!(layout_version["imageLayoutVersion"], "1.0.0");
    let top = read_json(&layout.join("index.json"));
    let entries = top["manifests"].as_array().expect("index.json manifests");
    assert_eq!(entries.len(), 1, "one image index: {top}");
    assert_eq!(entries[0]["mediaType"], INDEX_MEDIA_TYPE, "{top}");
    let index: Value =
        serde_json::from_slice(&blob(&layout, &entries[0])).expect("image index JSON");
    assert_eq!(index["schemaVersion"], 2, "{index}");
    index["manifests"]
        .as_array()
        .expect("the image index lists manifests")
        .iter()
        .map(|descriptor| unpack_image(&layout, descriptor, work))
        .collect()
}

/// Unpacks the image of one index entry.
fn unpack_image(layout: &Path, descriptor: &Value, work: &Path) -> OciImage {
    assert_eq!(descriptor["mediaType"], MANIFEST_MEDIA_TYPE, "{descriptor}");
    let platform = &descriptor["platform"];
    assert_eq!(platform["os"], "linux", "{descriptor}");
    let arch = platform["architecture"]
        .as_str()
        .expect("the entry's architecture")
        .to_owned();
    let manifest: Value = serde_json::from_slice(&blob(layout, descriptor)).expect("manifest JSON");
    let config: Value =
        serde_json::from_slice(&blob(layout, &manifest["config"])).expect("config JSON");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], arch.as_str(), "the index entry's");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = &layers[0];
    let media_type = layer["mediaType"].as_str().expect("layer media type");
    assert!(
        media_type.starts_with("application/vnd.oci.image.layer.v1.tar"),
        "{media_type}"
    );
    blob(layout, layer);
    let rootfs = work.join(format!("rootfs-{arch}"));
    fs::create_dir_all(&rootfs).expect("rootfs dir");
    // GNU tar recognises the compression (gzip, zstd) itself.
    tar(&[
        "-x",
        "-p",
        "--numeric-owner",
        "-f",
        path_str(&blob_path(layout, layer)),
        "-C",
        path_str(&rootfs),
    ]);
    let stored_bytes = [&manifest["config"], layer]
        .iter()
        .map(|d| d["size"].as_u64().expect("size"))
        .sum();
    OciImage {
        arch,
        config,
        rootfs,
        stored_bytes,
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn tar(args: &[&str]) {
    run("tar", args);
}

fn read_json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob_path(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// The blob `descriptor` names, after checking its size and sha256.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let path = blob_path(layout, descriptor);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        Some(bytes.len() as u64),
        descriptor["size"].as_u64(),
        "{descriptor}"
    );
    let sum = run("sha256sum", &[path_str(&path)]);
    let hex = sum.split_whitespace().next().expect("sha256sum output");
    assert_eq!(
        Some(format!("sha256:{hex}").as_str()),
        descriptor["digest"].as_str(),
        "the blob does not match its digest"
    );
    bytes
}

/// Every path under `root` (relative, sorted) with its size in bytes (0 for directories).
pub fn walk(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                todo.push(path);
                out.insert(relative, 0);
            } else {
                out.insert(relative, meta.len());
            }
        }
    }
    out
}

/// What an ELF64 little-endian executable is and needs at run time.
#[derive(Debug)]
pub struct ElfNeeds {
    /// `e_machine`: 62 x86-64, 183 AArch64.
    pub machine: u16,
    /// Its `PT_INTERP` (the dynamic loader), if any.
    pub interpreter: Option<String>,
    /// The `DT_NEEDED` entries of its `PT_DYNAMIC` (a static-pie has the segment, for its own
    /// relocations, but needs no library).
    pub needed: Vec<u64>,
}

/// Reads [`ElfNeeds`] from an ELF64 little-endian file.
pub fn elf_needs(elf: &[u8]) -> ElfNeeds {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NEEDED: u64 = 1;
    let bytes = |at: usize, n: usize| {
        elf.get(at..at + n)
            .unwrap_or_else(|| panic!("truncated ELF file at {at}"))
    };
    let u16_at = |at: usize| u16::from_le_bytes(bytes(at, 2).try_into().expect("2 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes(at, 4).try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes(at, 8).try_into().expect("8 bytes"));
    let usize_at = |at: usize| usize::try_from(u64_at(at)).expect("offset fits");
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 file"
    );
    let (phoff, phentsize, phnum) = (usize_at(0x20), usize::from(u16_at(0x36)), u16_at(0x38));
    let mut needs = ElfNeeds {
        machine: u16_at(0x12),
        interpreter: None,
        needed: Vec::new(),
    };
    for i in 0..usize::from(phnum) {
        let header = phoff + i * phentsize;
        let (offset, size) = (usize_at(header + 8), usize_at(header + 32));
        match u32_at(header) {
            PT_INTERP => {
                let path = bytes(offset, size);
                needs.interpreter = Some(
                    String::from_utf8_lossy(path.strip_suffix(b"\0").unwrap_or(path)).into_owned(),
                );
            }
            PT_DYNAMIC => {
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry) {
                        0 => break,
                        DT_NEEDED => needs.needed.push(u64_at(entry + 8)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    needs
}
