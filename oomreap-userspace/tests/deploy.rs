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

/// The Kubernetes minor versions the manifests are validated against: the two newest that
/// kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.36.0", "1.37.0"];

/// kubernetes-validate (PyPI) in a venv of the tests' own, created on first use.
fn kubernetes_validate(test: &str) -> Option<std::path::PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-venv");
    let program = venv.join("bin/kubernetes-validate");
    if program.exists() {
        return Some(program);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "kubernetes-validate"])
            .status()
            .is_ok_and(|s| s.success());
    if made {
        return Some(program);
    }
    let _ = std::fs::remove_dir_all(&venv);
    // CI has PyPI: there a failed install is a failure, not a skip.
    assert!(
        std::env::var_os("CI").is_none(),
        "could not install kubernetes-validate from PyPI into {}",
        venv.display()
    );
    common::skip(
        test,
        "python3 -m venv or pip install kubernetes-validate failed",
    );
    None
}

#[test]
fn manifests_validate_strictly_against_two_kubernetes_versions() {
    const TEST: &str = "manifests_validate_strictly_against_two_kubernetes_versions";
    let Some(validate) = kubernetes_validate(TEST) else {
        return;
    };
    let dir = Path::new(DEPLOY).join("kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("list deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validate)
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "Kubernetes {version}:\n{said}");
        for line in said.lines().filter(|l| !l.starts_with("INFO ")) {
            // The Prometheus Operator's kinds are CRDs, outside Kubernetes' own schemas: they
            // are checked against the DaemonSet below.
            assert!(
                line.contains("Couldn't find schema for kind")
                    && line.contains("monitoring.coreos.com/v1"),
                "Kubernetes {version}: {line}"
            );
        }
        assert!(
            said.contains(&format!(
                "passed for resource daemonset/oomreap against version {}",
                &version[..4]
            )),
            "{said}"
        );
    }
}

#[test]
fn monitors_select_the_daemonsets_pods_and_port() {
    let docs: Vec<Value> = [
        "kubernetes/daemonset.yaml",
        "kubernetes/podmonitor.yaml",
        "kubernetes/servicemonitor.yaml",
    ]
    .iter()
    .flat_map(|f| yaml_documents(&read(f)))
    .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let pod = &kind("DaemonSet")["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    let port_names: Vec<&Value> = pod["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| &p["name"])
        .collect();
    let selects_pods = |selector: &Value| {
        selector["matchLabels"]
            .as_object()
            .is_some_and(|m| m.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    let podmonitor = kind("PodMonitor");
    assert!(selects_pods(&podmonitor["spec"]["selector"]));
    for endpoint in podmonitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("endpoints")
    {
        assert!(port_names.contains(&&endpoint["port"]), "{endpoint}");
    }
    let service = kind("Service");
    assert!(selects_pods(
        &serde_json::json!({ "matchLabels": service["spec"]["selector"] })
    ));
    let servicemonitor = kind("ServiceMonitor");
    let service_labels = service["metadata"]["labels"]
        .as_object()
        .expect("service labels");
    assert!(
        servicemonitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .is_some_and(|m| m.iter().all(|(k, v)| service_labels.get(k) == Some(v)))
    );
    for monitor in [podmonitor, servicemonitor] {
        assert!(
            monitor["metadata"]["labels"]["release"].is_string(),
            "{monitor}"
        );
    }
}
