//! docs/events.md against the output: every field a JSON object carries is named in the
//! section that documents it, so the docs cannot fall behind a new field unnoticed.
use std::path::Path;

use serde_json::Value;

fn events_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The prose and tables of `doc` from the heading that starts with `heading` to the next
/// `## ` heading; examples (fenced blocks) left out, as a field only they show is not described.
fn section(doc: &str, heading: &str) -> String {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading:?} in docs/events.md"));
    let rest = &doc[start + heading.len()..];
    let rest = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut in_example = false;
    let mut out = String::new();
    for line in rest.lines() {
        if line.starts_with("```") {
            in_example = !in_example;
        } else if !in_example {
            out += line;
            out += "\n";
        }
    }
    out
}

/// Every object key in `value`, at any depth.
fn keys(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                out.insert(key.clone());
                keys(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

/// The keys `doc` never names as a whole word.
fn undocumented(doc: &str, keys: &std::collections::BTreeSet<String>) -> Vec<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    keys.iter()
        .filter(|key| {
            !doc.match_indices(key.as_str()).any(|(at, _)| {
                let before = doc[..at].chars().next_back().is_none_or(|c| !word(c));
                let after = doc[at + key.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !word(c));
                before && after
            })
        })
        .cloned()
        .collect()
}

#[test]
fn every_field_trace_writes_is_documented() {
    let doc = events_md();
    let trace = section(&doc, "## `oomreap trace --json`");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut found = std::collections::BTreeSet::new();
    let mut steps = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&golden).unwrap().filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(entry.path().join("trace.jsonl")) else {
            continue;
        };
        for line in text.lines() {
            let object: Value = serde_json::from_str(line).unwrap();
            steps.insert(object["step"].as_str().unwrap().to_owned());
            keys(&object, &mut found);
        }
    }
    assert!(found.len() > 20, "the goldens hold trace output: {found:?}");
    assert_eq!(undocumented(&trace, &found), Vec::<String>::new());
    let undocumented_steps: Vec<&String> = steps
        .iter()
        .filter(|s| !trace.contains(&format!("| `{s}` |")))
        .collect();
    assert!(undocumented_steps.is_empty(), "{undocumented_steps:?}");
}

#[test]
fn every_field_of_doctor_self_is_documented() {
    use crate::doctor::{ProgramCost, SelfCost};
    let cost = SelfCost {
        seconds: 5,
        programs: vec![ProgramCost {
            program: "mark_victim_btf".into(),
            runs: 1,
            run_time_ns: 100,
        }],
    };
    let mut found = std::collections::BTreeSet::new();
    keys(&cost.json(), &mut found);
    let doc = events_md();
    let section = section(&doc, "## `oomreap doctor --self --json`");
    assert_eq!(undocumented(&section, &found), Vec::<String>::new());
}
