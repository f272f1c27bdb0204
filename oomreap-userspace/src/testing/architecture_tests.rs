//! docs/architecture.md's import rules, checked on the source: a front end reaches events
//! only through the intake, never through `capture` or another front end, and the tracker
//! imports nothing but the wire format.
use std::path::{Path, PathBuf};

const FRONT_ENDS: [&str; 4] = ["trace", "tui", "exporter", "session"];

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

#[test]
fn front_ends_lean_on_nobody_but_the_intake() {
    let mut violations = Vec::new();
    for front_end in FRONT_ENDS {
        for file in files_of(front_end) {
            let source = std::fs::read_to_string(&file).unwrap();
            for module in crate_modules(&source) {
                let other_front_end = FRONT_ENDS.contains(&module.as_str()) && module != front_end;
                if module == "capture" || other_front_end {
                    violations.push(format!("{} imports {module}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_tracker_imports_only_the_wire_format() {
    for file in files_of("tracker") {
        let source = std::fs::read_to_string(&file).unwrap();
        for module in crate_modules(&source) {
            assert!(
                ["wire", "tracker", "testing"].contains(&module.as_str()),
                "{} imports {module}",
                file.display()
            );
        }
    }
}
