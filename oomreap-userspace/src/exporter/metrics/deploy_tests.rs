use std::collections::BTreeSet;

use prometheus_client::encoding::prometheus_text::encode;

use super::*;

/// Every family with one series, so the exposition names them all.
fn every_name() -> BTreeSet<String> {
    let (mut metrics, registry) = Metrics::new();
    let labels = |s: &str| s.to_owned();
    metrics
        .victims
        .get_or_create(&Outcome {
            outcome: labels("x"),
        })
        .inc();
    metrics
        .cgroup_victims
        .get_or_create(&CgroupOutcome::new(&CgroupIdentity::path(labels("x")), "x"))
        .inc();
    metrics
        .cgroup_oom_loops
        .get_or_create(&CgroupIdentity::path(labels("x")))
        .inc();
    metrics
        .attempts
        .get_or_create(&ResultLabel {
            result: labels("x"),
        })
        .inc();
    metrics
        .skips
        .get_or_create(&Cause { cause: labels("x") })
        .inc();
    for family in [&metrics.notifier_victims, &metrics.notifier_refusals] {
        family
            .get_or_create(&Notifier {
                notifier: labels("x"),
            })
            .inc();
    }
    metrics
        .mrelease
        .get_or_create(&MreleaseLabels {
            result: labels("x"),
            target: labels("x"),
        })
        .inc();
    metrics
        .mrelease_freed
        .get_or_create(&Target {
            target: labels("x"),
        })
        .inc();
    metrics
        .retries
        .get_or_create(&Kind { kind: labels("x") })
        .inc();
    metrics.set_dropped(
        KernelCounters {
            ring_buffer_full: 1,
            read_failed: 0,
        },
        0,
    );
    metrics
        .hooks
        .get_or_create(&Hook {
            hook: labels("x"),
            kind: labels("function"),
            mode: labels("none"),
        })
        .set(1);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// `oomreap_…` names in a rules file or dashboard.
fn used_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("oomreap_"))
        .map(String::from)
        .collect()
}

#[test]
fn the_deployment_uses_only_exported_metrics() {
    let exported = every_name();
    for (file, text) in [
        (
            "deploy/prometheus/rules.yml",
            include_str!("../../../../deploy/prometheus/rules.yml"),
        ),
        (
            "deploy/kubernetes/prometheusrule.yaml",
            include_str!("../../../../deploy/kubernetes/prometheusrule.yaml"),
        ),
        (
            "deploy/grafana/oomreap-dashboard.json",
            include_str!("../../../../deploy/grafana/oomreap-dashboard.json"),
        ),
    ] {
        let used = used_names(text);
        assert!(!used.is_empty(), "{file} uses no oomreap metric");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics oomreap does not export: {unknown:?}"
        );
    }
}

#[test]
fn every_family_is_on_the_dashboard_and_every_query_filters_by_instance() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../deploy/grafana/oomreap-dashboard.json"
    ))
    .unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| used_names(e)).collect();
    // A family's samples: `x_total`, or a histogram's `x_bucket`, `x_sum`, `x_count`.
    let families: BTreeSet<String> = every_name()
        .into_iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).map(str::to_owned))
                .unwrap_or(n)
        })
        .collect();
    for family in &families {
        assert!(
            used.iter().any(|u| u.starts_with(family.as_str())),
            "no dashboard panel shows {family}"
        );
    }
    for expr in &exprs {
        assert!(
            expr.contains("instance=~\"$instance\""),
            "not filtered by $instance: {expr}"
        );
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for variable in ["datasource", "node", "instance"] {
        assert!(variables.contains(&variable), "no ${variable} variable");
    }
    // Top-N lists are tables of one instant query over the range, not time series.
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        if targets
            .iter()
            .any(|t| t["expr"].as_str().is_some_and(|e| e.contains("topk")))
        {
            assert_eq!(panel["type"], "table", "{}", panel["title"]);
            assert!(
                targets.iter().all(|t| t["instant"] == true),
                "{}",
                panel["title"]
            );
        }
    }
}
