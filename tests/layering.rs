//! The layering rules of docs/ARCHITECTURE.md, checked on the source: no two top-level
//! modules import each other (directly or through others), engines and the store never import
//! the API, and no file in `src/` grows past 700 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module of a file under `src/` (`network` for `src/network/netlink/read.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// `crate::X` references outside `#[cfg(test)]` code, by top-level module.
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files {
        let m = module_of(src, &f);
        if m == "bin" || m == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let rel = f
            .strip_prefix(src)
            .expect("under src")
            .display()
            .to_string();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty()
                && name != m
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                g.entry(m.clone())
                    .or_default()
                    .entry(name)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    g
}

fn reaches(g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            if let Some(next) = g.get(&n) {
                todo.extend(next.keys().cloned());
            }
        }
    }
    false
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_loops_between_modules() {
    let g = graph(&src());
    let mut loops = Vec::new();
    for (a, deps) in &g {
        for (b, files) in deps {
            if reaches(&g, b, a) {
                loops.push(format!("{a} -> {b} (from {files:?}) and back"));
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
    // The rule's own premise: the graph is not empty (the scan reads real code).
    assert!(g.get("api").is_some_and(|d| d.contains_key("store")));
}

#[test]
fn engines_and_the_store_never_import_the_api() {
    let g = graph(&src());
    for m in [
        "container",
        "vm",
        "vmm",
        "network",
        "storage",
        "store",
        "guest",
        "types",
        "access",
    ] {
        let api = g.get(m).and_then(|d| d.get("api"));
        assert!(api.is_none(), "{m} imports the API from {api:?}");
    }
    let types = g
        .get("types")
        .map(|d| d.keys().cloned().collect::<Vec<_>>());
    assert!(
        types.is_none(),
        "types/ depends on nothing in the crate, not {types:?}"
    );
}

#[test]
fn no_source_file_over_700_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams:\n{}",
        long.join("\n")
    );
}
