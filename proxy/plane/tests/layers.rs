//! The data plane's layers, checked on its own source: each module imports only from
//! the layers below its own (or from inside its own layer), and no file imports, even
//! indirectly, from a file that imports it.
//!
//! | rank | layer |
//! |---|---|
//! | 0 | `locks` |
//! | 1 | `config`, `forwarded`, `periodic`, `demo`, `metrics` |
//! | 2 | `protocol` |
//! | 3 | `upstream`, `enforce` (neither imports the other) |
//! | 4 | `view` |
//! | 5 | `server` |
//!
//! An edge is any path through `crate::`, `super::` or `self::` (in `use` or inline), or
//! a `use` of a child module, resolved to the deepest module file it names. Edges
//! between a parent and its children count like any other, so a child that imports
//! from its parent while the parent re-exports the child is a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`["upstream", "lane"]`; the crate root is `[]`).
type ModPath = Vec<String>;

fn rank(module: &ModPath) -> Option<usize> {
    match module.first().map(String::as_str) {
        None => None,
        Some("locks") => Some(0),
        Some("config" | "forwarded" | "metrics" | "periodic" | "demo") => Some(1),
        Some("protocol") => Some(2),
        Some("upstream" | "enforce") => Some(3),
        Some("view") => Some(4),
        Some("server") => Some(5),
        Some(_) => None,
    }
}

/// The source without comments, string literals' contents and the test module at the
/// end of a file (tests may import whatever they test).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '\'' => {
                // A char literal ('x', '\n', '"') is skipped; a lifetime is kept.
                let mut ahead = chars.clone();
                match (ahead.next(), ahead.next()) {
                    (Some('\\'), _) => {
                        for c in chars.by_ref() {
                            if c == '\'' {
                                break;
                            }
                        }
                        chars.next_if_eq(&'\'');
                    }
                    (Some(_), Some('\'')) => {
                        chars.next();
                        chars.next();
                    }
                    _ => out.push('\''),
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            c => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a `use` tree starting at `text` names (`a::{b, c::{d, e}}` → `a::b`,
/// `a::c::d`, `a::c::e`, and the prefixes), as segments.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    fn parse(s: &[char], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *at < s.len() && s[*at].is_whitespace() {
                *at += 1;
            }
            if *at < s.len() && s[*at] == '{' {
                *at += 1;
                loop {
                    while *at < s.len() && (s[*at].is_whitespace() || s[*at] == ',') {
                        *at += 1;
                    }
                    if *at >= s.len() || s[*at] == '}' {
                        *at += 1;
                        break;
                    }
                    parse(s, at, &path, out);
                }
                return;
            }
            let start = *at;
            while *at < s.len() && is_ident(s[*at]) {
                *at += 1;
            }
            if *at == start {
                out.push(path);
                return;
            }
            let ident: String = s[start..*at].iter().collect();
            if ident != "self" {
                path.push(ident);
            }
            if s[*at..].starts_with(&[':', ':']) {
                *at += 2;
                continue;
            }
            // `name as alias`: the alias names nothing of its own.
            let mut ahead = *at;
            while ahead < s.len() && s[ahead].is_whitespace() {
                ahead += 1;
            }
            if s[ahead..].starts_with(&['a', 's'])
                && s.get(ahead + 2).is_some_and(|c| c.is_whitespace())
            {
                *at = ahead + 2;
                while *at < s.len() && s[*at].is_whitespace() {
                    *at += 1;
                }
                while *at < s.len() && is_ident(s[*at]) {
                    *at += 1;
                }
            }
            out.push(path);
            return;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    parse(&chars, &mut 0, &[], &mut out);
    out
}

/// The modules a file refers to, as absolute paths (not yet resolved to files).
fn references(module: &ModPath, code: &str) -> Vec<ModPath> {
    // `self::` in `a/b.rs` is `a::b` and `super::` is `a`; in `a/mod.rs` (module `a`),
    // `self::` is `a` and `super::` is the root.
    let here: ModPath = module.clone();
    let mut out = Vec::new();
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").or(Some(l))?;
            let l = l
                .strip_prefix("pub(crate) ")
                .or(l.strip_prefix("pub(super) "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(|n| n.trim().to_owned())
        })
        .collect();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = i == 0 || !is_ident(bytes[i - 1] as char) && bytes[i - 1] != b':';
        let anchor = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|a| boundary && rest.starts_with(a));
        let in_use = boundary && rest.starts_with("use ");
        if let Some(anchor) = anchor {
            let mut base: ModPath = match anchor {
                "crate::" => Vec::new(),
                "self::" => here.clone(),
                _ => here[..here.len().saturating_sub(1)].to_vec(),
            };
            let mut tail = &rest[anchor.len()..];
            while let Some(more) = tail.strip_prefix("super::") {
                base.pop();
                tail = more;
            }
            for path in use_tree(tail) {
                let mut full = base.clone();
                full.extend(path);
                out.push(full);
            }
            i += anchor.len();
        } else if in_use {
            // `use child::…` in a module that declares `mod child;`.
            let tail = rest[4..].trim_start();
            let first: String = tail.chars().take_while(|c| is_ident(*c)).collect();
            if children.contains(&first) {
                for path in use_tree(tail) {
                    let mut full = here.clone();
                    full.extend(path);
                    out.push(full);
                }
            }
            i += 4;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The deepest module file that `path` names, if any.
fn resolve(files: &BTreeMap<ModPath, String>, path: &ModPath) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

/// The module path of a source file relative to `src`.
fn module_of(relative: &Path) -> ModPath {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// What is wrong with the layering of the files (module path → source text).
fn violations(files: &BTreeMap<ModPath, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, text) in files {
        let code = code_of(text);
        let targets = edges.entry(module.clone()).or_default();
        for reference in references(module, &code) {
            let Some(target) = resolve(files, &reference) else {
                continue;
            };
            if target == *module {
                continue;
            }
            targets.insert(target.clone());
            let (from, to) = (rank(module), rank(&target));
            let same_layer = module.first() == target.first();
            if let (Some(from), Some(to)) = (from, to)
                && !same_layer
                && to >= from
            {
                problems.push(format!(
                    "{} (layer {from}) imports {} (layer {to}): a module may import only \
                     from the layers below its own",
                    module.join("::"),
                    reference.join("::")
                ));
            }
        }
    }
    // Cycles: strongly connected components with more than one file.
    for component in strongly_connected(&edges) {
        if component.len() > 1 {
            let mut names: Vec<String> = component.iter().map(|m| m.join("::")).collect();
            names.sort();
            problems.push(format!("import cycle: {}", names.join(" -> ")));
        }
    }
    problems
}

fn strongly_connected(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<ModPath, String> {
    files
        .iter()
        .map(|(path, text)| (module_of(Path::new(path)), (*text).to_owned()))
        .collect()
}

#[test]
fn the_data_plane_imports_only_downwards_and_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    assert!(paths.len() > 20, "the sources were not found in {src:?}");
    let texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let relative = p.strip_prefix(&src).expect("under src");
            (
                relative.to_string_lossy().into_owned(),
                std::fs::read_to_string(p).expect("readable source"),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let files = tree(&borrowed);
    let problems = violations(&files);
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn an_import_from_a_layer_above_is_found() {
    let files = tree(&[
        ("lib.rs", "pub mod protocol;\npub mod server;\n"),
        ("protocol/mod.rs", "pub mod era;\n"),
        ("protocol/era.rs", "use crate::server::edge::Edge;\n"),
        ("server/mod.rs", "pub mod edge;\n"),
        ("server/edge.rs", "pub struct Edge;\n"),
    ]);
    let problems = violations(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("protocol::era (layer 2) imports server::edge::Edge (layer 5)")
    );
}

#[test]
fn sibling_layers_do_not_import_each_other() {
    let files = tree(&[
        ("upstream/mod.rs", "pub mod lane;\n"),
        (
            "upstream/lane.rs",
            "fn f() { crate::enforce::auth::check(); }\n",
        ),
        ("enforce/mod.rs", "pub mod auth;\n"),
        ("enforce/auth.rs", "pub fn check() {}\n"),
    ]);
    let problems = violations(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("upstream::lane (layer 3) imports enforce::auth::check (layer 3)")
    );
}

#[test]
fn a_child_importing_its_parent_that_re_exports_it_is_a_cycle() {
    let files = tree(&[
        (
            "upstream/mod.rs",
            "mod lane;\npub use lane::Lane;\npub struct Shared;\n",
        ),
        ("upstream/lane.rs", "use super::Shared;\npub struct Lane;\n"),
    ]);
    let problems = violations(&files);
    assert_eq!(
        problems,
        vec!["import cycle: upstream -> upstream::lane".to_owned()]
    );
}

#[test]
fn grouped_and_nested_imports_are_each_an_edge() {
    let files = tree(&[
        ("view/mod.rs", "pub mod aggregate;\n"),
        (
            "view/aggregate.rs",
            "use crate::{protocol::era::Era, server::{gateway::Gateway, edge}};\n",
        ),
        ("protocol/mod.rs", "pub mod era;\n"),
        ("protocol/era.rs", ""),
        ("server/mod.rs", "pub mod gateway;\npub mod edge;\n"),
        ("server/gateway.rs", ""),
        (
            "server/edge.rs",
            "// use crate::view::aggregate;\nconst S: &str = \"crate::view\";\n",
        ),
    ]);
    let problems = violations(&files);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("view::aggregate (layer 4) imports server::"))
    );
}
