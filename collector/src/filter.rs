//! Interface patterns shared by include/exclude lists and backend overrides.
//!
//! A pattern is one of:
//! - a glob on the interface name (`cilium_*`, `lxc?abc`, `eth0`), matching the whole name;
//! - `/regex/` on the interface name (unanchored, as node_exporter's device filters);
//! - `kind:<kind>`: the link kind from `IFLA_INFO_KIND` (`vxlan`, `geneve`, `veth`, `bridge`;
//!   `kind:` alone matches interfaces without a kind, i.e. physical NICs and `lo`).

use std::{fmt, str::FromStr};

use regex::Regex;

/// A parsed interface pattern.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    source: String,
    matcher: Matcher,
}

#[derive(Clone, Debug)]
enum Matcher {
    Name(Regex),
    Kind(String),
}

/// A pattern that does not parse; the message says why.
#[derive(Debug, thiserror::Error)]
#[error("bad interface pattern {pattern:?}: {reason}")]
pub(crate) struct PatternError {
    /// The rejected pattern.
    pattern: String,
    /// Why.
    reason: String,
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| PatternError {
            pattern: s.to_owned(),
            reason: reason.to_owned(),
        };
        let matcher = if let Some(kind) = s.strip_prefix("kind:") {
            if kind.contains(|c: char| c.is_whitespace()) {
                return Err(err("a link kind has no spaces"));
            }
            Matcher::Kind(kind.to_owned())
        } else if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') {
            let re = Regex::new(&s[1..s.len() - 1]).map_err(|e| err(&e.to_string()))?;
            Matcher::Name(re)
        } else if s.is_empty() {
            return Err(err("empty pattern"));
        } else {
            Matcher::Name(glob_regex(s).map_err(|e| err(&e.to_string()))?)
        };
        Ok(Self {
            source: s.to_owned(),
            matcher,
        })
    }
}

/// Translates a glob (`*`, `?`) into an anchored regex.
fn glob_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

impl Pattern {
    /// Whether an interface with `name` and link `kind` matches.
    pub(crate) fn matches(&self, name: &str, kind: Option<&str>) -> bool {
        match &self.matcher {
            Matcher::Name(re) => re.is_match(name),
            Matcher::Kind(k) => kind.unwrap_or("") == k,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn pattern_table() {
        // (pattern, name, kind, matches)
        let table: &[(&str, &str, Option<&str>, bool)] = &[
            ("lo", "lo", None, true),
            ("lo", "lo0", None, false),
            ("cilium_*", "cilium_vxlan", Some("vxlan"), true),
            ("cilium_*", "xcilium_vxlan", Some("vxlan"), false),
            ("lxc?", "lxc1", Some("veth"), true),
            ("lxc?", "lxc12", Some("veth"), false),
            ("eth.0", "eth.0", None, true),
            ("eth.0", "ethX0", None, false),
            ("/^lxc[0-9a-f]+$/", "lxc0a1b", Some("veth"), true),
            ("/vxlan/", "cilium_vxlan", Some("vxlan"), true),
            ("/^eth/", "veth0", Some("veth"), false),
            ("kind:vxlan", "anything", Some("vxlan"), true),
            ("kind:vxlan", "cilium_geneve", Some("geneve"), false),
            ("kind:", "eth0", None, true),
            ("kind:", "br0", Some("bridge"), false),
        ];
        for &(pattern, name, kind, expected) in table {
            let p: Pattern = pattern.parse().expect(pattern);
            assert_eq!(
                p.matches(name, kind),
                expected,
                "{pattern} vs {name} ({kind:?})"
            );
        }
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_pattern_named() {
        for bad in ["", "/(unclosed/", "kind:a b"] {
            let err = bad.parse::<Pattern>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
