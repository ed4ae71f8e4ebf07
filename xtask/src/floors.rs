//! The floors of the daemon, checked: the modules of `collector/src` may import only from their
//! own floor or the floors below, and no modules may import each other in a circle. Run by
//! `cargo xtask test` (and alone as `cargo xtask floors`); `docs/architecture.md` draws them.
//!
//! An import is any path that starts with `crate::`, `super::` or `self::`, in a `use` or in
//! the code. It names the deepest module of the path, and the module holding it depends on that
//! one. A module that declares a module inside it (its own children) is not said to depend on
//! them: a circle needs modules that do not contain each other.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// The floors, ground up: each top-level module of `collector/src` and its floor.
const FLOORS: &[(&str, u8)] = &[
    ("discovery", 1),
    ("filter", 1),
    ("backend", 2),
    ("policy", 3),
    ("metrics", 3),
    ("node", 4),
    ("web", 5),
    ("http", 5),
    ("daemon", 6),
    ("config", 6),
    ("cli", 7),
    ("fuzzing", 7),
];

/// A module: its path from the crate root (empty for the root).
type Module = Vec<String>;

/// The module graph of a crate's sources.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// Every module, with the modules it imports from (neither itself nor its descendants).
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (`lib.rs` is the root; `main.rs` is another crate).
    pub(crate) fn read(src: &Path) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        collect_files(src, src, &mut files)?;
        let modules: BTreeSet<Module> = files.keys().cloned().collect();
        let mut graph = Self::default();
        for (module, path) in &files {
            let text =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            graph.add(module, &modules, &text);
        }
        Ok(graph)
    }

    /// Adds `module`, whose source is `text`, and its imports among `modules`.
    fn add(&mut self, module: &Module, modules: &BTreeSet<Module>, text: &str) {
        let targets: BTreeSet<Module> = paths(&strip_comments(text))
            .iter()
            .filter_map(|path| resolve(module, path, modules))
            .filter(|target| !target.starts_with(module))
            .collect();
        self.edges
            .entry(module.clone())
            .or_default()
            .extend(targets);
    }

    /// The circles: groups of modules each reachable from every other, as `a -> b -> a`.
    pub(crate) fn circles(&self) -> Vec<String> {
        strongly_connected(&self.edges)
            .into_iter()
            .filter(|group| group.len() > 1)
            .map(|group| self.describe_circle(&group))
            .collect()
    }

    /// One circle through the modules of `group`, written out.
    fn describe_circle(&self, group: &BTreeSet<Module>) -> String {
        let start = group.iter().next().cloned().unwrap_or_default();
        // Walk inside the group until a module repeats.
        let mut walk = vec![start];
        loop {
            let last = walk.last().cloned().unwrap_or_default();
            let next = self
                .edges
                .get(&last)
                .and_then(|to| to.iter().find(|m| group.contains(*m)))
                .cloned()
                .unwrap_or_default();
            if let Some(at) = walk.iter().position(|m| *m == next) {
                let mut circle: Vec<String> = walk[at..].iter().map(name).collect();
                circle.push(name(&next));
                return circle.join(" -> ");
            }
            walk.push(next);
        }
    }

    /// Imports from a higher floor, or from a top-level module the floors do not place.
    pub(crate) fn upward(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (from, targets) in &self.edges {
            let Some(from_floor) = floor(from, &mut found) else {
                continue;
            };
            for to in targets {
                match floor(to, &mut found) {
                    Some(to_floor) if to_floor > from_floor => found.push(format!(
                        "{} (floor {from_floor}) imports {} (floor {to_floor})",
                        name(from),
                        name(to)
                    )),
                    _ => {}
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

/// The floor of `module`: the crate root is floor 0; a top-level module missing from
/// [`FLOORS`] is reported in `unplaced`.
fn floor(module: &Module, unplaced: &mut Vec<String>) -> Option<u8> {
    let Some(top) = module.first() else {
        return Some(0);
    };
    let found = FLOORS.iter().find(|(m, _)| m == top).map(|&(_, f)| f);
    if found.is_none() {
        unplaced.push(format!(
            "module {top} has no floor: add it to FLOORS in xtask/src/floors.rs and to the \
             floors table of docs/architecture.md"
        ));
    }
    found
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// Every `.rs` file under `dir` by module path.
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<Module, PathBuf>,
) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root)?.with_extension("");
        let mut module: Module = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match module.last().map(String::as_str) {
            Some("main") if module.len() == 1 => continue,
            Some("lib" | "mod") => {
                module.pop();
            }
            _ => {}
        }
        out.insert(module, path);
    }
    Ok(())
}

/// `text` without its comments (line, block and doc comments); string literals are kept, and a
/// `//` inside one would end the line early, which only loses paths.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |at| &after[at..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |at| &after[at + 2..]);
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

/// Every path starting with `crate::`, `super::` or `self::` in `text`, `use` trees expanded.
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0
            || !rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let tail = &rest[at + 4..];
        rest = tail;
        if !before_ok {
            continue;
        }
        if let Some(end) = tail.find(';') {
            expand("", tail[..end].trim(), &mut found);
        }
    }
    // Paths written out in the code.
    let bytes = text.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in text.match_indices(start) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| at + e);
            // The head of a `use` tree (`super::{a, b}`) names nothing itself: the expanded
            // tree does.
            if text[at..end].ends_with("::") {
                continue;
            }
            found.push(text[at..end].to_owned());
        }
    }
    found
        .into_iter()
        .filter(|p| ["crate", "super", "self"].iter().any(|s| p.starts_with(s)))
        .collect()
}

/// Expands the `use` tree `tree` under `prefix` into whole paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            format!("{a}::{b}")
        }
    };
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = tree[open + 1..].trim_end().trim_end_matches('}');
        let prefix = join(prefix, head);
        let mut depth = 0;
        let mut item = String::new();
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&prefix, &item, out);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(&prefix, &item, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

/// The deepest module of `modules` that `path`, written in `from`, names.
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
    let mut module: Module = match parts.next()? {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => {
            let mut up = from.clone();
            up.pop();
            while parts.peek() == Some(&"super") {
                parts.next();
                up.pop();
            }
            up
        }
        _ => return None,
    };
    for part in parts {
        module.push(part.to_owned());
        if !modules.contains(&module) {
            module.pop();
            break;
        }
    }
    (module != *from).then_some(module)
}

/// Tarjan's strongly connected components of `edges`.
fn strongly_connected(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        groups: Vec<BTreeSet<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    group.insert(w.clone());
                    if w == v {
                        break;
                    }
                }
                self.groups.push(group);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.groups
}

/// Checks the floors of `collector/src` under `root`; fails naming each circle and each import
/// from a higher floor.
pub(crate) fn check(root: &Path) -> anyhow::Result<()> {
    let graph = Graph::read(&root.join("collector/src"))?;
    let circles = graph.circles();
    let upward = graph.upward();
    if circles.is_empty() && upward.is_empty() {
        println!(
            "floors: {} modules of collector/src, no import circle, nothing imported from a higher floor",
            graph.edges.len()
        );
        return Ok(());
    }
    let mut report = String::new();
    for circle in &circles {
        let _ = writeln!(report, "  import circle: {circle}");
    }
    for import in &upward {
        let _ = writeln!(report, "  upward import: {import}");
    }
    bail!("the floors of collector/src do not hold (docs/architecture.md):\n{report}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> Module {
        path.split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn graph(files: &[(&str, &str)]) -> Graph {
        let modules: BTreeSet<Module> = files.iter().map(|(m, _)| module(m)).collect();
        let mut graph = Graph::default();
        for (m, text) in files {
            graph.add(&module(m), &modules, text);
        }
        graph
    }

    #[test]
    fn use_trees_are_expanded_and_comments_ignored() {
        let mut found = paths(&strip_comments(
            "use crate::{a::{B, c::D as E}, f};\n// use crate::commented;\n/* crate::x */ \
             fn g() { super::h::i(); }",
        ));
        found.sort();
        assert_eq!(
            found,
            ["crate::a::B", "crate::a::c::D", "crate::f", "super::h::i"]
        );
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
}
