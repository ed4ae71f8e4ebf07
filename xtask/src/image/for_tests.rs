//! The image build of `cargo xtask test`: in the background, in a private store, saved as an
//! OCI archive for the image test.

use std::{
    fs,
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use anyhow::{Context as _, bail};

use super::{
    BUILDAH, Out, Store, TEST_TAG, build_index,
    platform::{PLATFORMS, Platform},
    remove_store, save_archive,
};
use crate::prereq::{ensure_debian_tools, ensure_ebpf_toolchain};

/// The image build of `cargo xtask test`, running in the background while the tests are
/// compiled and run: [`spawn_for_tests`].
pub(crate) struct TestImage {
    archive: PathBuf,
    log: PathBuf,
    build: JoinHandle<anyhow::Result<()>>,
}

impl TestImage {
    /// Where the OCI archive will be, for the image test (env `LINKMETER_IMAGE_ARCHIVE`).
    pub(crate) fn archive(&self) -> &Path {
        &self.archive
    }

    /// Waits for the build; its error, with the log's path, if it failed.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self.build.join() {
            Ok(result) => result.with_context(|| {
                format!(
                    "building the image for the tests failed (log: {})",
                    self.log.display()
                )
            }),
            Err(_) => bail!("the image build for the tests panicked"),
        }
    }
}

/// For `cargo xtask test`: starts building the image in the background and returns at once.
///
/// The build (the static release binaries of every platform, `nice`d, then buildah) writes its output to
/// `target/image/test-build.log`, builds in a private `vfs` store under `target/image/` (the
/// user's containers storage is not touched) and saves the OCI archive
/// `target/image/linkmeter-test.oci.tar` for the image test (`tests/tests/image.rs`), which is
/// given its path in `LINKMETER_IMAGE_ARCHIVE` and waits for it. The archive appears whole
/// (renamed into place); `<archive>.building` exists while the build runs and
/// `<archive>.failed` (with the error) if it fails, so the test waits only as long as there is
/// something to wait for.
pub(crate) fn spawn_for_tests(root: &Path) -> anyhow::Result<TestImage> {
    ensure_ebpf_toolchain()?;
    ensure_debian_tools(BUILDAH)?;
    for platform in PLATFORMS {
        platform.ensure_toolchain()?;
    }
    let dir = root.join("target/image");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let archive = dir.join("linkmeter-test.oci.tar");
    let [building, failed] = [".building", ".failed"].map(|suffix| {
        let mut name = archive.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    });
    for stale in [&archive, &failed] {
        if stale.exists() {
            fs::remove_file(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    fs::write(&building, b"").with_context(|| format!("creating {}", building.display()))?;
    let log = dir.join("test-build.log");
    let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    eprintln!(
        "xtask: building the image for the image test in the background (log: {})",
        log.display()
    );
    let (root, target) = (root.to_path_buf(), archive.clone());
    let build = std::thread::spawn(move || {
        let out = Out {
            log: Some(file),
            nice: true,
        };
        let result = build_test_archive(&root, &target, &out);
        if let Err(err) = &result {
            out.say(format_args!("xtask: error: {err:#}"));
            let _ = fs::write(&failed, format!("{err:#}\n"));
        }
        let _ = fs::remove_file(&building);
        result
    });
    Ok(TestImage {
        archive,
        log,
        build,
    })
}

/// Builds the test image index (every platform) in a private store and saves it at `archive`,
/// then drops the store.
fn build_test_archive(root: &Path, archive: &Path, out: &Out) -> anyhow::Result<()> {
    let dir = root.join("target/image/test-store");
    let store = Store::Private(dir.clone());
    remove_store(&store)?;
    let platforms: Vec<&Platform> = PLATFORMS.iter().collect();
    build_index(root, &store, TEST_TAG, &platforms, &dir, out)?;
    let mut partial = archive.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    save_archive(&store, TEST_TAG, &partial, out)?;
    fs::rename(&partial, archive)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    remove_store(&store)
}
