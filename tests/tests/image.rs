//! The OCI image index as `cargo xtask image --save` writes it (`LINKMETER_IMAGE_ARCHIVE`;
//! `cargo xtask test` builds it): a valid OCI layout whose blobs match their digests, an image
//! index with a linux/amd64 and a linux/arm64 image, each one layer holding only the static
//! `linkmeter` of its architecture, at most 15 MB.
//!
//! The amd64 binary runs from the image's own root filesystem the way the DaemonSet runs it (the
//! entrypoint with the manifest's args, the `config.toml` ConfigMap at `/etc/linkmeter`, a bpffs
//! at `/sys/fs/bpf`, a read-only root, the image's environment only; `ContainerLike`), routes a
//! Cilium-like node and counts `cilium_vxlan` exactly.
//!
//! The arm64 binary runs under qemu-user (Debian's `qemu-aarch64-static`) for what qemu can do:
//! `--version`, `check --help`, the shipped configuration accepted and a bad one refused, and one
//! `dump` of kernel link statistics over rtnetlink with exact counts. qemu-user implements neither
//! the `bpf` system call nor the ethtool ioctl (both answer ENOSYS), so eBPF and ethtool on arm64
//! are not exercised here (the README says what is verified where).

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use integration_tests::{
    bpffs::BpfFs,
    container::ContainerLike,
    daemon::{LISTEN, Metrics, scrape},
    kernel_tests_enabled,
    netns::NetNs,
    oci::{OciImage, elf_needs, unpack_index, wait_for_archive, walk},
    skip,
    topology::{A_IP, B_IP, CiliumNode, VethPair},
    traffic::udp_exchange,
};
use serde_json::Value;

/// The size limit of each image of the index (issue 12).
const MAX_IMAGE_BYTES: u64 = 15_000_000;

/// The platforms of the index, in its order, with their binaries' ELF machine.
const PLATFORMS: [(&str, u16); 2] = [("amd64", 62), ("arm64", 183)];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `arch` image of the archive `cargo xtask test` builds, once built, after checking the
/// whole index; unpacked in a temporary directory (`tag`) that goes with the returned guard.
/// `None` (with the reason printed) when there is none to test.
fn unpacked_image(tag: &str, arch: &str) -> Option<(TempDir, OciImage)> {
    if !kernel_tests_enabled() {
        return None;
    }
    let Some(archive) = std::env::var_os("LINKMETER_IMAGE_ARCHIVE") else {
        skip(
            "no image: LINKMETER_IMAGE_ARCHIVE is not set (`cargo xtask test` builds the image \
             and sets it; by hand: `cargo xtask image --save target/image/linkmeter.oci.tar`, then \
             LINKMETER_IMAGE_ARCHIVE=target/image/linkmeter.oci.tar)",
        );
        return None;
    };
    // A relative path is taken from the workspace root (`cargo test` runs tests in tests/).
    let archive = repo().join(archive);
    wait_for_archive(&archive);
    let work = TempDir::new(tag);
    let images = unpack_index(&archive, &work.0);
    assert_eq!(
        images.iter().map(|i| i.arch.as_str()).collect::<Vec<_>>(),
        PLATFORMS.map(|(arch, _)| arch),
        "the index's platforms"
    );
    for image in &images {
        check_image(&archive, image);
    }
    let image = images.into_iter().find(|i| i.arch == arch)?;
    Some((work, image))
}

/// What every image of the index must be: linkmeter's configuration, one layer holding only a
/// static root-owned `linkmeter` of the image's architecture, within the size limit.
fn check_image(archive: &Path, image: &OciImage) {
    let run_config = &image.config["config"];
    assert_eq!(strings(&run_config["Entrypoint"]), ["/usr/bin/linkmeter"]);
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
    let entries = walk(&image.rootfs);
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        ["usr", "usr/bin", "usr/bin/linkmeter"]
    );
    let binary = image.rootfs.join("usr/bin/linkmeter");
    let meta = fs::metadata(&binary).expect("the binary");
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);

    // Of the image's architecture, and static: no dynamic loader, no shared library needed.
    let needs = elf_needs(&fs::read(&binary).expect("read the binary"));
    let machine = PLATFORMS
        .iter()
        .find(|(arch, _)| *arch == image.arch)
        .map(|(_, machine)| *machine);
    assert_eq!(Some(needs.machine), machine, "{}: ELF machine", image.arch);
    assert_eq!(needs.interpreter, None, "the binary needs a dynamic loader");
    assert!(
        needs.needed.is_empty(),
        "the binary needs {:?}",
        needs.needed
    );

    // Small: the stored image (configuration and compressed layer) and the unpacked files each
    // within 15 MB, and the archive of both images within twice that.
    let archive_bytes = fs::metadata(archive).expect("archive").len();
    let unpacked: u64 = entries.values().sum();
    println!(
        "image {}: archive (all platforms) {archive_bytes} bytes, manifest sizes {} bytes, \
         unpacked {unpacked} bytes",
        image.arch, image.stored_bytes
    );
    for (what, bytes, limit) in [
        (
            "archive",
            archive_bytes,
            PLATFORMS.len() as u64 * MAX_IMAGE_BYTES,
        ),
        ("stored image", image.stored_bytes, MAX_IMAGE_BYTES),
        ("unpacked root filesystem", unpacked, MAX_IMAGE_BYTES),
    ] {
        assert!(
            bytes <= limit,
            "{}: {what}: {bytes} bytes > {limit}",
            image.arch
        );
    }
}

#[test]
fn the_amd64_image_counts_a_cilium_like_node_from_its_own_rootfs() {
    let Some((work, image)) = unpacked_image("image", "amd64") else {
        return;
    };
    let rootfs = &image.rootfs;
    let run_config = &image.config["config"];
    let entrypoint = strings(&run_config["Entrypoint"]);

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
        rootfs,
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
    let needs = elf_needs(&sh);
    assert!(
        needs.interpreter.is_some_and(|i| i.contains("ld-linux")),
        "/bin/sh names no loader"
    );
    assert!(!needs.needed.is_empty(), "/bin/sh needs no library");
}

/// The arm64 image's binary under qemu-user: what it says, the configuration it accepts and
/// refuses, and one collection of this namespace's kernel link statistics.
#[test]
fn the_arm64_image_binary_answers_and_reads_link_statistics_under_qemu() {
    let Some((work, image)) = unpacked_image("image-arm64", "arm64") else {
        return;
    };
    let binary = image.rootfs.join("usr/bin/linkmeter");
    let qemu = |ns: Option<&NetNs>, args: &[&str]| {
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), "qemu-aarch64-static"]);
                c
            }
            None => Command::new("qemu-aarch64-static"),
        };
        let out = command.arg(&binary).args(args).env_clear().output().expect(
            "qemu-aarch64-static (Debian qemu-user-static; `cargo xtask test` installs it)",
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, _) = qemu(None, &["--version"]);
    assert_eq!(
        (code, stdout.trim()),
        (
            Some(0),
            format!("linkmeter {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
    let (code, stdout, _) = qemu(None, &["check", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Usage: linkmeter check"), "{stdout}");
    let bad = work.0.join("bad.toml");
    fs::write(&bad, "max_interfaces = \"many\"\n").expect("write bad.toml");
    let (code, _, stderr) = qemu(None, &["dump", "--config", bad.to_str().expect("UTF-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("max_interfaces"),
        "{stderr}"
    );

    // One dump of a namespace with a veth pair: 10 datagrams out of `va`, 10 back (permanent
    // neighbour entries, no IPv6: nothing else crosses it). ethtool answers ENOSYS under qemu,
    // so the veth is measured by kernel link statistics, exactly as the kernel counts it.
    let pair = VethPair::new("imq");
    udp_exchange(&pair.a, A_IP, &pair.b, B_IP, 10);
    udp_exchange(&pair.b, B_IP, &pair.a, A_IP, 10);
    let shipped = repo().join("deploy/base/config.toml");
    let (code, stdout, stderr) = qemu(
        Some(&pair.a),
        &["dump", "--config", shipped.to_str().expect("UTF-8")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let m = Metrics(stdout);
    assert_eq!(
        m.routing().get("va"),
        Some(&("netdev".to_owned(), "ethtool_error".to_owned())),
        "{}",
        m.0
    );
    for direction in ["rx", "tx"] {
        let kernel: f64 = pair
            .a
            .exec(&[
                "cat",
                &format!("/sys/class/net/va/statistics/{direction}_packets"),
            ])
            .trim()
            .parse()
            .expect("a packet count");
        let labels = [("interface", "va"), ("direction", direction)];
        assert_eq!(kernel, 10.0, "{direction}: the kernel's count");
        assert_eq!(
            m.value("linkmeter_interface_packets_total", &labels),
            Some(kernel),
            "{direction}"
        );
    }
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
