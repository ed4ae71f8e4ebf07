//! `cargo xtask image`: the OCI image index, `deploy/Containerfile` built by buildah around a
//! static linkmeter binary per platform (linux/amd64, linux/arm64), the images gathered in one
//! manifest list under the tag. Each image is `FROM scratch`: no base image is pulled and nothing
//! runs in a container while it is built (buildah only copies the binary and writes the
//! configuration), so an arm64 image is built on an amd64 machine without emulation.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};

use crate::prereq::{Tool, cmd, ensure_debian_tools, ensure_ebpf_toolchain, run};

mod binary;
mod for_tests;
mod platform;

use self::binary::build_static_binary;
use self::platform::Platform;
pub(crate) use self::{for_tests::spawn_for_tests, platform::parse as parse_platforms};

/// The largest image allowed (issue 12): 15 MB per platform, configuration and layer as stored.
pub(crate) const MAX_IMAGE_BYTES: u64 = 15_000_000;

/// The tag `cargo xtask test` builds, in a store of its own (see [`spawn_for_tests`]).
pub(super) const TEST_TAG: &str = "localhost/linkmeter:test";

pub(super) const BUILDAH: &[Tool] = &[Tool {
    command: "buildah",
    package: "buildah",
    why: "building the OCI image from scratch (`buildah build`, `buildah push`)",
}];

/// Where buildah keeps images: the user's default containers storage (so that `buildah push`,
/// `podman push` and `skopeo` see the image), or a private one under `target/`.
pub(super) enum Store {
    Default,
    /// `--root`/`--runroot` under this directory, with the `vfs` driver (works everywhere,
    /// also where overlayfs cannot be mounted, e.g. inside a container).
    Private(PathBuf),
}

impl Store {
    /// `buildah` with this store's global options.
    pub(super) fn buildah(&self) -> Command {
        let mut buildah = cmd("buildah");
        if let Self::Private(dir) = self {
            buildah
                .arg("--root")
                .arg(dir.join("root"))
                .arg("--runroot")
                .arg(dir.join("run"))
                .args(["--storage-driver", "vfs"]);
        }
        buildah
    }
}

/// Builds the image index `tag` for `platforms` into the default containers storage, and saves
/// it as an OCI archive at `save` if given.
pub(crate) fn build(
    root: &Path,
    tag: &str,
    platforms: &[&Platform],
    save: Option<&Path>,
) -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    ensure_debian_tools(BUILDAH)?;
    for platform in platforms {
        platform.ensure_toolchain()?;
    }
    let (store, out) = (Store::Default, Out::terminal());
    build_index(
        root,
        &store,
        tag,
        platforms,
        &root.join("target/image"),
        &out,
    )?;
    if let Some(path) = save {
        save_archive(&store, tag, path, &out)?;
    }
    out.say(format_args!(
        "xtask: push it with `buildah manifest push --all --format oci {tag} \
         docker://<registry>/linkmeter:<version>` (see the Kubernetes section of README.md)"
    ));
    Ok(())
}

/// Where a build's messages and its commands' output go: the terminal, or a log file (for the
/// background build of the tests, whose commands also run `nice`d).
pub(super) struct Out {
    log: Option<fs::File>,
    nice: bool,
}

impl Out {
    const fn terminal() -> Self {
        Self {
            log: None,
            nice: false,
        }
    }

    pub(super) fn say(&self, message: std::fmt::Arguments<'_>) {
        match &self.log {
            Some(file) => {
                let mut file: &fs::File = file;
                let _ = writeln!(file, "{message}");
            }
            None => println!("{message}"),
        }
    }

    /// `cargo`, behind `nice` for a background build.
    pub(super) fn cargo(&self) -> Command {
        if self.nice {
            let mut nice = cmd("nice");
            nice.args(["-n", "19", "cargo"]);
            nice
        } else {
            cmd("cargo")
        }
    }

    /// Runs `command` with its output here.
    pub(super) fn run(&self, command: &mut Command) -> anyhow::Result<()> {
        if let Some(file) = &self.log {
            command
                .stdout(file.try_clone().context("duplicating the log file")?)
                .stderr(file.try_clone().context("duplicating the log file")?);
        }
        run(command)
    }
}

/// Deletes a private store (the `vfs` driver keeps plain directories, nothing is mounted).
pub(super) fn remove_store(store: &Store) -> anyhow::Result<()> {
    if let Store::Private(dir) = store
        && dir.exists()
    {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Builds the image index `tag` in `store`: a static binary per platform into the build
/// context `<dir>/context` (`linkmeter-<arch>`, which the Containerfile picks by `TARGETARCH`),
/// then an image per platform, gathered in a manifest list named `tag` (whatever `tag` named
/// before is removed first). Prints and checks each image's size. The ids of the last build are
/// kept in `<dir>/image-<arch>.iid`, so a rebuild removes the images it replaces.
pub(super) fn build_index(
    root: &Path,
    store: &Store,
    tag: &str,
    platforms: &[&Platform],
    dir: &Path,
    out: &Out,
) -> anyhow::Result<()> {
    let context = dir.join("context");
    let mut binaries = Vec::new();
    for platform in platforms {
        binaries.push(build_static_binary(root, platform, out)?);
    }
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("removing {}", context.display()))?;
    }
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    for (platform, binary) in platforms.iter().zip(&binaries) {
        fs::copy(binary, context.join(format!("linkmeter-{}", platform.arch)))
            .with_context(|| format!("copying {} into the build context", binary.display()))?;
    }

    // A list or an image of that name (an older single-platform build) is replaced.
    for remove in [&["manifest", "rm"][..], &["rmi"][..]] {
        let _ = store.buildah().args(remove).arg(tag).output();
    }
    let (revision, timestamp) = git_revision(root);
    for (platform, binary) in platforms.iter().zip(&binaries) {
        let iid = dir.join(format!("image-{}.iid", platform.arch));
        let previous = fs::read_to_string(&iid).ok();
        let mut build = store.buildah();
        build
            .args(["build", "--quiet", "--format", "oci", "--layers=false"])
            // Only linkmeter's labels, so the same sources give the same image whatever buildah.
            .arg("--identity-label=false")
            .arg("--file")
            .arg(root.join("deploy/Containerfile"))
            .args(["--platform", &platform.name()])
            .args(["--build-arg", &format!("TARGETARCH={}", platform.arch)])
            .args(["--manifest", tag])
            .arg("--iidfile")
            .arg(&iid)
            .args([
                "--build-arg",
                &format!("VERSION={}", env!("CARGO_PKG_VERSION")),
            ])
            .args(["--build-arg", &format!("REVISION={revision}")]);
        if let Some(seconds) = timestamp {
            // The commit's time as the creation time: rebuilding a commit gives the same ids.
            build.args(["--timestamp", &seconds.to_string()]);
        }
        build.arg(&context);
        out.run(&mut build)?;

        let id = fs::read_to_string(&iid)
            .with_context(|| format!("buildah wrote no image id to {}", iid.display()))?;
        let id = id.trim();
        if let Some(old) = previous.as_deref().map(str::trim)
            && old != id
        {
            // The image this platform had before is now unnamed; remove it unless something
            // uses it.
            let _ = store.buildah().args(["rmi", old]).output();
        }
        let id = id.strip_prefix("sha256:").unwrap_or(id);
        let size = image_size(store, id)?;
        out.say(format_args!(
            "xtask: image {} ({}): {} bytes ({:.1} MB; limit {:.0} MB), binary {} bytes",
            platform.name(),
            &id[..12.min(id.len())],
            size,
            mb(size),
            mb(MAX_IMAGE_BYTES),
            fs::metadata(binary)?.len()
        ));
        ensure!(
            size <= MAX_IMAGE_BYTES,
            "the {} image is {size} bytes, more than the {MAX_IMAGE_BYTES} allowed",
            platform.name()
        );
    }
    out.say(format_args!(
        "xtask: image index {tag}: {}",
        platforms
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// `buildah inspect --type image --format <format> <tag>` in `store`: its output, or its error.
fn inspect(store: &Store, tag: &str, format: &str) -> anyhow::Result<String> {
    let output = store
        .buildah()
        .args(["inspect", "--type", "image", "--format", format, tag])
        .output()
        .context("running buildah inspect")?;
    ensure!(
        output.status.success(),
        "buildah inspect {tag} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The size of the image `id` as stored: its configuration plus its layers, from the manifest.
fn image_size(store: &Store, id: &str) -> anyhow::Result<u64> {
    manifest_size(&inspect(store, id, "{{.Manifest}}")?)
}

/// The sum of the `"size"` fields of an OCI image manifest (the configuration's and each
/// layer's; the manifest has no others).
fn manifest_size(manifest: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut found = 0;
    for part in manifest.split("\"size\":").skip(1) {
        let digits: String = part
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        total += digits
            .parse::<u64>()
            .with_context(|| format!("no size in the manifest near {part:.40}"))?;
        found += 1;
    }
    ensure!(
        found >= 2,
        "the manifest names no configuration and layer sizes: {manifest}"
    );
    Ok(total)
}

/// Writes the image index `tag` with all its images as an OCI archive at `path` (named `tag`
/// inside, so `skopeo copy --all oci-archive:<path> docker://...` knows it).
pub(super) fn save_archive(store: &Store, tag: &str, path: &Path, out: &Out) -> anyhow::Result<()> {
    let text = path.to_str().context("the archive path is not UTF-8")?;
    ensure!(
        !text.contains(':'),
        "the archive path {text} contains ':', which buildah's oci-archive: reference cannot take"
    );
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?;
    }
    out.run(store.buildah().args([
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        "--quiet",
        tag,
        &format!("oci-archive:{text}:{tag}"),
    ]))?;
    let size = fs::metadata(path)?.len();
    out.say(format_args!(
        "xtask: OCI archive {}: {size} bytes ({:.1} MB)",
        path.display(),
        mb(size)
    ));
    Ok(())
}

/// The commit the image is built from (`-dirty` when the tree has changes) and its time.
fn git_revision(root: &Path) -> (String, Option<u64>) {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return ("unknown".to_owned(), None);
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let time = git(&["log", "-1", "--format=%ct"]).and_then(|t| t.parse().ok());
    (
        if dirty {
            format!("{commit}-dirty")
        } else {
            commit
        },
        time,
    )
}

/// Bytes as decimal megabytes, for messages.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sizes_are_summed() {
        let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":612},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:bb","size": 9000000}]}"#;
        assert_eq!(manifest_size(manifest).unwrap(), 9_000_612);
        assert!(manifest_size("{}").is_err());
    }
}
