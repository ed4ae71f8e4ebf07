//! Reading a Rust source file for its paths: comments, string and character literals removed,
//! white space folded (so `crate :: a` and a path broken over lines read as one), raw
//! identifiers unwrapped, aliases of the crate root (`use crate as x;`, `extern crate self as
//! x;`) read as `crate`; then every `use` item (with the name it brings in) and every path
//! written out in the code that starts with `crate`, `super` or `self`.

/// A `use` item: the path it names and the name it brings into its module (`*` for a glob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Import {
    pub(super) path: String,
    pub(super) name: String,
}

/// The source as this module reads it; see the module documentation.
pub(super) fn normalize(text: &str) -> String {
    let code = without_literals_and_comments(text);
    let mut folded = String::with_capacity(code.len());
    for word in code.split_whitespace() {
        if !folded.is_empty() {
            folded.push(' ');
        }
        folded.push_str(word);
    }
    let mut out = folded.replace(" ::", "::").replace(":: ", "::");
    out = unwrap_raw_identifiers(&out);
    for alias in root_aliases(&out) {
        out = replace_word(&out, &format!("{alias}::"), "crate::");
    }
    out
}

/// `text` without comments (nested block comments included) and with every string, byte
/// string, raw string and character literal replaced by `""`; lifetimes are kept.
fn without_literals_and_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(end) =
            raw_string_end(&chars, i).filter(|_| i == 0 || !ident(chars[i - 1]))
        {
            out.push_str("\"\"");
            i = end;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: up to its closing quote.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("\"\"");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where a raw string starting at `i` (`r"…"`, `r#"…"#`, `br"…"`) ends; `None` when none does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// `text` with `r#name` read as `name`.
fn unwrap_raw_identifiers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("r#") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + 2..].chars().next();
        let is_raw = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            && after.is_some_and(|c| c.is_alphabetic() || c == '_');
        out.push_str(&rest[..at]);
        if !is_raw {
            out.push_str("r#");
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

/// The names the crate root goes by besides `crate`.
fn root_aliases(text: &str) -> Vec<String> {
    let mut aliases = Vec::new();
    for form in ["use crate as ", "extern crate self as "] {
        for (at, _) in text.match_indices(form) {
            let alias: String = text[at + form.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !alias.is_empty() {
                aliases.push(alias);
            }
        }
    }
    aliases
}

/// `text` with `word` (not preceded by an identifier character) replaced by `with`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        out.push_str(&rest[..at]);
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Every `use` item of `code` (normalized), trees expanded.
pub(super) fn imports(code: &str) -> Vec<Import> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("use ") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let tail = &code[at + 4..];
        if let Some(end) = tail.find(';') {
            expand("", tail[..end].trim(), &mut found);
        }
    }
    found
}

/// Every path of `code` (normalized) starting with `crate`, `super` or `self`: those of its
/// `use` items and those written out in the code.
pub(super) fn paths(code: &str) -> Vec<String> {
    let mut found: Vec<String> = imports(code).into_iter().map(|i| i.path).collect();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            // The head of a `use` tree (`super::{a, b}`) names nothing itself.
            if !code[at..end].ends_with("::") {
                found.push(code[at..end].to_owned());
            }
        }
    }
    found
        .into_iter()
        .filter(|p| ["crate", "super", "self"].iter().any(|s| p.starts_with(s)))
        .collect()
}

/// Expands the `use` tree `tree` under `prefix` into imports.
fn expand(prefix: &str, tree: &str, out: &mut Vec<Import>) {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            format!("{a}::{b}")
        }
    };
    let tree = tree.trim().trim_start_matches("::");
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
        let (path, alias) = match tree.split_once(" as ") {
            Some((path, alias)) => (path.trim(), Some(alias.trim())),
            None => (tree, None),
        };
        // `a::{self}` names `a`.
        let path = path.strip_suffix("::self").unwrap_or(path);
        let path = if path == "self" {
            prefix.to_owned()
        } else {
            join(prefix, path)
        };
        let name = alias
            .map(str::to_owned)
            .unwrap_or_else(|| path.rsplit("::").next().unwrap_or("").to_owned());
        out.push(Import { path, name });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        let mut found = paths(&normalize(text));
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn use_trees_are_expanded_and_comments_and_literals_ignored() {
        assert_eq!(
            all(
                "use crate::{a::{B, c::D as E}, f};\n// use crate::commented;\n/* crate::x */ \
                 fn g() { super::h::i(); let s = \"crate::in_a_string\"; }"
            ),
            ["crate::a::B", "crate::a::c::D", "crate::f", "super::h::i"]
        );
    }

    #[test]
    fn a_literal_holding_comment_markers_hides_nothing() {
        for text in [
            "const ANY: &str = \"*/*\";\nuse crate::node::Node;",
            "const GLOB: &str = \"/sys/class/net/*\";\nuse crate::node::Node;",
            "const RAW: &str = r#\"/* \"quoted\" */\"#;\nuse crate::node::Node;",
            "const C: char = '\"'; const D: char = '\\''; use crate::node::Node;",
            "fn f<'a>(x: &'a str) -> &'a str { x } use crate::node::Node;",
        ] {
            assert_eq!(all(text), ["crate::node::Node"], "{text}");
        }
    }

    #[test]
    fn spaced_broken_raw_and_aliased_paths_are_read() {
        for text in [
            "use crate :: node :: Node;",
            "fn b() -> crate :: node :: Node { todo!() }",
            "fn c() { crate::\n    node::Node() }",
            "use\ncrate::{node::Node as ff};",
            "fn d() -> crate::r#node::Node { todo!() }",
            "use crate as root; fn a() -> root::node::Node { todo!() }",
            "extern crate self as collector; fn e() -> collector::node::Node { todo!() }",
        ] {
            assert!(
                all(text).contains(&"crate::node::Node".to_owned()),
                "{text}: {:?}",
                all(text)
            );
        }
    }

    #[test]
    fn imports_say_which_name_they_bring_in() {
        let found = imports(&normalize("use crate::{a::{self, B as C}, d::*};"));
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|i| (i.path.as_str(), i.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("crate::a", "a"),
                ("crate::a::B", "C"),
                ("crate::d::*", "*")
            ]
        );
    }
}
