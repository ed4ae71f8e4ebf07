//! A private BPF filesystem for a test: mounted on a fresh directory, unmounted (which releases
//! every pin in it) and removed on drop. The host's `/sys/fs/bpf` is never touched.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::netns::run;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bpffs mounted for one test.
#[derive(Debug)]
pub struct BpfFs {
    dir: PathBuf,
}

impl BpfFs {
    /// Mounts a new bpffs on a directory named after the process and `tag`.
    pub fn mount(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lmt-bpffs-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the bpffs mount point");
        let path = dir.to_str().expect("utf-8 temp dir");
        run("mount", &["-t", "bpf", "bpf", path]);
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A path inside it, as a string for command lines.
    pub fn join(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("utf-8").to_owned()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg(&self.dir).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("cannot unmount {}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
