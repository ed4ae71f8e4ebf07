//! The OCI image as `cargo xtask image --save` writes it (`LINKMETER_IMAGE_ARCHIVE`; `cargo xtask
//! test` builds it): a valid OCI layout whose blobs match their digests, one layer holding only
//! the static `linkmeter`, at most 15 MB; and that binary, run from the image's own root
//! filesystem the way the DaemonSet runs it (the entrypoint with the manifest's args, the
//! `config.toml` ConfigMap at `/etc/linkmeter`, a bpffs at `/sys/fs/bpf`, a read-only root, the
//! image's environment only), routes a Cilium-like node and counts `cilium_vxlan` exactly.
//!
//! Containers cannot be started on every test machine (crun needs CAP_SYS_RESOURCE), so the test
//! does what a runtime would itself: unpacks the layer, mounts `/proc`, `/sys` and the volumes
//! in a mount namespace of the daemon's own, and chroots into the root filesystem.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration_tests::{
    bpffs::BpfFs,
    daemon::{LISTEN, scrape},
    eventually, http, kernel_tests_enabled,
    netns::{NetNs, run},
    skip,
    topology::CiliumNode,
    traffic::udp_exchange,
};
use serde_json::Value;

/// The size limit of the image (issue 12).
const MAX_IMAGE_BYTES: u64 = 15_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn image_holds_only_a_static_linkmeter_that_counts_a_cilium_like_node_from_its_own_rootfs() {
    if !kernel_tests_enabled() {
        return;
    }
    let Some(archive) = std::env::var_os("LINKMETER_IMAGE_ARCHIVE") else {
        skip(
            "no image: LINKMETER_IMAGE_ARCHIVE is not set (`cargo xtask test` builds the image \
             and sets it; by hand: `cargo xtask image --save target/image/linkmeter.oci.tar`, then \
             LINKMETER_IMAGE_ARCHIVE=target/image/linkmeter.oci.tar)",
        );
        return;
    };
    // A relative path is taken from the workspace root (`cargo test` runs tests in tests/).
    let archive = repo().join(archive);
    wait_for_archive(&archive);
    let work = TempDir::new("image");
    let image = OciImage::unpack(&archive, &work.0);

    // The configuration: a linux/amd64 image that runs /usr/bin/linkmeter as root, with
    // linkmeter's OCI labels.
    let config = &image.config;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let run_config = &config["config"];
    let entrypoint = strings(&run_config["Entrypoint"]);
    assert_eq!(entrypoint, ["/usr/bin/linkmeter"]);
    assert_eq!(strings(&run_config["Cmd"]), ["run"]);
    assert_eq!(strings(&run_config["Env"]), ["PATH=/usr/bin"]);
    assert_eq!(run_config["User"], "0:0");
    assert!(run_config["ExposedPorts"].get("9977/tcp").is_some());
    let label = |name: &str| {
        run_config["Labels"][format!("org.opencontainers.image.{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("no label org.opencontainers.image.{name}"))
            .to_owned()
    };
    assert_eq!(label("title"), "linkmeter");
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("licenses"), "MIT OR Apache-2.0");
    assert!(!label("revision").is_empty());

    // One layer with the binary and nothing else, root-owned and executable.
    let rootfs = image.rootfs;
    let entries = walk(&rootfs);
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        ["usr", "usr/bin", "usr/bin/linkmeter"]
    );
    let binary = rootfs.join("usr/bin/linkmeter");
    let meta = fs::metadata(&binary).expect("the binary");
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);

    // Static: no dynamic loader, no shared library needed.
    let elf = fs::read(&binary).expect("read the binary");
    let (interpreter, needed) = dynamic_needs(&elf);
    assert_eq!(interpreter, None, "the binary needs a dynamic loader");
    assert!(needed.is_empty(), "the binary needs {needed:?}");

    // Small: the archive, the stored image (configuration and compressed layer) and the
    // unpacked files all within 15 MB.
    let archive_bytes = fs::metadata(&archive).expect("archive").len();
    let unpacked: u64 = entries.values().sum();
    println!(
        "image: archive {archive_bytes} bytes, manifest sizes {} bytes, unpacked {unpacked} bytes",
        image.stored_bytes
    );
    for (what, bytes) in [
        ("archive", archive_bytes),
        ("stored image", image.stored_bytes),
        ("unpacked root filesystem", unpacked),
    ] {
        assert!(
            bytes <= MAX_IMAGE_BYTES,
            "{what}: {bytes} bytes > {MAX_IMAGE_BYTES}"
        );
    }

    // Run it as the DaemonSet does, in the Cilium-like lab.
    let topo = CiliumNode::new("img");
    let bpffs = BpfFs::mount("img");
    let config_dir = work.0.join("configmap");
    fs::create_dir_all(&config_dir).expect("configmap dir");
    fs::copy(
        repo().join("deploy/base/config.toml"),
        config_dir.join("config.toml"),
    )
    .expect("copy config.toml");
    let mut args = daemonset_args();
    args.extend(["--listen".to_owned(), LISTEN.to_owned()]);
    let command: Vec<String> = entrypoint.into_iter().chain(args).collect();
    let daemon = ContainerLike::start(
        &topo.node,
        &rootfs,
        &strings(&run_config["Env"]),
        &config_dir,
        bpffs.path(),
        &command,
        &work.0.join("linkmeter.log"),
    );

    let [pod1, pod2] = &topo.pods;
    let [remote1, remote2] = &topo.remotes;
    let [overlay1, overlay2] = CiliumNode::REMOTE_OVERLAYS;
    let pod1_ip = CiliumNode::POD_IPS[0];
    for _ in 0..10 {
        udp_exchange(pod1, pod1_ip, remote1, overlay1, 10);
        udp_exchange(pod1, pod1_ip, remote2, overlay2, 10);
        udp_exchange(remote2, overlay2, pod1, pod1_ip, 10);
        udp_exchange(pod1, pod1_ip, pod2, CiliumNode::POD_IPS[1], 10);
    }
    let m = scrape(&topo.node);

    let route = m.routing();
    for (interface, backend, reason) in [
        ("lo", "none", "excluded"),
        ("cilium_vxlan", "ebpf", "ethtool_no_stats"),
        ("br0", "ebpf", "ethtool_no_stats"),
        ("cilium_host", "ethtool", "ethtool_stats"),
        ("lxc1111", "ethtool", "ethtool_stats"),
        ("eth1", "ethtool", "ethtool_stats"),
    ] {
        assert_eq!(
            route.get(interface),
            Some(&(backend.to_owned(), reason.to_owned())),
            "{interface}: {route:?}"
        );
    }
    // cilium_vxlan, counted by eBPF: 10 x 20 packets out, 10 x 10 in, as the kernel counts
    // them; 10 x 10 out to each remote node and in from the second.
    topo.assert_vxlan_counted(&m, 200, 100, 100.0);
    assert_eq!(
        m.value(
            "linkmeter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Pinned through the volume, as `pin = true` in config.toml asks.
    let pins = bpffs.path().join("linkmeter");
    assert!(
        fs::read_dir(&pins).is_ok_and(|mut d| d.next().is_some()),
        "nothing pinned under {}; log:\n{}",
        pins.display(),
        daemon.log_text()
    );
    let log = daemon.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(daemon.stop().success(), "{log}");
}

/// The static check is not vacuous: a dynamically linked program shows its loader and
/// libraries.
#[test]
fn a_dynamic_executable_shows_its_loader_and_libraries() {
    let sh = fs::read("/bin/sh").expect("read /bin/sh");
    let (interpreter, needed) = dynamic_needs(&sh);
    assert!(
        interpreter.is_some_and(|i| i.contains("ld-linux")),
        "/bin/sh names no loader"
    );
    assert!(!needed.is_empty(), "/bin/sh needs no library");
}

/// Waits while `cargo xtask test` is still building the archive in the background: it creates
/// `<archive>.building` first, renames the finished archive into place, writes
/// `<archive>.failed` (with the error) if the build fails, and removes `.building` last.
fn wait_for_archive(archive: &Path) {
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

/// A JSON array of strings as a vector.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The container args of `deploy/base/daemonset.yaml` (a one-line flow sequence of quoted
/// strings, which is JSON), after checking that it mounts the two volumes the test provides.
fn daemonset_args() -> Vec<String> {
    let manifest =
        fs::read_to_string(repo().join("deploy/base/daemonset.yaml")).expect("read daemonset.yaml");
    for mount in ["mountPath: /etc/linkmeter", "mountPath: /sys/fs/bpf"] {
        assert!(manifest.contains(mount), "daemonset.yaml has no {mount}");
    }
    let line = manifest
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("args:"))
        .expect("daemonset.yaml has container args");
    let args: Vec<String> = serde_json::from_str(line.trim()).expect("args: [\"...\", ...]");
    assert!(
        args.iter().any(|a| a == "/etc/linkmeter/config.toml"),
        "{args:?}"
    );
    args
}

/// An image unpacked from an OCI archive: its configuration and root filesystem.
struct OciImage {
    config: Value,
    rootfs: PathBuf,
    /// Configuration plus layers, as the manifest gives their sizes.
    stored_bytes: u64,
}

impl OciImage {
    /// Unpacks `archive` under `work`, checking the layout and every blob's digest.
    fn unpack(archive: &Path, work: &Path) -> Self {
        let layout = work.join("oci");
        fs::create_dir_all(&layout).expect("layout dir");
        tar(&["-x", "-f", path_str(archive), "-C", path_str(&layout)]);
        let layout_version: Value = read_json(&layout.join("oci-layout"));
        assert_eq!(layout_version["imageLayoutVersion"], "1.0.0");
        let index: Value = read_json(&layout.join("index.json"));
        let manifests = index["manifests"].as_array().expect("index manifests");
        assert_eq!(manifests.len(), 1, "{index}");
        let descriptor = &manifests[0];
        assert_eq!(
            descriptor["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        let manifest: Value =
            serde_json::from_slice(&blob(&layout, descriptor)).expect("manifest JSON");
        let config: Value =
            serde_json::from_slice(&blob(&layout, &manifest["config"])).expect("config JSON");
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 1, "one layer: {manifest}");
        let rootfs = work.join("rootfs");
        fs::create_dir_all(&rootfs).expect("rootfs dir");
        let layer = &layers[0];
        let media_type = layer["mediaType"].as_str().expect("layer media type");
        assert!(
            media_type.starts_with("application/vnd.oci.image.layer.v1.tar"),
            "{media_type}"
        );
        blob(&layout, layer);
        // GNU tar recognises the compression (gzip, zstd) itself.
        tar(&[
            "-x",
            "-p",
            "--numeric-owner",
            "-f",
            path_str(&blob_path(&layout, layer)),
            "-C",
            path_str(&rootfs),
        ]);
        let stored_bytes = [&manifest["config"], layer]
            .iter()
            .map(|d| d["size"].as_u64().expect("size"))
            .sum();
        Self {
            config,
            rootfs,
            stored_bytes,
        }
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
fn walk(root: &Path) -> BTreeMap<String, u64> {
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

/// What an ELF64 little-endian executable needs at run time: its `PT_INTERP` (the dynamic
/// loader) and the `DT_NEEDED` entries of its `PT_DYNAMIC` (a static-pie has the segment, for
/// its own relocations, but needs no library).
fn dynamic_needs(elf: &[u8]) -> (Option<String>, Vec<u64>) {
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
    assert_eq!(u16_at(0x12), 62, "not an x86-64 executable");
    let (phoff, phentsize, phnum) = (usize_at(0x20), usize::from(u16_at(0x36)), u16_at(0x38));
    let mut interpreter = None;
    let mut needed = Vec::new();
    for i in 0..usize::from(phnum) {
        let header = phoff + i * phentsize;
        let (offset, size) = (usize_at(header + 8), usize_at(header + 32));
        match u32_at(header) {
            PT_INTERP => {
                let path = bytes(offset, size);
                interpreter = Some(
                    String::from_utf8_lossy(path.strip_suffix(b"\0").unwrap_or(path)).into_owned(),
                );
            }
            PT_DYNAMIC => {
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry) {
                        0 => break,
                        DT_NEEDED => needed.push(u64_at(entry + 8)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (interpreter, needed)
}

/// The image's binary running as a container would: in `ns`, in a mount namespace of its own
/// where the root filesystem is read-only, `/proc` and `/sys` are mounted, the ConfigMap sits at
/// `/etc/linkmeter` (read-only) and a bpffs at `/sys/fs/bpf`; chrooted, with only the image's
/// environment. Killed on drop.
struct ContainerLike {
    child: Child,
    log: PathBuf,
}

/// Sets up the mounts (arguments: rootfs, ConfigMap dir, bpffs, then `env`'s arguments) and
/// replaces itself with `env -i <image env> chroot <rootfs> <command>`, so the daemon keeps the
/// pid and dies with its mounts.
const CONTAINER_SCRIPT: &str = r#"
root=$1 config=$2 bpffs=$3
shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount --bind "$bpffs" "$root/sys/fs/bpf"
mount --bind -o ro "$config" "$root/etc/linkmeter"
exec env -i "$@"
"#;

impl ContainerLike {
    fn start(
        ns: &NetNs,
        rootfs: &Path,
        env: &[String],
        config_dir: &Path,
        bpffs: &Path,
        command: &[String],
        log: &Path,
    ) -> Self {
        // Mount points, as a runtime creates them.
        for dir in ["proc", "sys", "etc/linkmeter"] {
            fs::create_dir_all(rootfs.join(dir)).expect("create a mount point");
        }
        let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chroot (coreutils)");
        let file = fs::File::create(log).expect("create the log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-euc", CONTAINER_SCRIPT, "sh"])
            .args([rootfs, config_dir, bpffs])
            .args(env)
            .arg(chroot)
            .arg(rootfs)
            .args(command)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the image's linkmeter");
        let mut daemon = Self {
            child,
            log: log.to_path_buf(),
        };
        eventually(
            "linkmeter from the image ready",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    panic!("exited with {status}: {}", daemon.log_text());
                }
                match http::get(ns, LISTEN, "/readyz", &[], &[]) {
                    Some(r) if r.status == 200 => Ok(()),
                    other => Err((other, daemon.log_text())),
                }
            },
        );
        daemon
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as the kubelet sends it; waits and returns the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.child.wait().expect("wait for linkmeter")
    }
}

impl Drop for ContainerLike {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lmt-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
