//! The layer rule of docs/ARCHITECTURE.md, enforced: every file under `src/` imports only from its own layer or the ones below it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, from the ground up: each top-level module of the library and the layer it is in.
/// Keep this table and the one in docs/ARCHITECTURE.md the same.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "fsutil", "duration", "size", "process", "cancel", "retry", "paths", "sysinfo", "error",
        ],
    ),
    ("repo", &["repo"]),
    ("sources", &["sources"]),
    ("engine", &["engine"]),
    (
        "schedule and record",
        &["schedule", "record", "state", "logfiles"],
    ),
    ("config", &["config"]),
    ("app", &["job", "verify", "monitor"]),
    ("edges", &["protocol", "daemon", "ctl", "service", "bin"]),
];

/// The imports that go up, each with the reason docs/ARCHITECTURE.md gives: (file, module).
const ALLOWED_UP: &[(&str, &str)] = &[
    // The library's one error type wraps the storage backends' errors and classifies HTTP
    // failures into exit codes (15 unreachable, 16 storage full).
    ("src/error.rs", "repo"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/engine/check.rs` → `engine`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments and without its unit tests (a `#[cfg(test)]`
/// module may use anything).
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::` (or `backupd::`, in the binaries).
fn imported_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "backupd::"] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.push(ident(item.trim()));
                }
            } else {
                out.push(ident(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().unwrap().is_lowercase());
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn every_file_imports_only_from_its_layer_or_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut unplaced = BTreeMap::new();
    for f in &files {
        let own = module_of(&src, f);
        if own == "lib" {
            continue;
        }
        let Some(own_layer) = layer_of(&own) else {
            unplaced.insert(own.clone(), f.display().to_string());
            continue;
        };
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        for m in imported_modules(&code_of(&fs::read_to_string(f).unwrap())) {
            let Some(l) = layer_of(&m) else {
                // `crate::Error`, `crate::Result` and the like are not modules; an unknown
                // lowercase module is caught by the unplaced check below through its own files.
                continue;
            };
            if l > own_layer && !ALLOWED_UP.contains(&(rel.as_str(), m.as_str())) {
                wrong.push(format!(
                    "{rel} ({}) imports {m} ({})",
                    LAYERS[own_layer].0, LAYERS[l].0
                ));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS here and to docs/ARCHITECTURE.md): {unplaced:?}"
    );
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that go up a layer (move the item down, or pass it in as a parameter; see docs/ARCHITECTURE.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_allowed_exceptions_are_still_needed_and_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    for (file, module) in ALLOWED_UP {
        let code = code_of(&fs::read_to_string(root.join(file)).unwrap());
        assert!(
            imported_modules(&code).iter().any(|m| m == module),
            "{file} no longer imports {module}: remove the exception from ALLOWED_UP and docs/ARCHITECTURE.md"
        );
        assert!(
            doc.contains(file),
            "docs/ARCHITECTURE.md does not name the exception {file} -> {module}"
        );
    }
    for (layer, mods) in LAYERS {
        for m in *mods {
            assert!(
                doc.contains(&format!("`{m}`")),
                "docs/ARCHITECTURE.md does not place `{m}` (layer {layer})"
            );
        }
    }
}

#[test]
fn the_rule_catches_an_upward_import() {
    // The checker itself: a foundation importing the daemon is found, a comment is not.
    let code = code_of("use crate::daemon::core;\n// use crate::ctl::x;\nfn f() {}\n");
    assert_eq!(imported_modules(&code), vec!["daemon".to_string()]);
    let grouped = imported_modules("use crate::{engine::walk, repo::Repository, Error};");
    assert_eq!(grouped, vec!["engine".to_string(), "repo".to_string()]);
    assert!(layer_of("daemon") > layer_of("fsutil"));
}
