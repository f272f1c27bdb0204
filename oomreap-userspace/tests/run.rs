//! `oomreap run -- CMD`: expectations, reports and the exit-status contract, for real.
//! Needs root (the capture) except where said. See tests/README.md.

mod common;

use std::{os::unix::process::CommandExt as _, process::Command};

use common::{OOMREAP, TempDir, privileged};
use quick_xml::events::Event;
use serde_json::Value;

/// `oomreap run ARGS -- CMD…`: (exit code, stderr).
fn run(args: &[&str], command: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(OOMREAP)
        .arg("run")
        .args(args)
        .arg("--")
        .args(command)
        .output()
        .expect("run oomreap run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn schema_check(report: &Value) {
    let schema: Value = serde_json::from_str(include_str!("../../docs/run-report.schema.json"))
        .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match docs/run-report.schema.json: {errors:?}\n{report:#}"
    );
}

#[test]
fn a_quick_exit_passes_expect_reaped_with_a_valid_json_report() {
    let Some(_lock) = privileged("a_quick_exit_passes_expect_reaped_with_a_valid_json_report")
    else {
        return;
    };
    let dir = TempDir::new();
    let json = dir.0.join("report.json");
    let args = vec![
        "--expect-reaped",
        "--expect-victims",
        "1",
        "--descendants",
        "--json",
        json.to_str().expect("path"),
    ];
    let (code, stderr) = run(&args, &[OOMREAP, "inject", "quick-exit"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("JSON");
    schema_check(&report);
    assert_eq!(report["passed"], true);
    assert_eq!(report["victims"][0]["outcome"], "exited");
    assert_eq!(report["victims"][0]["comm"], "oomreap-hog");
    // Judged recovered, unless the domain was read again only after the scenario removed
    // its cgroup (a slow machine, or no exit_mmap tracepoint before 6.1).
    let recovery = &report["victims"][0]["recovery"];
    let gone = recovery["why"]
        .as_str()
        .is_some_and(|w| w.ends_with("was removed"));
    if !gone {
        assert_eq!(recovery["verdict"], "recovered", "{recovery}");
    }
    assert!(
        report["scope"]
            .as_str()
            .is_some_and(|s| s.starts_with("descendants of pid"))
    );
}

#[test]
fn shared_memory_fails_expect_recovered_and_fail_on_oom_loop_and_names_the_cause() {
    let test = "shared_memory_fails_expect_recovered_and_fail_on_oom_loop_and_names_the_cause";
    let Some(_lock) = privileged(test) else {
        return;
    };
    let dir = TempDir::new();
    let json = dir.0.join("report.json");
    let (code, stderr) = run(
        &[
            "--expect-recovered",
            "--fail-on",
            "oom-loop",
            "--descendants",
            "--json",
            json.to_str().expect("path"),
        ],
        &[OOMREAP, "inject", "shmem-victim"],
    );
    assert_eq!(code, Some(90), "an expectation failed: {stderr}");
    assert!(
        stderr.contains("its domain did not recover: shmem (shared memory no kill frees)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("its kill was one of an OOM loop's"),
        "{stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    schema_check(&report);
    let victims = report["victims"].as_array().expect("victims");
    assert_eq!(victims.len(), 3, "{report:#}");
    for v in victims {
        assert_eq!(v["recovery"]["verdict"], "not_recovered", "{v}");
        assert_eq!(v["recovery"]["cause"], "shmem", "{v}");
    }
    // The loop holds the last kill whichever rule started it.
    assert_eq!(victims[2]["in_oom_loop"], true, "{report:#}");
}

#[test]
fn a_jammed_lock_fails_fail_on_gave_up_and_names_the_victim() {
    let Some(_lock) = privileged("a_jammed_lock_fails_fail_on_gave_up_and_names_the_victim") else {
        return;
    };
    let dir = TempDir::new();
    let (junit, json, inject) = (
        dir.0.join("junit.xml"),
        dir.0.join("report.json"),
        dir.0.join("inject.json"),
    );
    let script = format!(
        "{OOMREAP} inject lock-contended --json > {}",
        inject.display()
    );
    let (code, stderr) = run(
        &[
            "--fail-on",
            "gave-up",
            "--fail-on",
            "dropped-events",
            "--junit",
            junit.to_str().expect("path"),
            "--json",
            json.to_str().expect("path"),
        ],
        &["sh", "-c", &script],
    );
    assert_eq!(code, Some(90), "an expectation failed: {stderr}");
    let injected: Value =
        serde_json::from_str(&std::fs::read_to_string(&inject).expect("inject report"))
            .expect("JSON");
    let victim = injected["victims"][0]["pid"].as_u64().expect("victim pid");
    let named = format!("victim pid {victim} (oomreap-victim): the reaper gave up");
    assert!(stderr.contains(&named), "stderr names the victim: {stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    schema_check(&report);
    // Named as resolved at the kill: the scenario removed its cgroup before the report was
    // written. (A quick exit's cgroup may be gone before a slow machine reads the kill: the
    // name is best effort, so this asks it of a victim whose cgroup lives for seconds.)
    let cgroup = injected["cgroup"]["path"].as_str().expect("cgroup path");
    let cgroup = cgroup.rsplit_once('/').map_or(cgroup, |(_, name)| name);
    let memcg = report["victims"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["pid"] == victim))
        .map(|v| &v["memcg"])
        .expect("the victim in the report");
    assert_eq!(memcg["path"], format!("/{cgroup}").as_str(), "{memcg}");
    assert_eq!(
        memcg["pod"],
        Value::Null,
        "no pod outside Kubernetes: {memcg}"
    );

    // The JUnit file parses, with one case per expectation and the failure on gave-up.
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures, mut current) = (Vec::new(), Vec::new(), String::new());
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == "testcase" => {
                let name = e
                    .try_get_attribute("name")
                    .expect("attribute")
                    .expect("a name");
                current = name.value.to_string();
                cases.push(current.clone());
            }
            Event::Start(e) if e.name().as_ref() == "failure" => {
                let message = e
                    .try_get_attribute("message")
                    .expect("attribute")
                    .expect("a message");
                failures.push((current.clone(), message.value.to_string()));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(cases, ["fail-on gave-up", "fail-on dropped-events"]);
    assert_eq!(failures, [("fail-on gave-up".to_owned(), named)]);
}

#[test]
fn an_odp_victim_fails_fail_on_notifier_and_partial_and_names_the_cause() {
    let test = "an_odp_victim_fails_fail_on_notifier_and_partial_and_names_the_cause";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if !std::path::Path::new("/sys/module/rdma_rxe").exists() {
        common::skip(
            test,
            "rdma_rxe is not loaded (no soft-RoCE here; the matrix's generic 6.18 and 7.x \
             kernels run it)",
        );
        return;
    }
    let dir = TempDir::new();
    let (json, inject) = (dir.0.join("report.json"), dir.0.join("inject.json"));
    let script = format!("{OOMREAP} inject odp-victim --json > {}", inject.display());
    let (code, stderr) = run(
        &[
            "--fail-on",
            "notifier",
            "--fail-on",
            "partial",
            "--json",
            json.to_str().expect("path"),
        ],
        &["sh", "-c", &script],
    );
    assert_eq!(code, Some(90), "an expectation failed: {stderr}");
    let injected: Value =
        serde_json::from_str(&std::fs::read_to_string(&inject).expect("inject report"))
            .expect("JSON");
    let victim = injected["victims"][0]["pid"].as_u64().expect("victim pid");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    schema_check(&report);
    let summary = report["victims"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["pid"] == victim))
        .expect("the victim in the report");
    assert_eq!(
        (
            &summary["outcome"],
            &summary["gave_up_cause"],
            &summary["partial_reaps"]
        ),
        (
            &Value::from("gave_up"),
            &Value::from("notifier"),
            &Value::from(10)
        ),
        "{summary}"
    );
    // Both expectations fail, each naming the victim.
    for why in ["mmu notifiers", "10 partial reaps"] {
        assert!(
            stderr.contains(&format!("victim pid {victim} (oomreap-hog): "))
                && stderr.contains(why),
            "stderr names the victim and {why:?}: {stderr}"
        );
    }
}

#[test]
fn the_exit_status_contract() {
    let Some(_lock) = privileged("the_exit_status_contract") else {
        return;
    };
    // The command's own status passes through, signals as 128 + N.
    assert_eq!(run(&[], &["sh", "-c", "exit 7"]).0, Some(7));
    assert_eq!(
        run(&[], &["sh", "-c", "kill -TERM $$"]).0,
        Some(128 + libc::SIGTERM)
    );
    // A failed expectation wins over the command's status.
    assert_eq!(run(&["--expect-victims", "1"], &["true"]).0, Some(90));
    assert_eq!(
        run(&["--min-victims", "1"], &["sh", "-c", "exit 3"]).0,
        Some(90)
    );
    // oomreap's own failures: a command that cannot start, and no privileges.
    let (code, stderr) = run(&[], &["/nonexistent/command"]);
    assert_eq!(code, Some(91), "{stderr}");
    assert!(stderr.contains("/nonexistent/command"), "{stderr}");
    let out = Command::new(OOMREAP)
        .args(["run", "--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    assert_eq!(
        out.status.code(),
        Some(91),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
