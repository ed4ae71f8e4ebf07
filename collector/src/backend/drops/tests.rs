//! The drop-reason layout and names from BTF: the blobs of `btf::tests` are not reused here;
//! these read the running kernel's BTF, the one the program is loaded with.

use super::*;

#[test]
fn names_are_the_kernels_without_the_prefix_and_unknown_values_are_numbers() {
    let names = ReasonNames::fixture(&[(3, "no_socket"), (2 << 16 | 1, "ovs_drop_last_action")]);
    assert_eq!(names.name(3), "no_socket");
    assert_eq!(names.name(999), "999");
    assert_eq!(names.name(2 << 16 | 1), "ovs_drop_last_action");
    assert_eq!(names.name(2 << 16 | 7), "subsys_2_7");
}

#[test]
fn the_running_kernels_layout_and_names() {
    let dir = Path::new(BTF_DIR);
    if !dir.join("vmlinux").exists() {
        println!("skipped: this kernel publishes no BTF under {BTF_DIR}");
        return;
    }
    let layout = Layout::read(dir).expect("the layout of this kernel");
    assert_eq!(layout.names.not_dropped, Some(0));
    assert_eq!(layout.names.consumed, Some(1));
    let all = layout.names.all();
    assert!(all.values().any(|n| *n == "no_socket"), "{all:?}");
    assert!(all.values().any(|n| *n == "netfilter_drop"), "{all:?}");
    assert!(
        !all.values()
            .any(|n| n.contains("subsys_mask") || *n == "max")
    );
    assert!(all.values().all(|n| {
        n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }));
}

#[test]
fn the_readmes_common_reasons_are_named_by_this_kernel() {
    let dir = Path::new(BTF_DIR);
    if !dir.join("vmlinux").exists() {
        println!("skipped: this kernel publishes no BTF under {BTF_DIR}");
        return;
    }
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("The reasons seen most often")
        .nth(1)
        .and_then(|s| s.split("\n\n").nth(1))
        .expect("the README's table of reasons");
    let layout = Layout::read(dir).expect("the layout of this kernel");
    let all = layout.names.all();
    let mut named = 0;
    for row in section.lines().skip(2) {
        let first = row.split('|').nth(1).expect("a first cell");
        for name in first.split('`').skip(1).step_by(2) {
            assert!(
                all.values().any(|n| *n == name),
                "the README names {name}, which this kernel's BTF does not"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "{named} reasons read from the README");
}
