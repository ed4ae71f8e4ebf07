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

use self::source::Import;

mod source;

/// The floors, ground up: each top-level module of `collector/src` and its floor.
const FLOORS: &[(&str, u8)] = &[
    ("discovery", 1),
    ("filter", 1),
    ("zones", 1),
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
        let mut sources = Vec::new();
        for (module, path) in files {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            sources.push((module, text));
        }
        Ok(Self::of(&sources))
    }

    /// The graph of the modules `sources` (each module with its source text).
    fn of(sources: &[(Module, String)]) -> Self {
        let code: Vec<(&Module, String)> = sources
            .iter()
            .map(|(module, text)| (module, source::normalize(text)))
            .collect();
        let krate = Crate {
            modules: sources.iter().map(|(m, _)| m.clone()).collect(),
            imports: code
                .iter()
                .map(|(module, code)| ((*module).clone(), source::imports(code)))
                .collect(),
        };
        let mut graph = Self::default();
        for (module, code) in &code {
            let targets: BTreeSet<Module> = source::paths(code)
                .iter()
                .filter_map(|path| krate.resolve(module, path))
                .filter(|target| !target.starts_with(module))
                .collect();
            graph.edges.insert((*module).clone(), targets);
        }
        graph
    }

    /// The circles: groups of modules each reachable from every other, as `a -> b -> a`;
    /// then those between the units of the floors (the top-level modules, `backend::ethtool`
    /// and `backend::ebpf` apart), whichever of their modules the imports go through.
    pub(crate) fn circles(&self) -> Vec<String> {
        let units = self.units();
        strongly_connected(&self.edges)
            .into_iter()
            .filter(|group| group.len() > 1)
            .map(|group| self.describe_circle(&group))
            .chain(
                strongly_connected(&units.edges)
                    .into_iter()
                    .filter(|group| group.len() > 1)
                    .map(|group| format!("between units: {}", units.describe_circle(&group))),
            )
            .collect()
    }

    /// The same graph between units: each top-level module, and `backend::ethtool` and
    /// `backend::ebpf` apart (floor 2 names them one by one); the crate root is left out.
    fn units(&self) -> Self {
        let unit = |module: &Module| -> Option<Module> {
            match module.as_slice() {
                [] => None,
                [top, sub, ..] if top == "backend" => Some(vec![top.clone(), sub.clone()]),
                [top, ..] => Some(vec![top.clone()]),
            }
        };
        let mut units = Self::default();
        for (from, targets) in &self.edges {
            let Some(from) = unit(from) else { continue };
            let entry = units.edges.entry(from.clone()).or_default();
            entry.extend(targets.iter().filter_map(unit).filter(|to| *to != from));
        }
        units
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

/// The modules of a crate and what each imports: enough to follow a path to the module that
/// holds its item, through `use` items that re-export it.
struct Crate {
    modules: BTreeSet<Module>,
    /// Per module, its `use` items.
    imports: BTreeMap<Module, Vec<Import>>,
}

impl Crate {
    /// The module holding what `path`, written in `from`, names: its deepest module, or — where
    /// the path goes on with a name that module imports — the module that import names, and so
    /// on (at most a few steps, so that import loops end).
    fn resolve(&self, from: &Module, path: &str) -> Option<Module> {
        self.resolve_within(from, path, 8)
    }

    fn resolve_within(&self, from: &Module, path: &str, steps: u8) -> Option<Module> {
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
        while let Some(part) = parts.next() {
            module.push(part.to_owned());
            if self.modules.contains(&module) {
                continue;
            }
            module.pop();
            // Not a module: a name `module` may import from elsewhere.
            let imported = self
                .imports
                .get(&module)
                .and_then(|imports| imports.iter().find(|i| i.name == part));
            if let Some(import) = imported.filter(|_| steps > 0) {
                let rest: Vec<&str> = parts.collect();
                let mut followed = import.path.clone();
                for segment in rest {
                    followed.push_str("::");
                    followed.push_str(segment);
                }
                return self.resolve_within(&module, &followed, steps - 1);
            }
            break;
        }
        Some(module)
    }
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
mod tests;
