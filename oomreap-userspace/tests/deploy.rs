//! The deployment files, checked with the tools that will read them: the alert rules with
//! promtool (syntax and their unit tests), the PrometheusRule against the plain rules, and
//! every alert against its runbook section and its tests. No root needed.

mod common;

use std::{path::Path, process::Command};

use common::{have, yaml_documents};
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn read(relative: &str) -> String {
    let path = Path::new(DEPLOY).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn only_document(relative: &str) -> Value {
    let mut docs = yaml_documents(&read(relative));
    assert_eq!(docs.len(), 1, "{relative} holds one document");
    docs.remove(0)
}

/// Every alerting rule of deploy/prometheus/rules.yml.
fn alerts() -> Vec<Value> {
    only_document("prometheus/rules.yml")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    const TEST: &str = "alert_rules_pass_promtool_and_their_unit_tests";
    if !have("promtool", TEST) {
        return;
    }
    let dir = Path::new(DEPLOY).join("prometheus");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_prometheus_rule_holds_the_same_groups() {
    let plain = only_document("prometheus/rules.yml");
    let operator = only_document("kubernetes/prometheusrule.yaml");
    assert_eq!(operator["spec"]["groups"], plain["groups"]);
    // kube-prometheus-stack selects rules by its release's name.
    assert!(operator["metadata"]["labels"]["release"].is_string());
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let runbook = std::fs::read_to_string(Path::new(DEPLOY).join("../docs/runbook.md"))
        .expect("docs/runbook.md");
    let alerts = alerts();
    assert!(alerts.len() >= 5, "{alerts:?}");
    for alert in alerts {
        let name = alert["alert"].as_str().expect("alert name");
        assert!(
            ["info", "warning", "critical"]
                .contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                alert["annotations"][annotation]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: {annotation}"
            );
        }
        let url = format!(
            "https://github.com/oomreap/oomreap/blob/main/docs/runbook.md#{}",
            name.to_ascii_lowercase()
        );
        assert_eq!(alert["annotations"]["runbook_url"], url.as_str(), "{name}");
        let section = runbook
            .split("\n## ")
            .find(|s| s.starts_with(&format!("{name}\n")))
            .unwrap_or_else(|| panic!("docs/runbook.md has no section ## {name}"));
        for part in ["**Means.**", "**Confirm.**", "**Do.**"] {
            assert!(
                section.contains(part),
                "{name}'s runbook section lacks {part}"
            );
        }
        assert!(
            section.contains("oomreap "),
            "{name}: confirm it with oomreap on the node"
        );
    }
}

#[test]
fn every_alert_is_tested_both_firing_and_quiet() {
    let tests = only_document("prometheus/rules.test.yml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().expect("alert name");
        let of_alert = || cases.iter().filter(|c| c["alertname"] == name);
        assert!(
            of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "no test where {name} fires"
        );
        assert!(
            of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty)),
            "no test where {name} stays quiet"
        );
    }
}
