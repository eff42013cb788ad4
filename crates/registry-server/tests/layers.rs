//! The server's modules import only downwards.
//!
//! Reads the server's source files, collects every `crate::…` (and `super::…` that
//! reaches the crate root) each top-level module names, and fails on an import of a
//! module in the same layer or above, on a module placed in no layer, and on any import
//! cycle between top-level modules. The crate root (`lib.rs`) wires everything and may
//! name any module. The store is a crate of its own, so the compiler keeps it below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first. A module may import the modules of the layers below its own,
/// and no other.
const LAYERS: &[&[&str]] = &[
    // The accept loop, serving the API.
    &["transport"],
    // HTTP handlers, and the DNS interface beside them.
    &["api", "dns"],
    // What the API calls besides the registry: backup and restore, the health checker.
    &["backup", "health"],
    // This daemon as a node (the health checker shares instances among nodes).
    &["nodes"],
    // The in-memory registry, its single writer, and the records it holds.
    &["state"],
    // Who may do what (tokens, callers), and the change feed the writer announces on.
    &["auth", "feed"],
    // Flags and environment.
    &["config"],
    // Small leaves.
    &[
        "accept",
        "cache",
        "check_allow",
        "cors",
        "ids",
        "metrics",
        "rate_limit",
        "supervisor",
        // The web console's embedded files.
        "ui",
    ],
    // The daemon's one error type.
    &["error"],
];

/// One import: which file, which line, which top-level module it names.
#[derive(Debug)]
struct Import {
    file: PathBuf,
    line: usize,
    target: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file under `src`: `state/writer.rs` is `["state", "writer"]`,
/// `state/mod.rs` and `state.rs` are `["state"]`, `lib.rs` is `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// `line` without a trailing `//` comment (one outside a string literal).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The first identifier of each item of a `{a::b, c, d::{e, f}}` group (given without
/// its outer braces).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in group.chars().chain(std::iter::once(',')) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    heads.push(head);
                }
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            item.push(c);
        }
    }
    heads
}

/// What follows `prefix` at `at` in `code`: the names it reaches at the crate root.
fn names_after(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    if let Some(group) = rest.strip_prefix('{') {
        // A group may span lines; the callers pass the whole file's code.
        let mut depth = 1;
        let end = group
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i);
        return group_heads(&group[..end]);
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    vec![name]
}

/// Items the crate root re-exports or imports from a module (`use error::{Error,
/// Result};`), so that `crate::Error` counts as an import of `error`.
fn root_items() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let mut items = BTreeMap::new();
    for line in lib.lines().map(code_of) {
        let line = line.trim();
        let Some(path) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("use "))
        else {
            continue;
        };
        let path = path.trim_end_matches(';');
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let rest = rest.trim_start_matches('{').trim_end_matches('}');
        for item in rest.split(',') {
            let item = item.rsplit("::").next().unwrap().trim();
            if !item.is_empty() {
                items.insert(item.to_string(), module.to_string());
            }
        }
    }
    items
}

/// Every import between top-level modules, by importing module.
fn imports() -> BTreeMap<String, Vec<Import>> {
    let src = src_dir();
    let roots = root_items();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut imports: BTreeMap<String, Vec<Import>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().to_path_buf();
        let path = module_path(&relative);
        let Some(top) = path.first().cloned() else {
            continue; // the crate root
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code: Vec<&str> = text.lines().map(code_of).collect();
        let joined = code.join("\n");
        let line_of = |offset: usize| joined[..offset].matches('\n').count() + 1;
        let mut found = Vec::new();
        for (offset, _) in joined.match_indices("crate::") {
            let before = joined[..offset].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `registry_crate::`
            }
            found.push((offset, names_after(&joined, offset + "crate::".len())));
        }
        for (offset, _) in joined.match_indices("super::") {
            if joined[..offset].ends_with("super::") {
                continue; // counted from the first `super::` of a chain
            }
            let before = joined[..offset].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut end = offset;
            let mut ups = 0;
            while joined[end..].starts_with("super::") {
                end += "super::".len();
                ups += 1;
            }
            if ups >= path.len() {
                found.push((offset, names_after(&joined, end)));
            }
        }
        for (offset, names) in found {
            for name in names {
                let target = roots.get(&name).cloned().unwrap_or(name);
                if target != top && target != "self" {
                    imports.entry(top.clone()).or_default().push(Import {
                        file: relative.clone(),
                        line: line_of(offset),
                        target,
                    });
                }
            }
        }
    }
    imports
}

/// The top-level modules of the crate, as declared in `lib.rs`.
fn declared_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    lib.lines()
        .map(code_of)
        .filter_map(|line| {
            let line = line.trim();
            let name = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            Some(name.trim_end_matches(';').to_string())
        })
        .collect()
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<_> = declared_modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer of tests/layers.rs: {unplaced:?}; place each where it belongs"
    );
}

#[test]
fn modules_import_only_layers_below_their_own() {
    let modules = declared_modules();
    let mut wrong = Vec::new();
    for (from, imports) in imports() {
        for import in imports {
            if !modules.contains(&import.target) {
                continue; // an item of the crate root itself, such as `RunningServer`
            }
            let (Some(here), Some(there)) = (layer_of(&from), layer_of(&import.target)) else {
                continue; // reported by every_module_has_a_layer
            };
            if there <= here {
                wrong.push(format!(
                    "{}:{}: {from} imports {}, which is not in a layer below it",
                    import.file.display(),
                    import.line,
                    import.target
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let modules = declared_modules();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, imports) in imports() {
        for import in imports {
            if modules.contains(&import.target) {
                edges.entry(from.clone()).or_default().insert(import.target);
            }
        }
    }
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        module: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_store_knows_no_object_shapes() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry-store/Cargo.toml");
    let manifest = std::fs::read_to_string(manifest).unwrap();
    for upper in ["registry-types", "registry-server"] {
        assert!(
            !manifest.contains(upper),
            "registry-store depends on {upper}: the store sees kinds, keys and JSON text only"
        );
    }
}

#[test]
fn the_reader_finds_imports() {
    // The reader itself, on the forms the sources use.
    assert_eq!(
        group_heads("auth::{Caller, Permission}, state::Command, Error"),
        ["auth", "state", "Error"]
    );
    assert_eq!(
        code_of(r#"let url = "http://x"; // crate::api"#),
        r#"let url = "http://x"; "#
    );
    assert_eq!(module_path(Path::new("state/mod.rs")), ["state"]);
    assert_eq!(
        module_path(Path::new("state/writer.rs")),
        ["state", "writer"]
    );
    let imports = imports();
    let targets = |from: &str| -> BTreeSet<String> {
        imports[from].iter().map(|i| i.target.clone()).collect()
    };
    assert!(targets("api").contains("state"), "{:?}", targets("api"));
    assert!(
        targets("state").contains("error"),
        "crate::Error is error's"
    );
}
