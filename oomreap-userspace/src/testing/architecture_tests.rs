//! docs/architecture.md's import rules, checked on the source. Each layer names the
//! top-level modules its product code may import (tests may import more); nothing in the
//! product imports the test support in `testing`.
use std::path::{Path, PathBuf};

/// Modules any product code may use: the clock and the fault seam (empty in what users run).
const ANYWHERE: [&str; 2] = ["clock", "faults"];

/// Each layer, and what else its product code may import.
const RULES: &[(&[&str], &[&str])] = &[
    // The wire format stands alone; the tracker is pure, over decoded events only.
    (&["wire"], &[]),
    (&["tracker"], &["wire"]),
    // Front ends lean on nothing but the intake, its wording and the tracker's types.
    (
        &["trace", "tui", "exporter", "session"],
        &["intake", "wording", "tracker"],
    ),
    // Wording reads what the intake annotated, never a front end or the kernel side.
    (&["wording"], &["intake", "tracker", "wire"]),
    // The intake joins capture to the tracker; it words nothing.
    (
        &["intake"],
        &[
            "capture",
            "enrich",
            "kernel",
            "recording",
            "tracker",
            "wire",
        ],
    ),
    (&["capture"], &["kernel", "wire"]),
    // What the intake reads the kernel and the system through, beneath the layers above.
    (&["enrich"], &["cgroup", "kernel", "tracker", "wire"]),
    (&["recording"], &["wire"]),
    (&["cgroup"], &["kernel"]),
    (&["kernel"], &[]),
    // doctor reports what the kernel and the capture offer, not what the pipeline makes.
    (
        &["doctor"],
        &["capture", "cgroup", "enrich", "kernel", "wording"],
    ),
    // inject's scenarios drive the kernel, with the reaper's timing from the tracker and the
    // JSON schema's version from wording; never the capture or a front end.
    (&["inject"], &["cgroup", "kernel", "tracker", "wording"]),
];

/// Layers that are pure: not even [`ANYWHERE`]'s clock or fault seam.
const PURE: [&str; 2] = ["tracker", "wire"];
/// The `.rs` files of module `name` (a folder or a file).
fn files_of(name: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let dir = src.join(name);
    if !dir.is_dir() {
        return vec![src.join(format!("{name}.rs"))];
    }
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level crate modules a file names: `crate::X` anywhere, and each item of a
/// `use crate::{…}` group. Comments are ignored.
fn crate_modules(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut modules = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, at brace depth 0.
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        modules.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || item.is_empty() {
                    item.push(c);
                }
            }
            modules.push(first_segment(&item));
        } else {
            modules.push(first_segment(rest));
        }
    }
    modules.retain(|m| !m.is_empty());
    modules
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn the_parser_sees_groups_and_paths() {
    let source = "use crate::{\n    capture::{A, B},\n    trace::text, // crate::tui\n};\nfn f() { crate::wording::x(); }";
    assert_eq!(crate_modules(source), ["capture", "trace", "wording"]);
}

/// The product part of a source file: none of a test file (`tests.rs`, `*_tests.rs`), and a
/// module's code up to its `#[cfg(test)]` tests.
fn product_code(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return String::new();
    }
    let source = std::fs::read_to_string(file).unwrap();
    match source.find("#[cfg(test)]\nmod ") {
        Some(at) => source[..at].to_owned(),
        None => source,
    }
}

/// Every import of `module`'s product code that `allowed` (with [`ANYWHERE`]) does not name.
fn violations_of(module: &str, allowed: &[&str]) -> Vec<String> {
    let mut violations = Vec::new();
    for file in files_of(module) {
        for imported in crate_modules(&product_code(&file)) {
            // `crate::REVISION` and the like are the crate root's constants, not modules.
            let root_item = imported.starts_with(|c: char| c.is_ascii_uppercase());
            let fine = root_item
                || imported == module
                || allowed.contains(&imported.as_str())
                || ANYWHERE.contains(&imported.as_str()) && !PURE.contains(&module);
            if !fine {
                violations.push(format!("{} imports {imported}", file.display()));
            }
        }
    }
    violations
}

fn all_violations() -> Vec<String> {
    let mut violations: Vec<String> = RULES
        .iter()
        .flat_map(|(layer, allowed)| layer.iter().flat_map(|m| violations_of(m, allowed)))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if module == "testing" || !(name.ends_with(".rs") || src.join(module).is_dir()) {
            continue;
        }
        for file in files_of(module) {
            if crate_modules(&product_code(&file))
                .iter()
                .any(|m| m == "testing")
            {
                violations.push(format!("{} imports testing (test support)", file.display()));
            }
        }
    }
    violations
}

#[test]
fn every_layer_imports_only_what_its_rule_allows() {
    let violations = all_violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_rules_cover_what_they_name() {
    // A rule naming a module that moved would check nothing.
    for (layer, _) in RULES {
        for module in *layer {
            assert!(
                files_of(module).iter().all(|f| f.exists()),
                "rule for {module}: no such module"
            );
        }
    }
}

/// Every file `docs/architecture.md` names exists: `src/…` in this crate, `oomreap-…/…` in
/// the workspace, a bare `name.rs` anywhere in it. A file that moves fails this until the
/// drawing follows.
#[test]
fn the_architecture_doc_names_files_that_exist() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = crate_dir.parent().unwrap();
    let doc = std::fs::read_to_string(workspace.join("docs/architecture.md")).unwrap();
    let mut every_file = Vec::new();
    let mut stack = vec![workspace.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') && name != "target" {
                stack.push(path);
            } else {
                every_file.push(name);
            }
        }
    }
    let mut missing = Vec::new();
    for (i, span) in doc.split('`').enumerate() {
        let is_path = span.ends_with(".rs") || span.ends_with(".md") || span.ends_with('/');
        if i % 2 == 0 || !is_path || span.contains(' ') || span.contains("::") {
            continue;
        }
        let exists = if let Some(rest) = span.strip_prefix("src/") {
            crate_dir.join("src").join(rest).exists()
        } else if span.starts_with("oomreap-") || span.starts_with("docs/") {
            workspace.join(span).exists()
        } else if span.ends_with('/') {
            crate_dir.join("src").join(span).exists() || workspace.join(span).exists()
        } else {
            let name = span.rsplit('/').next().unwrap_or(span);
            every_file.iter().any(|f| f == name)
        };
        if !exists {
            missing.push(span.to_owned());
        }
    }
    assert!(missing.is_empty(), "docs/architecture.md names {missing:?}");
}
