//! Unit tests of the floors check.

use super::*;

fn module(path: &str) -> Module {
    path.split("::")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn graph(files: &[(&str, &str)]) -> Graph {
    let sources: Vec<(Module, String)> = files
        .iter()
        .map(|(m, text)| (module(m), (*text).to_owned()))
        .collect();
    Graph::of(&sources)
}

#[test]
fn siblings_importing_each_other_are_a_circle_a_parent_and_its_child_are_not() {
    let sound = graph(&[
        ("", ""),
        ("a", "mod b; use self::b::X; pub struct Y;"),
        ("a::b", "use super::Y; pub struct X;"),
    ]);
    assert!(sound.circles().is_empty());
    let circle = graph(&[
        ("", ""),
        ("a", "mod b; mod c;"),
        ("a::b", "use super::c::X; pub struct Y;"),
        ("a::c", "use crate::a::b::Y; pub struct X;"),
    ]);
    assert_eq!(circle.circles(), ["a::b -> a::c -> a::b"]);
}

#[test]
fn an_import_from_a_higher_floor_is_named() {
    let g = graph(&[
        ("", ""),
        ("node", "pub struct Node;"),
        ("discovery", "use crate::node::Node;"),
        ("web", "use crate::discovery::X;"),
    ]);
    assert_eq!(g.upward(), ["discovery (floor 1) imports node (floor 4)"]);
    let unplaced = graph(&[("", ""), ("utils", "use crate::node::X;"), ("node", "")]);
    assert!(unplaced.upward()[0].contains("module utils has no floor"));
}

/// The modules a crate with `discovery` (floor 1) written as `form` and `node` (floor 4).
fn discovery_as(form: &str) -> Graph {
    graph(&[
        ("", "pub mod node; pub mod discovery;"),
        ("node", "pub struct Node; pub fn f() {}"),
        ("discovery", form),
    ])
}

#[test]
fn an_upward_import_is_named_in_every_form_rust_allows() {
    for form in [
        "use crate::{node::{self, Node}};",
        "pub use crate::node::Node;",
        "pub(crate) use crate::{node as n};",
        "macro_rules! m { () => { $crate::node::f() } }",
        "fn g() { tracing::info!(\"{:?}\", crate::node::f()); }",
        "use super::node::Node;",
        "mod inner { use super::super::node::Node; }",
        "use crate::node::*;",
        "use {crate::node::Node};",
        "use crate :: node :: Node;",
        "fn c() { crate::\n    node::f() }",
        "use\ncrate::{node::f as ff};",
        "fn d() -> crate::r#node::Node { todo!() }",
        "use crate as root; fn a() -> root::node::Node { todo!() }",
        "extern crate self as collector; fn e() -> collector::node::Node { todo!() }",
        "const ANY: &str = \"*/*\";\nuse crate::node::Node;",
    ] {
        assert_eq!(
            discovery_as(form).upward(),
            ["discovery (floor 1) imports node (floor 4)"],
            "{form}"
        );
    }
}

#[test]
fn an_import_re_exported_elsewhere_is_followed_to_where_the_item_is() {
    // lib.rs re-exports node's item: `crate::Node` is node's.
    let g = graph(&[
        (
            "",
            "pub mod node; pub mod discovery; pub(crate) use crate::node::Node;",
        ),
        ("node", "pub struct Node;"),
        ("discovery", "use crate::Node;"),
    ]);
    assert_eq!(g.upward(), ["discovery (floor 1) imports node (floor 4)"]);
}

#[test]
fn modules_of_one_floor_importing_each_other_through_submodules_are_a_circle() {
    let g = graph(&[
        ("", "pub mod policy; pub mod metrics;"),
        ("metrics", "pub mod names; pub mod families;"),
        ("metrics::names", "pub const X: &str = \"x\";"),
        ("metrics::families", "use crate::policy::Backend;"),
        (
            "policy",
            "use crate::metrics::names::X; pub enum Backend {}",
        ),
    ]);
    assert_eq!(g.circles(), ["between units: metrics -> policy -> metrics"]);
}
