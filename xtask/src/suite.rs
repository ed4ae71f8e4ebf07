//! `cargo xtask test`: the whole suite, as CI runs it (`.ci/run`).

use anyhow::bail;

use crate::{
    floors, fuzz, image,
    prereq::{
        Tool, cmd, ensure_debian_tools, ensure_ebpf_toolchain, ensure_python_env, is_root, run,
    },
    workspace_root,
};

/// The Debian packages the test suite uses, by the command that shows they are installed.
pub(crate) const TEST_TOOLS: &[Tool] = &[
    Tool {
        command: "ip",
        package: "iproute2",
        why: "creating network namespaces, veth and vxlan devices in the tests",
    },
    Tool {
        command: "tc",
        package: "iproute2",
        why: "inspecting legacy tc filters in the tests",
    },
    Tool {
        command: "ethtool",
        package: "ethtool",
        why: "changing a veth's queue count (`ethtool -L`) in the ethtool tests",
    },
    Tool {
        command: "nft",
        package: "nftables",
        why: "an nftables drop rule whose drops are counted by reason in the tests",
    },
    Tool {
        command: "bpftool",
        package: "bpftool",
        why: "reading the kernel's drop reason names from its BTF in the tests",
    },
    Tool {
        command: "setpriv",
        package: "util-linux",
        why: "running linkmeter without BPF capabilities in the tests",
    },
    Tool {
        command: "kubectl",
        package: "kubernetes-client",
        why: "rendering the kustomize manifests (`kubectl kustomize`)",
    },
    Tool {
        command: "promtool",
        package: "prometheus",
        why: "checking /metrics with `promtool check metrics`",
    },
    Tool {
        command: "prometheus",
        package: "prometheus",
        why: "a real Prometheus server scraping linkmeter in the tests",
    },
];

/// What the image test needs besides [`TEST_TOOLS`].
const IMAGE_TEST_TOOLS: &[Tool] = &[Tool {
    command: "qemu-aarch64-static",
    package: "qemu-user-static",
    why: "running the arm64 image's binary in the image test",
}];

/// The tests of `tests/tests/image.rs` that wait for the image `cargo xtask test` builds in the
/// background.
const IMAGE_TESTS: [&str; 2] = [
    "the_amd64_image_counts_a_cilium_like_node_from_its_own_rootfs",
    "the_arm64_image_binary_answers_and_reads_link_statistics_under_qemu",
];

/// `cargo xtask test`: lints, the floors, every test (kernel tests required), the image tests
/// last, and a fuzz smoke run.
pub(crate) fn test(no_lint: bool, extra: &[String]) -> anyhow::Result<()> {
    ensure_ebpf_toolchain()?;
    ensure_debian_tools(TEST_TOOLS)?;
    ensure_debian_tools(IMAGE_TEST_TOOLS)?;
    if !is_root() {
        bail!(
            "the test suite creates network namespaces and loads eBPF programs, so it needs root: \
             run `sudo -E cargo xtask test`"
        );
    }
    let root = workspace_root();
    let python = ensure_python_env(&root)?;
    // The image test's OCI archive, built in the background (nice'd) from here on, while the
    // lints and the tests run: its static release build is the longest single step of the suite.
    let image = image::spawn_for_tests(&root)?;
    if !no_lint {
        floors::check(&root)?;
        run(cmd("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]))?;
        run(cmd("cargo")
            .current_dir(&root)
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "collector-ebpf",
                "--all-targets",
            ])
            .args(["--", "-D", "warnings"]))?;
        run(cmd("rustup")
            .current_dir(&root)
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--package",
                "collector-ebpf",
                "--bins",
            ])
            .args([
                "-Z",
                "build-std=core",
                "--target",
                "bpfel-unknown-none",
                "--release",
            ])
            .args(["--", "-D", "warnings"]))?;
    }
    // Kernel tests may skip only where a kernel feature is missing; under `cargo xtask test`
    // a skip is a failure, so a green run always means the eBPF tests ran for real.
    let cargo_test = |args: &[&str], extra: &[String]| {
        run(cmd("cargo")
            .current_dir(&root)
            .arg("test")
            .args(args)
            .args(extra)
            .env("LINKMETER_REQUIRE_KERNEL_TESTS", "1")
            .env("LINKMETER_PYTHON", &python)
            .env("LINKMETER_IMAGE_ARCHIVE", image.archive()))
    };
    let workspace = ["--workspace", "--exclude", "collector-ebpf"];
    let tests = if extra.is_empty() {
        // The tests that run the image's binaries wait for the background build: they run last,
        // so that the build overlaps every other test instead of holding the suite up.
        let mut skip = vec!["--".to_owned()];
        for test in IMAGE_TESTS {
            skip.extend(["--skip".to_owned(), test.to_owned()]);
        }
        cargo_test(&workspace, &skip).and_then(|()| {
            // Exactly the cargo arguments above, so nothing is rebuilt (a narrower selection
            // such as `--test image` unifies features differently and compiles integration-tests
            // and two of its dependencies again). Every test binary starts; the filter leaves
            // only the image tests to run.
            let only: Vec<String> = ["--", "--exact"]
                .into_iter()
                .chain(IMAGE_TESTS)
                .map(str::to_owned)
                .collect();
            cargo_test(&workspace, &only)
        })
    } else {
        cargo_test(&workspace, extra)
    };
    let built = image.finish();
    tests.and(built)?;
    // A few seconds of every fuzz target on its seeds (nightly, libFuzzer).
    fuzz::smoke(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_tests_run_last_exist() {
        let image_tests = std::fs::read_to_string(workspace_root().join("tests/tests/image.rs"))
            .expect("read tests/tests/image.rs");
        for test in IMAGE_TESTS {
            assert!(
                image_tests.contains(&format!("fn {test}()")),
                "tests/tests/image.rs has no test {test}"
            );
        }
    }
}
