//! The module dependency direction around configuration (docs/architecture.md, "Module
//! direction"): `config` assembles the sections of `rules`, `ratelimit`, `client_ip`, `authz`
//! and `proxy`, which own their section and error types and never import `config` back. This
//! test reads every `crate::…` and `super::…` path in `src/**/*.rs` (comments skipped, `use`
//! groups expanded), builds the graph between modules (a file is a module; everything under
//! `src/config/` counts as `config`; `tests.rs` files are left out) and fails when `config`
//! lies on a cycle or two of those six modules reach each other, naming the cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must not lie on a dependency cycle.
const ACYCLIC: &[&str] = &[
    "config",
    "rules",
    "ratelimit",
    "proxy",
    "client_ip",
    "authz",
];

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`; `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts.join("::"))
}

/// The node a module counts as: a watched module's submodules are the module itself.
fn node(module: &str) -> String {
    ACYCLIC
        .iter()
        .find(|w| module == **w || module.starts_with(&format!("{w}::")))
        .map_or_else(|| module.to_string(), |w| w.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without `//` comments (doc links name modules without depending on them).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every full path written after `start` (`crate::` or `super::`), `{…}` groups expanded:
/// `crate::a::{b, c::d}` gives `a::b` and `a::c::d`.
fn paths_after(code: &str, start: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(start) {
        let before = rest[..i].chars().last();
        rest = &rest[i + start.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand("", rest, &mut out);
    }
    out
}

fn expand(prefix: &str, text: &str, out: &mut Vec<String>) {
    let ident_end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c.is_whitespace()))
        .unwrap_or(text.len());
    let head: String = text[..ident_end].split_whitespace().collect();
    let path = format!("{prefix}{head}");
    if text[ident_end..].starts_with('{') && path.ends_with("::") {
        let inner = &text[ident_end + 1..];
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&path, &inner[item_start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&path, &inner[item_start..i], out);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        out.push(path.trim_end_matches(':').to_string());
    }
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|p| modules.contains(p))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        // A `tests.rs` file is test code: it may parse a config to exercise its module.
        let Some(module) = module_of(&src, file).filter(|m| !m.ends_with("::tests")) else {
            continue;
        };
        let text = code(&std::fs::read_to_string(file).expect("read source"));
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let targets = paths_after(&text, "crate::").into_iter().chain(
            paths_after(&text, "super::")
                .into_iter()
                .map(|p| format!("{parent}::{p}").trim_start_matches(':').to_string()),
        );
        for target in targets.filter_map(|p| resolve(&p, &modules)) {
            let (from, to) = (node(&module), node(&target));
            if from != to {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

/// A path from `from` to `to`, if there is one (breadth-first, so the shortest).
fn path(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_string()]);
    while let Some(at) = queue.pop_front() {
        for next in edges.get(&at).into_iter().flatten() {
            if came_from.contains_key(next) || next == from {
                continue;
            }
            came_from.insert(next.clone(), at.clone());
            if next == to {
                let mut way = vec![to.to_string()];
                while let Some(prev) = came_from.get(way.last().expect("non-empty")) {
                    way.push(prev.clone());
                    if prev == from {
                        break;
                    }
                }
                way.reverse();
                return Some(way);
            }
            queue.push_back(next.clone());
        }
    }
    None
}

#[test]
fn config_and_the_modules_it_assembles_form_no_cycle() {
    let edges = graph();
    // The graph was read: config does assemble these sections.
    let config_uses = edges.get("config").cloned().unwrap_or_default();
    for m in ["rules", "ratelimit", "client_ip", "authz", "proxy"] {
        assert!(
            config_uses.contains(m),
            "config no longer imports {m}; update this test and docs/architecture.md"
        );
    }
    let mut cycles = Vec::new();
    // `config` lies on no cycle at all: nothing it imports leads back to it.
    for next in edges.get("config").into_iter().flatten() {
        if let Some(back) = path(&edges, next, "config") {
            cycles.push(format!("config -> {}", back.join(" -> ")));
        }
    }
    // No two of the six reach each other (directly or through other modules).
    for (i, a) in ACYCLIC.iter().enumerate() {
        for b in &ACYCLIC[i + 1..] {
            if let (Some(there), Some(back)) = (path(&edges, a, b), path(&edges, b, a)) {
                cycles.push(format!(
                    "{} -> {}",
                    there.join(" -> "),
                    back[1..].join(" -> ")
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "dependency cycles through {ACYCLIC:?} (a module that owns a section must not import \
         config; see docs/architecture.md):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn use_groups_and_paths_are_read() {
    let code = "use crate::a::{b, c::{d, e}};\nlet x = crate::f::g(); // crate::h\n";
    let mut found = paths_after(&self::code(code), "crate::");
    found.sort();
    assert_eq!(found, ["a::b", "a::c::d", "a::c::e", "f::g"]);
}
