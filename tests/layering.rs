//! The architecture holds: dependencies run one way, `cli → admin → (ops, handle, asynch) →
//! (auth, workspace) → store → base`, `auth` and `workspace` know nothing of each other, and no
//! file depends on itself through others (no import cycle between files or folders).
//!
//! This test reads the sources: every `crate::…`, `super::…` and `self::…` path, with `use`
//! groups expanded and re-exports followed to the file that defines the item.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer and the folders (or top-level files) in it; a file may depend only on layers
/// below its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["error", "clock", "fsutil", "bytes", "top"]),
    ("store", &["store"]),
    ("domain", &["auth", "workspace"]),
    ("handle", &["handle"]),
    ("operations", &["ops", "asynch"]),
    ("web", &["web"]),
    ("admin", &["admin"]),
    ("cli", &["cli"]),
];

/// Files outside the layers: the crate root and the fuzzing entry points (test support).
const UNLAYERED: &[&str] = &["lib", "fuzzing"];

/// Layers whose folders must not know each other (files within one folder may).
const ISOLATED: &[&str] = &["domain"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path (`["auth", "users"]`) of every source file, the crate root being `[]`.
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src()).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The source without comments and string literals (so paths in them do not count).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"')) {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // a char literal like 'x'
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The code without `#[cfg(test)] mod … { … }` blocks: unit tests do not shape the
/// architecture.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        if !after.starts_with("mod ") {
            out.push_str("#[cfg(test)]");
            rest = &rest[at + "#[cfg(test)]".len()..];
            continue;
        }
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let t = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![t.to_string()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path the code names, as written (`crate::a::b`, `super::c`), `use` groups expanded.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, with their groups.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let start = &rest[at + 4..];
        let end = start.find(';').unwrap_or(start.len());
        if before.is_none_or(|c| !is_ident(c)) {
            out.extend(expand(&start[..end].replace(char::is_whitespace, "")));
        }
        rest = &start[end.min(start.len())..];
    }
    // Paths used inline.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let at_root = ["crate::", "super::", "self::"]
            .iter()
            .find(|r| chars[i..].iter().take(r.len()).copied().eq(r.chars()));
        if let Some(root) = at_root
            && (i == 0 || !is_ident(chars[i - 1]))
        {
            let mut j = i + root.len();
            while j < chars.len()
                && (is_ident(chars[j]) || (chars[j] == ':' && chars.get(j + 1) == Some(&':')))
            {
                j += if chars[j] == ':' { 2 } else { 1 };
            }
            out.push(
                chars[i..j]
                    .iter()
                    .collect::<String>()
                    .trim_end_matches("::")
                    .to_string(),
            );
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    /// Per module: item name → the path it re-exports.
    exports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
    /// Per file: the paths it names, made absolute.
    uses: BTreeMap<Vec<String>, Vec<Vec<String>>>,
}

/// `path` as seen from `module` (the module of a file: `x.rs` and `x/mod.rs` are both `…::x`,
/// so `super` is the parent either way).
fn absolute(module: &[String], path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = module.to_vec();
    let mut k = 0;
    match *segs.first()? {
        "crate" => {
            base.clear();
            k = 1;
        }
        "self" => k = 1,
        "super" => {
            while segs.get(k) == Some(&"super") {
                base.pop()?;
                k += 1;
            }
        }
        _ => return None,
    }
    base.extend(segs[k..].iter().map(|s| s.to_string()));
    Some(base)
}

impl Crate {
    fn load() -> Crate {
        let files = modules();
        let mut exports = BTreeMap::new();
        let mut uses = BTreeMap::new();
        for (module, path) in &files {
            let text = std::fs::read_to_string(path).unwrap();
            let code = without_test_modules(&code_of(&text));
            let mut re = BTreeMap::new();
            for line in code.split(';') {
                let l = line.trim();
                let tree = l
                    .strip_prefix("pub use ")
                    .or_else(|| l.strip_prefix("pub(crate) use "))
                    .or_else(|| l.strip_prefix("pub(super) use "));
                if let Some(tree) = tree {
                    let full = tree.replace(char::is_whitespace, "");
                    for p in expand(&full) {
                        let alias = p.rsplit("::").next().unwrap_or("").to_string();
                        // `pub use x::Y` in a module means `self::x::Y`.
                        let p = if p.starts_with("crate::")
                            || p.starts_with("super::")
                            || p.starts_with("self::")
                        {
                            p
                        } else {
                            format!("self::{p}")
                        };
                        if let Some(abs) = absolute(module, &p) {
                            re.insert(alias, abs);
                        }
                    }
                }
            }
            exports.insert(module.clone(), re);
            let named: Vec<Vec<String>> = paths_in(&code)
                .iter()
                .filter_map(|p| {
                    // `use x::y` where `x` is a child module means `self::x::y`.
                    let first = p.split("::").next().unwrap_or("");
                    let mut child = module.clone();
                    child.push(first.to_string());
                    if files.contains_key(&child) {
                        absolute(module, &format!("self::{p}"))
                    } else {
                        absolute(module, p)
                    }
                })
                .collect();
            uses.insert(module.clone(), named);
        }
        Crate {
            files,
            exports,
            uses,
        }
    }

    /// The file that defines what `path` names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Vec<String>> {
        if depth > 16 {
            return None;
        }
        let mut module: Vec<String> = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.files.contains_key(&next) {
                module = next;
                continue;
            }
            // Not a submodule: an item of `module`, perhaps re-exported from elsewhere.
            if let Some(target) = self.exports.get(&module).and_then(|e| e.get(seg)) {
                let mut full = target.clone();
                full.extend(path[i + 1..].iter().cloned());
                return self.resolve(&full, depth + 1);
            }
            return Some(module);
        }
        Some(module)
    }

    fn edges(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut out: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (from, paths) in &self.uses {
            let entry = out.entry(from.clone()).or_default();
            for p in paths {
                if let Some(to) = self.resolve(p, 0)
                    && &to != from
                    && self.is_definer(&to)
                {
                    entry.insert(to);
                }
            }
        }
        out
    }

    // Folder index files (`mod.rs`, `lib.rs`) only declare and re-export; re-exports are
    // followed, so an edge to one means an item defined there.
    fn is_definer(&self, module: &[String]) -> bool {
        // The crate root declares and re-exports; its only items are `#[macro_export]`
        // macros, which are defined in (and counted against) the files that declare them.
        !module.is_empty() && self.files.contains_key(module)
    }
}

fn folder(module: &[String]) -> String {
    module.first().cloned().unwrap_or_else(|| "lib".into())
}

fn layer(folder: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, members)| members.contains(&folder))
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on: BTreeSet<N>,
        next: usize,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(n: &N, g: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(n.clone(), s.next);
        s.low.insert(n.clone(), s.next);
        s.next += 1;
        s.stack.push(n.clone());
        s.on.insert(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if !s.index.contains_key(m) {
                visit(m, g, s);
                let lm = s.low[m];
                let ln = s.low[n];
                s.low.insert(n.clone(), ln.min(lm));
            } else if s.on.contains(m) {
                let im = s.index[m];
                let ln = s.low[n];
                s.low.insert(n.clone(), ln.min(im));
            }
        }
        if s.low[n] == s.index[n] {
            let mut comp = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on.remove(&m);
                comp.push(m.clone());
                if &m == n {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for n in graph.keys() {
        if !s.index.contains_key(n) {
            visit(n, graph, &mut s);
        }
    }
    s.out
}

#[test]
fn no_file_depends_on_itself_through_others() {
    let c = Crate::load();
    let edges = c.edges();
    // `LAYERING_DUMP=auth cargo test --test layering` prints the edges of files under auth/.
    if let Ok(prefix) = std::env::var("LAYERING_DUMP") {
        for (from, tos) in &edges {
            if show(from).starts_with(&prefix) {
                let tos: Vec<String> = tos.iter().map(|t| show(t)).collect();
                eprintln!("{} → {}", show(from), tos.join(", "));
            }
        }
    }
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|comp| comp.iter().map(|m| show(m)).collect::<Vec<_>>().join(" ↔ "))
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_folder_depends_on_itself_through_others() {
    let c = Crate::load();
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in c.edges() {
        for to in tos {
            let (a, b) = (folder(&from), folder(&to));
            if a != b {
                folders.entry(a).or_default().insert(b);
            }
        }
    }
    let found = cycles(&folders);
    assert!(found.is_empty(), "import cycles between folders: {found:?}");
}

#[test]
fn dependencies_run_down_the_layers() {
    let c = Crate::load();
    let mut wrong = Vec::new();
    for (from, tos) in c.edges() {
        let a = folder(&from);
        if UNLAYERED.contains(&a.as_str()) {
            continue;
        }
        let la = layer(&a).unwrap_or_else(|| panic!("{a} is in no layer; add it to LAYERS"));
        for to in tos {
            let b = folder(&to);
            if a == b || UNLAYERED.contains(&b.as_str()) {
                continue;
            }
            let lb = layer(&b).unwrap_or_else(|| panic!("{b} is in no layer"));
            if lb > la || (lb == la && ISOLATED.contains(&LAYERS[la].0)) {
                wrong.push(format!(
                    "{} → {} ({} may not use {})",
                    show(&from),
                    show(&to),
                    LAYERS[la].0,
                    LAYERS[lb].0
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_sees_what_it_should() {
    assert_eq!(
        expand("crate::a::{b,c::{d,e},f as g}"),
        vec![
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a::f"
        ]
    );
    let code =
        code_of("use super::x; // crate::commented\nlet s = \"crate::quoted\"; crate::y::z(1);");
    assert_eq!(paths_in(&code), vec!["super::x", "super::x", "crate::y::z"]);
    let c = Crate::load();
    let users = vec!["auth".to_string(), "users".to_string()];
    assert!(c.files.contains_key(&users));
    // `crate::Error` is re-exported by lib.rs from error.rs.
    assert_eq!(c.resolve(&["Error".into()], 0), Some(vec!["error".into()]));
}
