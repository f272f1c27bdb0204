//! Every fault-injection scenario, run for real with the tracer attached: the tracker's
//! verdict must match what the scenario did. Needs root; skips where a device is missing.
//! See tests/README.md.

mod common;

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    OOMREAP, OwnChild, TracefsMount, forced_function_mode, kernel_older_than, lines_of, privileged,
    process_mrelease_here, skip, start_command,
};
use serde_json::{Value, json};

/// What one traced scenario produced.
struct Traced {
    /// The inject report.
    report: Value,
    /// Steps of no victim: `oom_loop`.
    loops: Vec<Value>,
    /// Trace objects per victim tid (or, for a process_mrelease on a process the OOM killer
    /// did not choose, per target process), in order.
    steps: BTreeMap<u64, Vec<Value>>,
}

impl Traced {
    /// The steps of the scenario's (first) victim.
    fn victim(&self) -> &[Value] {
        let pid = self.report["victims"][0]["pid"]
            .as_u64()
            .expect("a victim pid");
        self.steps.get(&pid).map_or(&[], Vec::as_slice)
    }

    fn helper(&self, role: &str) -> u64 {
        self.report["helpers"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["role"] == role))
            .and_then(|h| h["pid"].as_u64())
            .unwrap_or_else(|| panic!("no {role} in {}", self.report))
    }
}

/// Returns true (after saying so) in the kernel matrix's fentry and kprobe rows, for a test
/// whose assertions do not depend on the function attach mode (`why`): the same kernel's
/// tracepoints-only row runs it, so the other rows would repeat it.
fn in_a_function_row(test: &str, why: &str) -> bool {
    match forced_function_mode().as_deref() {
        Some(mode @ ("fentry" | "kprobe")) => {
            common::skip(
                test,
                &format!("in {mode} mode, {why}; this kernel's tracepoints-only row runs it"),
            );
            true
        }
        _ => false,
    }
}

fn step<'a>(steps: &'a [Value], name: &str) -> Vec<&'a Value> {
    steps.iter().filter(|s| s["step"] == name).collect()
}

/// Checks the `__oom_reap_task_mm` calls traced for a victim against `expected` (caller,
/// complete) when fentry or kprobe is forced, and that none are traced when function hooks
/// are off. In the default mode the kernel decides, so nothing is checked.
fn check_reap_calls(steps: &[Value], expected: &[(&str, bool)]) {
    let mut calls = step(steps, "reap_fn");
    // Before 6.0 exit_mmap reaps an OOM victim's mm itself, whenever the last reference
    // goes, which may be long after the outcome (a stuck victim exits once released): one
    // complete such call may come wherever the test did not place it.
    if common::exit_reaps_victims()
        && !expected.iter().any(|(caller, _)| *caller == "exit_mmap")
        && let Some(at) = calls
            .iter()
            .position(|c| c["caller"] == "exit_mmap" && c["complete"] == true)
    {
        calls.remove(at);
    }
    match forced_function_mode().as_deref() {
        Some(mode @ ("fentry" | "kprobe")) => {
            let seen: Vec<(&str, bool)> = calls
                .iter()
                .map(|c| {
                    assert_eq!(c["attach"], mode, "{c}");
                    (
                        c["caller"].as_str().unwrap_or("?"),
                        c["complete"].as_bool().unwrap_or(false),
                    )
                })
                .collect();
            assert_eq!(
                seen, expected,
                "exact reap results in {mode} mode: {calls:#?}"
            );
            // The reaper's passes carry the same exact result (a return probe with room for
            // every call in flight: on 5.10 the reaper's pass overlaps an exiting victim's
            // reap of the same mm).
            let reaped: Vec<bool> = step(steps, "reaped")
                .iter()
                .map(|r| {
                    r["complete"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("a traced result in {r}; steps {steps:#?}"))
                })
                .collect();
            let by_reaper: Vec<bool> = expected
                .iter()
                .filter(|(caller, _)| *caller == "oom_reaper")
                .map(|(_, complete)| *complete)
                .collect();
            assert_eq!(reaped, by_reaper);
        }
        Some(_) => assert!(calls.is_empty(), "function hooks are off: {calls:#?}"),
        None => {}
    }
}

fn outcome(steps: &[Value]) -> &Value {
    step(steps, "outcome")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no outcome in {steps:#?}"))
}

/// Files one line of `trace --json` under its victim's thread id, or as a loop.
fn take_line(line: &str, steps: &mut BTreeMap<u64, Vec<Value>>, loops: &mut Vec<Value>) {
    let object: Value = serde_json::from_str(line).expect("trace JSON");
    if let Some(tid) = object["victim"]["tid"]
        .as_u64()
        // The target's thread is whichever owns its mm by then (the main one may have exited
        // first): its process is the one the scenario names.
        .or_else(|| object["target"]["pid"].as_u64())
    {
        steps.entry(tid).or_default().push(object);
    } else if object["step"] == "oom_loop" {
        loops.push(object);
    }
}

/// Checks that the victim's kill gave its domain back at least its anon RSS (less a
/// megabyte the charge counter may still hold in per-CPU stock): one `recovery` step,
/// `recovered`, unless the scenario had removed its cgroup by the time it was read again.
fn check_recovered(steps: &[Value]) {
    let recoveries = step(steps, "recovery");
    assert_eq!(recoveries.len(), 1, "one recovery per victim: {steps:#?}");
    let r = &recoveries[0]["recovery"];
    // The scenario removes its cgroup as soon as its victim is gone: a machine slower to
    // read the domain again (a TCG guest, 200 ms late) finds it gone.
    let gone = r["why"]
        .as_str()
        .is_some_and(|w| w.ends_with("was removed"));
    if r["verdict"] == "unknown" && gone {
        eprintln!("recovery unknown, the scenario's cgroup already removed: {r}");
        return;
    }
    assert_eq!(r["verdict"], "recovered", "{r}");
    // The RSS counters are per-CPU and summed lazily: they may read above the domain's
    // whole charge at the kill, which bounds what it can get back.
    let anon = step(steps, "kill")[0]["memory"]["anon_rss_kib"]
        .as_u64()
        .expect("anon_rss_kib")
        .min(r["usage_at_kill_kib"].as_u64().expect("usage_at_kill_kib"));
    let got_back = r["got_back_kib"].as_u64().expect("got_back_kib");
    assert!(
        got_back + 1024 >= anon,
        "got back {got_back} KiB of {anon}: {r}"
    );
}

/// Runs `oomreap inject ARGS --json` under `oomreap trace --json`, waits until every victim
/// has an outcome and its memory was freed, and stops the trace, which must report no loss.
fn trace_scenario(args: &[&str]) -> Traced {
    trace_scenario_with(&[], args)
}

/// As [`trace_scenario`], with more flags for `oomreap trace`.
fn trace_scenario_with(trace_args: &[&str], args: &[&str]) -> Traced {
    trace_scenario_env(trace_args, &[], args)
}

/// As [`trace_scenario_with`], with `oomreap trace` given these environment variables.
fn trace_scenario_env(trace_args: &[&str], env: &[(&str, &str)], args: &[&str]) -> Traced {
    let _tracefs = TracefsMount::ensure();
    let (mut trace, stdout, stderr) = start_command(
        Command::new(OOMREAP)
            .args(["trace", "--json"])
            .args(trace_args)
            .envs(env.iter().copied()),
    );
    let inject = Command::new(OOMREAP)
        .arg("inject")
        .args(args)
        .arg("--json")
        .output()
        .expect("run oomreap inject");
    assert_eq!(
        inject.status.code(),
        Some(0),
        "inject {args:?} failed: {}",
        String::from_utf8_lossy(&inject.stderr)
    );
    let report: Value = serde_json::from_slice(&inject.stdout).expect("inject report JSON");
    let victims: Vec<u64> = report["victims"]
        .as_array()
        .expect("victims")
        .iter()
        .filter_map(|v| v["pid"].as_u64())
        .collect();
    let mut steps: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let mut loops = Vec::new();
    // An OOM victim's story ends with its outcome, its recovery and exit_mmap (where the
    // kernel traces it: 5.10 does not); a userspace killer's target has neither, only the process_mrelease call
    // on it.
    let exit_traced = common::hook_attaches("mmap:exit_mmap");
    let complete = |steps: &BTreeMap<u64, Vec<Value>>| {
        victims.iter().all(|pid| {
            steps.get(pid).is_some_and(|s| {
                // A kill whose domain is known is judged once its outcome is final.
                let judged = step(s, "kill")
                    .iter()
                    .all(|k| k["oom_domain"].is_null() || !step(s, "recovery").is_empty());
                let ended = !step(s, "outcome").is_empty()
                    && (!exit_traced || !step(s, "exit_mmap").is_empty())
                    && judged;
                ended || step(s, "mrelease").iter().any(|m| m["oom_victim"] == false)
            })
        })
    };
    let deadline = Instant::now() + common::GUEST_PACE;
    while !complete(&steps) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = stdout.recv_timeout(left) else {
            panic!(
                "victims without outcome or exit_mmap after {:?}: {steps:#?}",
                common::GUEST_PACE
            );
        };
        take_line(&line, &mut steps, &mut loops);
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
    let status = trace
        .wait_timeout(Duration::from_secs(10))
        .expect("trace exits on SIGINT");
    // What the last step printed after the line that completed the story (a loop's end
    // follows the recovery that ended it) is still to be read.
    while let Ok(line) = stdout.recv_timeout(Duration::from_secs(2)) {
        take_line(&line, &mut steps, &mut loops);
    }
    let warnings: Vec<String> = stderr.try_iter().collect();
    assert_eq!(
        status.code(),
        Some(0),
        "trace reported lost events: {warnings:?}"
    );
    Traced {
        report,
        loops,
        steps,
    }
}

#[test]
fn quick_exit_is_freed_before_the_reaper_wakes() {
    let Some(_lock) = privileged("quick_exit_is_freed_before_the_reaper_wakes") else {
        return;
    };
    let traced = trace_scenario(&["quick-exit"]);
    let steps = traced.victim();
    let kill = step(steps, "kill")[0];
    assert_eq!(kill["memcg"]["id"], traced.report["cgroup"]["id"]);
    assert!(
        kill["memory"]["anon_rss_kib"].as_u64().unwrap_or(0) >= 64 * 1024,
        "{kill}"
    );
    assert_eq!(outcome(steps)["outcome"], "exited");
    assert!(step(steps, "wake").is_empty());
    // Before 6.0 the victim's own exit_mmap reaps it (the reaper then finds MMF_OOM_SKIP).
    let own_reap: &[(&str, bool)] = if common::exit_reaps_victims() {
        &[("exit_mmap", true)]
    } else {
        &[]
    };
    check_reap_calls(steps, own_reap);
    check_trigger_stack(kill);
    // Its own cgroup's limit was hit: the domain is that cgroup.
    let domain = &kill["oom_domain"];
    assert_eq!(domain["constraint"], "memcg", "{kill}");
    assert_eq!(domain["memcg"]["id"], traced.report["cgroup"]["id"]);
    assert_eq!(domain["limit_kib"], 128 * 1024);
    check_recovered(steps);
}

#[test]
fn shared_memory_no_kill_frees_keeps_the_domain_full_and_loops() {
    let test = "shared_memory_no_kill_frees_keeps_the_domain_full_and_loops";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if in_a_function_row(test, "recovery and loops are judged from tracepoints alone") {
        return;
    }
    let traced = trace_scenario(&["shmem-victim"]);
    let report = &traced.report;
    assert_eq!(report["cgroup"]["oom_kills"], 3, "{report}");
    let region_kib = 96 * 1024;
    let within_a_tenth = |kib: u64| kib.abs_diff(region_kib) * 10 <= region_kib;
    let victims = report["victims"].as_array().expect("victims");
    assert_eq!(victims.len(), 3, "{report}");
    let mut ids = Vec::new();
    for victim in victims {
        let pid = victim["pid"].as_u64().expect("pid");
        let steps = traced.steps.get(&pid).map_or(&[][..], Vec::as_slice);
        let kills = step(steps, "kill");
        assert_eq!(kills.len(), 1, "one victim per kill: {steps:#?}");
        ids.push(kills[0]["victim"]["id"].clone());
        let shmem = kills[0]["memory"]["shmem_rss_kib"].as_u64().unwrap_or(0);
        assert!(
            within_a_tenth(shmem),
            "the victim mapped the region: {}",
            kills[0]
        );
        let unreapable = &kills[0]["unreapable"];
        let shmem = unreapable["shmem_kib"].as_u64().unwrap_or(0);
        assert!(
            within_a_tenth(shmem),
            "no reap frees the region: {unreapable}"
        );
        let recoveries = step(steps, "recovery");
        assert_eq!(recoveries.len(), 1, "{steps:#?}");
        let r = &recoveries[0]["recovery"];
        assert_eq!(
            (&r["verdict"], &r["cause"]),
            (&json!("not_recovered"), &json!("shmem")),
            "{r}"
        );
        let charged = r["still_charged_kib"]["shmem"].as_u64().unwrap_or(0);
        assert!(within_a_tenth(charged), "the region stays charged: {r}");
    }
    // One loop in the scenario's cgroup: from the second kill where exit_mmap judges each kill
    // at once; where it is not traced (before 6.1) a kill is judged as its outcome settles, and
    // the loop may start only at the third.
    let started: Vec<&Value> = traced
        .loops
        .iter()
        .filter(|l| l["state"] == "started" && l["memcg"]["id"] == report["cgroup"]["id"])
        .collect();
    assert_eq!(started.len(), 1, "{:#?}", traced.loops);
    let at_kill = started[0]["kills"].as_u64().expect("kills");
    let first = if common::hook_attaches("mmap:exit_mmap") {
        2
    } else {
        3
    };
    assert!((2..=first).contains(&at_kill), "{:#?}", started[0]);
    assert_eq!(started[0]["cause"], "shmem", "{:#?}", started[0]);
    // Its first kill is the scenario's first.
    assert_eq!(started[0]["victims"][0], ids[0], "{:#?}", started[0]);
}

#[test]
fn the_oom_killer_picks_the_smaller_process_oom_score_adj_did_not_protect() {
    let test = "the_oom_killer_picks_the_smaller_process_oom_score_adj_did_not_protect";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if !common::has_capability(CAP_SYS_RESOURCE) {
        common::skip(
            test,
            "root here lacks CAP_SYS_RESOURCE, which lowering oom_score_adj to -900 needs",
        );
        return;
    }
    let traced = trace_scenario(&["adj-choice"]);
    let report = &traced.report;
    let victims = report["victims"].as_array().expect("victims");
    assert_eq!(victims.len(), 1, "{report}");
    assert_eq!(report["cgroup"]["oom_kills"], 1, "{report}");
    let victim_pid = victims[0]["pid"].as_u64().expect("pid");
    let protected = &report["protected"];
    let protected_pid = protected["pid"].as_u64().expect("protected pid");
    let steps = traced.steps.get(&victim_pid).map_or(&[][..], Vec::as_slice);
    let kill = step(steps, "kill")[0];
    let c = &kill["candidates"];
    check_candidates_exactness(kill);
    assert_eq!(c["victim_rank"], 1, "{kill}");
    let listed = c["listed"].as_array().unwrap_or_else(|| panic!("{kill}"));
    let find = |pid: u64| {
        listed
            .iter()
            .find(|l| l["pid"] == pid)
            .unwrap_or_else(|| panic!("no candidate {pid}: {kill}"))
    };
    let (chosen, spared) = (find(victim_pid), find(protected_pid));
    assert_eq!(chosen["victim"], true, "{kill}");
    assert_eq!(chosen["oom_score_adj"], 500, "{kill}");
    assert_eq!(listed[0]["pid"], victim_pid, "{kill}");
    assert_eq!(spared["oom_score_adj"], -900, "{kill}");
    assert!(spared["skipped"].is_null(), "{kill}");
    let points = |c: &Value| c["points"].as_i64().unwrap_or_else(|| panic!("{kill}"));
    assert!(points(spared) < points(chosen), "{kill}");
    // The larger one: more memory, fewer points, and the note says so.
    let memory = |c: &Value| {
        ["rss_kib", "swap_kib", "pgtables_kib"]
            .iter()
            .map(|k| c[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert!(memory(spared) > memory(chosen), "{kill}");
    assert_eq!(c["spared_by_adj"], 1, "{kill}");
    assert_eq!(
        c["note"], "1 larger process had oom_score_adj ≤ -900",
        "{kill}"
    );
    // The points agree with the kernel's own oom_score of the protected process, which
    // weighs against the machine's pages and scales into 0..2000 (fs/proc/base.c:
    // (1000 + points * 1000 / pages) * 2 / 3), within rounding.
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let machine_pages = (kib("MemTotal:") + kib("SwapTotal:")) / 4;
    let machine_points = memory(spared) as i64 / 4 + (-900) * (machine_pages / 1000);
    let expected = (1000 + machine_points * 1000 / machine_pages) * 2 / 3;
    let oom_score = protected["oom_score"].as_i64().expect("oom_score");
    assert!(
        (oom_score - expected).abs() <= 2,
        "oom_score {oom_score}, from the candidate {expected}: {kill}"
    );
    assert!(
        kill["candidates"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("chosen over 1 other: ")),
        "{kill}"
    );
}

#[test]
fn a_tmpfs_file_keeps_the_domain_full_until_it_is_deleted() {
    let test = "a_tmpfs_file_keeps_the_domain_full_until_it_is_deleted";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if in_a_function_row(test, "recovery and loops are judged from tracepoints alone") {
        return;
    }
    let traced = trace_scenario(&["tmpfs-fill"]);
    let report = &traced.report;
    let victims = report["victims"].as_array().expect("victims");
    assert_eq!(victims.len(), 4, "{report}");
    assert_eq!(report["cgroup"]["oom_kills"], 4, "{report}");
    for (i, victim) in victims.iter().enumerate() {
        let pid = victim["pid"].as_u64().expect("pid");
        let steps = traced.steps.get(&pid).map_or(&[][..], Vec::as_slice);
        let kill = step(steps, "kill")[0];
        let r = &step(steps, "recovery")[0]["recovery"];
        if i < 3 {
            // The file is most of what the domain holds at each kill, and still there after.
            let kib = &kill["domain_memory"]["kib"];
            let (shmem, usage) = (kib["shmem"].as_u64(), kib["usage"].as_u64());
            let (Some(shmem), Some(usage)) = (shmem, usage) else {
                panic!("no shmem or usage read at the kill: {kill}");
            };
            assert!(
                shmem * 10 >= usage * 8,
                "shmem {shmem} of {usage} KiB: {kill}"
            );
            assert_eq!(
                (&r["verdict"], &r["cause"]),
                (&json!("not_recovered"), &json!("shmem")),
                "{r}"
            );
        } else {
            // The file deleted, the last allocator's kill empties the domain.
            assert_eq!(r["verdict"], "recovered", "{r}");
        }
    }
    let in_cgroup: Vec<&Value> = traced
        .loops
        .iter()
        .filter(|l| l["memcg"]["id"] == report["cgroup"]["id"])
        .collect();
    let states: Vec<&str> = in_cgroup
        .iter()
        .filter_map(|l| l["state"].as_str())
        .collect();
    assert_eq!(states, ["started", "ended"], "{in_cgroup:#?}");
    assert_eq!(in_cgroup[1]["recovered"], true, "{:#?}", in_cgroup[1]);
    assert_eq!(in_cgroup[1]["kills"], 4, "{:#?}", in_cgroup[1]);
}

#[test]
fn a_limit_on_the_parent_cgroup_is_the_oom_domain() {
    let Some(_lock) = privileged("a_limit_on_the_parent_cgroup_is_the_oom_domain") else {
        return;
    };
    let traced = trace_scenario(&["parent-limit"]);
    let report = &traced.report;
    assert_eq!(report["cgroup"]["oom_kills"], 1, "{report}");
    let steps = traced.victim();
    let kills = step(steps, "kill");
    assert_eq!(kills.len(), 1, "{steps:#?}");
    let kill = kills[0];
    // The victim's cgroup is the child; the limit that was hit is its parent's.
    assert_eq!(kill["memcg"]["id"], report["victim_cgroup"]["id"], "{kill}");
    let domain = &kill["oom_domain"];
    assert_eq!(
        (&domain["constraint"], &domain["memcg"]["id"]),
        (&Value::from("memcg"), &report["cgroup"]["id"]),
        "{kill}"
    );
    assert_ne!(domain["memcg"]["id"], kill["memcg"]["id"]);
    // And by path, where trace resolved them: a quick exit's cgroups may be gone before a
    // slow machine's trace reads the kill (seen in the TCG guests), and then only ids remain.
    if let (Some(victim_path), Some(domain_path)) = (
        kill["memcg"]["path"].as_str(),
        domain["memcg"]["path"].as_str(),
    ) {
        assert_eq!(victim_path, format!("{domain_path}/container"), "{kill}");
    }
    assert_eq!(domain["limit_kib"], 128 * 1024);
    let usage = domain["usage_kib"].as_u64().expect("usage_kib");
    assert!(usage + 64 * 4 >= 128 * 1024, "at its limit: {kill}");
    assert!(domain["badness_points"].as_i64() > Some(0), "{kill}");
    // With a function hook on oom_kill_process the OOM killer's own record is read; with
    // hooks off the domain is derived.
    match forced_function_mode().as_deref() {
        Some("fentry" | "kprobe") => {
            assert_eq!(domain["inferred"], false, "{kill}");
            assert!(domain["total_pages"].as_u64() > Some(0), "{kill}");
        }
        Some(_) => assert_eq!(domain["inferred"], true, "{kill}"),
        None => {}
    }
}

#[test]
fn stuck_victim_is_reaped_by_the_oom_reaper() {
    let Some(_lock) = privileged("stuck_victim_is_reaped_by_the_oom_reaper") else {
        return;
    };
    let traced = trace_scenario(&["stuck-victim"]);
    let steps = traced.victim();
    let o = outcome(steps);
    assert_eq!(
        (o["outcome"].as_str(), o["attempts"].as_u64()),
        (Some("reaped"), Some(1)),
        "{o}"
    );
    assert_eq!(o["failed_attempts"], 0);
    // The victim held about 128 MiB; the reaper freed nearly all of it.
    assert!(
        o["reaper_freed_kib"].as_u64().unwrap_or(0) >= 100 * 1024,
        "{o}"
    );
    let reaped = step(steps, "reaped")[0];
    // The kernel's RSS counters are per-CPU and summed lazily: what is left reads as a few
    // pages at most, out of 128 MiB.
    let anon_after = reaped["rss_after"]["anon_kib"].as_u64().unwrap_or(u64::MAX);
    assert!(anon_after < 1024, "{reaped}");
    let wake_after = o["kill_to_wake_ns"].as_u64().unwrap_or(0);
    // The kernel counts the delay in jiffies, which lag the clock events are stamped with by
    // the ticks a guest has not taken yet: a busy emulated guest's wake came 40 ms short. A
    // kernel without the delay wakes the reaper at once.
    assert!(wake_after >= 1_900_000_000, "the reaper's 2 s delay: {o}");
    check_reap_calls(steps, &[("oom_reaper", true)]);
    // What the domain (the scenario's cgroup, at its limit) held when the kill arrived: the
    // stuck victim's memory, still charged until the reaper comes 2 s later.
    let kill = step(steps, "kill")[0];
    check_trigger_stack(kill);
    check_vma_classes(kill, step(steps, "wake")[0]);
    // The victim was alone in its cgroup: the only candidate.
    assert_eq!(
        kill["candidates"]["summary"], "the only candidate",
        "{kill}"
    );
    assert_eq!(kill["candidates"]["victim_rank"], 1, "{kill}");
    check_candidates_exactness(kill);
    let memory = &kill["domain_memory"];
    assert_eq!(memory["scope"], "memcg", "{kill}");
    assert_eq!(
        memory["memcg"]["id"], kill["oom_domain"]["memcg"]["id"],
        "{kill}"
    );
    let read_after = memory["read_after_ns"].as_u64().expect("read_after_ns");
    // Read before the reaper woke, the domain still held the victim's memory. A guest that
    // drained the kill later than that (a niced TCG guest can) read whatever was left, so
    // only that it read the domain is checked then.
    if read_after < wake_after {
        let domain_anon = memory["kib"]["anon"].as_u64().unwrap_or(0);
        let victim_anon = kill["memory"]["anon_rss_kib"].as_u64().unwrap_or(u64::MAX);
        assert!(domain_anon * 10 >= victim_anon * 8, "{kill}");
    } else {
        eprintln!("domain memory read {read_after} ns after the kill: past the reaper's delay");
        assert!(
            memory["kib"].is_object() || memory["error"].is_string(),
            "{kill}"
        );
    }
    check_recovered(steps);
}

#[test]
fn a_slow_reader_never_settles_a_victim_before_reading_what_came_first() {
    let test = "a_slow_reader_never_settles_a_victim_before_reading_what_came_first";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if in_a_function_row(test, "the reader's pace does not depend on the attach mode") {
        return;
    }
    // The reader sleeps 2 s after each wake-up: the reaper's wake (2 s after the kill) is
    // still unread when the never-woken deadline (3 s) passes. Seen in a TCG guest, where
    // the reader is slow by itself: the victim was called exited before its wake was read.
    let traced = trace_scenario_env(&[], &[("OOMREAP_FAULTS", "slow=reader")], &["stuck-victim"]);
    let steps = traced.victim();
    let o = outcome(steps);
    assert_eq!(
        (o["outcome"].as_str(), o["attempts"].as_u64()),
        (Some("reaped"), Some(1)),
        "{o}"
    );
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    let at = |name| names.iter().position(|n| *n == name);
    assert!(at("wake") < at("outcome"), "the wake came first: {names:?}");
}

#[test]
fn a_jammed_mmap_lock_makes_the_reaper_give_up() {
    let Some(_lock) = privileged("a_jammed_mmap_lock_makes_the_reaper_give_up") else {
        return;
    };
    let traced = trace_scenario(&["lock-contended"]);
    let steps = traced.victim();
    let o = outcome(steps);
    assert_eq!(
        (o["outcome"].as_str(), o["inferred"].as_bool()),
        (Some("gave_up"), Some(true)),
        "{o}"
    );
    let skips = step(steps, "skip");
    assert_eq!(skips.len(), 10, "{skips:#?}");
    let (reader, writer) = (traced.helper("reader"), traced.helper("writer"));
    // The reaper's own trylock result, read from the lock at the skip (BTF) or told by the
    // mmap_lock tracepoints (5.11+), makes the cause exact; without either it is deduced
    // from the mm's flags and the retries.
    let exact = common::skip_causes_exact();
    for skip in &skips {
        assert_eq!(
            (skip["reason"].as_str(), skip["inferred"].as_bool()),
            (Some("lock_contended"), Some(!exact)),
            "attempt {} (exact needs the gated hook attached by then): {skip}",
            skip["attempt"]
        );
        // Read from the mm as the tracepoint fired: a contended skip is not MMF_OOM_SKIP's.
        assert_eq!(skip["mmf_oom_skip"], false, "{skip}");
        let lock = &skip["lock"];
        let waiters = lock["waiters"].as_array().expect("waiters listed");
        assert!(lock["readers"].as_u64() >= Some(1), "{lock}");
        if lock["rt"] == true {
            // PREEMPT_RT: the queued writer owns the rtmutex and waits for the reader to
            // drain; the victim's exit blocks on the rtmutex behind it.
            assert_eq!(
                (&lock["owner"]["pid"], &lock["writer_pending"]),
                (&Value::from(writer), &Value::from(true)),
                "the owner is the scenario's pending writer: {lock}"
            );
            assert!(
                waiters
                    .iter()
                    .any(|w| w["tid"] == traced.report["victims"][0]["pid"]),
                "the victim waits on the rtmutex: {lock}"
            );
            continue;
        }
        // The owner field of a reader-held rwsem names the last reader to take it. On 5.10 a
        // reader may take the lock past a queued writer (optimistic spinning), and the
        // victim's own exit does, briefly, in exit_mm: then the field names the victim.
        let victim = &traced.report["victims"][0]["pid"];
        let owner = &lock["owner"]["pid"];
        assert!(
            *owner == reader || owner == victim,
            "the owner is the scenario's reader (or the victim's exit, after it): {lock}"
        );
        assert_eq!(lock["owner"]["reader_hint"], true);
        assert_eq!(lock["waiters_queued"], true, "{lock}");
        assert_eq!(
            (&waiters[0]["tid"], &waiters[0]["kind"]),
            (&Value::from(writer), &Value::from("write")),
            "{lock}"
        );
    }
    // The lock was never taken: nothing was reaped.
    check_reap_calls(steps, &[]);
}

/// With a function hook on oom_badness a kill's candidates are the OOM killer's own
/// evaluation; with hooks off, read from /proc after the kill. A kernel whose build inlines
/// oom_badness into the evaluation (5.10's: the hooks see only the out-of-line copy
/// /proc/PID/oom_score calls) gets them from /proc, and says why.
fn check_candidates_exactness(kill: &Value) {
    let c = &kill["candidates"];
    match forced_function_mode().as_deref() {
        Some("fentry" | "kprobe") if c["exact"] != true => {
            assert!(c["why_inferred"].as_str().is_some(), "{kill}");
        }
        Some("fentry" | "kprobe") => assert!(c["why_inferred"].is_null(), "{kill}"),
        Some(_) => assert_eq!(c["exact"], false, "{kill}"),
        None => {}
    }
}

/// The steps of victim `tid` in a replay of `recording` as JSON.
fn replayed_steps(recording: &std::path::Path, tid: u64) -> Vec<Value> {
    let replay = Command::new(OOMREAP)
        .args(["trace", "--json", "--replay"])
        .arg(recording)
        .output()
        .expect("run oomreap trace --replay");
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("replay JSON"))
        .filter(|o| o["victim"]["tid"].as_u64() == Some(tid))
        .collect()
}

#[test]
fn a_replay_elsewhere_shows_what_the_live_trace_showed() {
    let Some(_lock) = privileged("a_replay_elsewhere_shows_what_the_live_trace_showed") else {
        return;
    };
    if in_a_function_row(
        "a_replay_elsewhere_shows_what_the_live_trace_showed",
        "a jammed lock is never taken, so no function hook fires, and replay is user space",
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("oomreap-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder for the recording");
    let file = dir.join("lock.rec");
    let traced = trace_scenario_with(&["--record", file.to_str().unwrap()], &["lock-contended"]);
    let live = traced.victim();
    let cgroup = traced.report["cgroup"]["path"].as_str().unwrap_or_default();
    assert!(
        !cgroup.is_empty() && !std::path::Path::new(cgroup).exists(),
        "the scenario's cgroup {cgroup:?} is gone before the replay"
    );
    let tid = traced.report["victims"][0]["pid"].as_u64().unwrap();
    let replayed = replayed_steps(&file, tid);
    std::fs::remove_dir_all(&dir).expect("remove the recording");
    // What the recording machine knew, shown again: the cgroup's path and the lock
    // holders' kernel stacks.
    let kill = step(live, "kill")[0];
    assert!(kill["memcg"]["path"].is_string(), "{kill}");
    let stacked = step(live, "skip")[0];
    assert!(
        stacked["lock"]["owner"]["stack"]["frames"].is_array(),
        "{stacked}"
    );
    // Every step alike, but the outcome's time: live, silence settled it on a timer; a
    // replay settles it at the recording's end.
    let without_time = |steps: &[Value]| -> Vec<Value> {
        steps
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if s["step"] == "outcome" {
                    for key in ["time", "ts_ns"] {
                        s.as_object_mut().unwrap().remove(key);
                    }
                }
                s
            })
            .collect()
    };
    let replayed_refs: Vec<Value> = without_time(&replayed);
    assert_eq!(replayed_refs, without_time(live));
}

#[test]
fn a_jam_released_after_three_attempts_ends_the_reaper_loop() {
    let Some(_lock) = privileged("a_jam_released_after_three_attempts_ends_the_reaper_loop") else {
        return;
    };
    let traced = trace_scenario(&["lock-contended", "--release-after", "3"]);
    let steps = traced.victim();
    let o = outcome(steps);
    assert!(
        matches!(o["outcome"].as_str(), Some("reaped" | "already_gone")),
        "{o}"
    );
    // The releaser lets go after the third attempt, as soon as it is scheduled: here that is
    // within one 100 ms retry, but a niced TCG guest beside CI's build has run it three
    // retries late. Anything short of the reaper's ten ends the loop by the release.
    let failed = o["failed_attempts"].as_u64().unwrap_or(0);
    assert!((2..=9).contains(&failed), "{failed} failed attempts: {o}");
    let contended = step(steps, "skip")
        .iter()
        .filter(|s| s["reason"] == "lock_contended")
        .count();
    assert_eq!(
        contended as u64, failed,
        "every failed attempt contended: {steps:#?}"
    );
    // The kill's program saw the queued writer, so the victim's smaps was not read: a read
    // would have queued behind it holding the victim's mm, and the teardown would have run
    // in oomreap's reader (MMF_OOM_SKIP set there, and no reaper pass at all).
    let wake = step(steps, "wake")[0];
    let why = wake["unreapable"]["vmas"]["error"].as_str().unwrap_or("");
    assert!(why.contains("mmap_lock"), "{wake}");
    if o["outcome"] == "reaped" {
        // Before 6.0, exit_mmap reaps an OOM victim's mm itself, in whichever task drops the
        // last reference: the victim, or the scenario's writer, which held one for
        // clear_refs. That reap can come before the reaper's pass or after it, and both are
        // traced (5.10's fentry row: exit_mmap by oomreap-writer, then oom_reaper, in one
        // run; oom_reaper, then exit_mmap by oomreap-writer, in another; all complete).
        // So on those kernels one complete exit_mmap call is expected wherever it came;
        // the reaper's single complete pass always.
        let calls = step(steps, "reap_fn");
        let mut expected = vec![("oom_reaper", true)];
        if common::exit_reaps_victims()
            && let Some(at) = calls.iter().position(|c| c["caller"] == "exit_mmap")
        {
            // An exit_mmap reap before the reaper's next attempt sets MMF_OOM_SKIP, which
            // ends the attempts (5.10's kprobe row: the writer's, then no reaper pass).
            if at == 0 && !calls.iter().any(|c| c["caller"] == "oom_reaper") {
                expected.clear();
            }
            expected.insert(at.min(expected.len()), ("exit_mmap", true));
        }
        check_reap_calls(steps, &expected);
    }
}

#[test]
fn a_kvm_victim_names_its_mmu_notifier() {
    let Some(_lock) = privileged("a_kvm_victim_names_its_mmu_notifier") else {
        return;
    };
    if !std::path::Path::new("/dev/kvm").exists() {
        skip(
            "a_kvm_victim_names_its_mmu_notifier",
            "no /dev/kvm on this machine",
        );
        return;
    }
    let traced = trace_scenario(&["mmu-notifier"]);
    let steps = traced.victim();
    let kill = step(steps, "kill")[0];
    let notifiers = &kill["notifiers"];
    assert!(notifiers["count"].as_u64() >= Some(1), "{kill}");
    assert_eq!(notifiers["callbacks"][0]["owner"], "kvm", "{notifiers}");
    assert!(
        notifiers["callbacks"][0]["symbol"]
            .as_str()
            .is_some_and(|s| s.contains("kvm"))
    );
    let o = outcome(steps);
    assert_eq!(
        (o["has_notifiers"].as_bool(), o["outcome"].as_str()),
        (Some(true), Some("reaped")),
        "{o}"
    );
}

/// Returns true if this kernel can make the odp scenarios' soft-RoCE device; else says why
/// the test is skipped (the matrix's generic kernels load rdma_rxe; cloud kernels lack it).
fn soft_roce_here(test: &str) -> bool {
    if std::path::Path::new("/sys/module/rdma_rxe").exists() {
        return true;
    }
    skip(
        test,
        "rdma_rxe is not loaded (no soft-RoCE: cloud kernels and this machine's lack it; \
         the matrix's generic 6.18 and 7.x kernels run it)",
    );
    false
}

/// One line per step (time, victim id, step, its gist), for failure messages.
fn timeline(steps: &[Value]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} id {} {} {}",
                s["ts_ns"],
                s["victim"]["id"],
                s["step"].as_str().unwrap_or("?"),
                [
                    "attempt", "complete", "reason", "ret", "outcome", "caller", "range",
                ]
                .iter()
                .filter(|k| !s[**k].is_null())
                .map(|k| format!("{k}={}", s[*k]))
                .collect::<Vec<_>>()
                .join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The privileged lock for a soft-RoCE test, or `None` (having said why) where it cannot run.
fn odp_test(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    let lock = privileged(test)?;
    soft_roce_here(test).then_some(lock)
}

/// The ODP region the scenario registered: [start, end).
fn odp_region(traced: &Traced) -> (u64, u64) {
    let odp = &traced.report["odp"];
    let start = odp["address"]
        .as_str()
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no ODP region in {}", traced.report));
    (start, start + odp["len"].as_u64().expect("its length"))
}

/// The kill names the interval notifier that refuses the reaper: rdma_rxe's.
fn assert_rxe_notifier_named(kill: &Value) {
    let notifiers = &kill["notifiers"];
    assert!(notifiers["interval"].as_u64() >= Some(1), "{kill}");
    let rxe = notifiers["callbacks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["kind"] == "interval"))
        .unwrap_or_else(|| panic!("no interval notifier listed: {notifiers}"));
    assert_eq!(rxe["owner"], "rdma_rxe", "{notifiers}");
}

/// With function hooks forced, each refusal is the ODP region's VMA (which holds the region,
/// and may have merged with its neighbours), refused with -EAGAIN, on an mm whose notifiers
/// include rdma_rxe's; without them, none is seen.
fn check_refusals(steps: &[Value], region: (u64, u64), passes: usize) {
    let refusals = step(steps, "notifier_refused");
    match forced_function_mode().as_deref() {
        Some("fentry" | "kprobe") => {
            assert_eq!(
                refusals.len(),
                passes,
                "one refusal per pass: {refusals:#?}"
            );
            for r in &refusals {
                let bound = |key: &str| {
                    r["range"][key]
                        .as_str()
                        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
                        .unwrap_or_else(|| panic!("no range {key} in {r}"))
                };
                assert!(
                    bound("start") <= region.0 && bound("end") >= region.1,
                    "refused range does not hold the region {region:x?}: {r}"
                );
                assert_eq!(r["ret"], -11, "{r}");
                assert!(r["notifiers"]["interval"].as_u64() >= Some(1), "{r}");
            }
        }
        Some(_) => assert!(refusals.is_empty(), "function hooks are off: {refusals:#?}"),
        None => {}
    }
}

#[test]
fn an_odp_region_makes_every_pass_partial_and_the_reaper_give_up_on_the_notifier() {
    let test = "an_odp_region_makes_every_pass_partial_and_the_reaper_give_up_on_the_notifier";
    let Some(_lock) = odp_test(test) else {
        return;
    };
    let traced = trace_scenario(&["odp-victim"]);
    let steps = traced.victim();
    assert_rxe_notifier_named(step(steps, "kill")[0]);
    let o = outcome(steps);
    assert_eq!(
        (
            o["outcome"].as_str(),
            o["gave_up_cause"].as_str(),
            o["partial_passes"].as_u64(),
            o["lock_contended"].as_bool(),
        ),
        (Some("gave_up"), Some("notifier"), Some(10), Some(false)),
        "{o}\n{}",
        timeline(steps)
    );
    assert_eq!(step(steps, "reaped").len(), 10, "ten passes, none skipped");
    check_reap_calls(steps, &[("oom_reaper", false); 10]);
    check_refusals(steps, odp_region(&traced), 10);
}

#[test]
fn an_odp_region_deregistered_after_three_passes_lets_the_next_one_reap() {
    let test = "an_odp_region_deregistered_after_three_passes_lets_the_next_one_reap";
    let Some(_lock) = odp_test(test) else {
        return;
    };
    let traced = trace_scenario(&["odp-victim", "--release-after", "3"]);
    assert_eq!(traced.report["odp"]["released"], true);
    let steps = traced.victim();
    let o = outcome(steps);
    assert_eq!(o["outcome"], "reaped", "{o}\n{}", timeline(steps));
    // The release is timed against the reaper's 100 ms retries: the releaser deregisters as
    // soon as it is scheduled, which a TCG guest busy with oomreap's start-up (it loads the
    // kernel's symbols meanwhile) has done two retries late. Anything short of the reaper's
    // ten ends the loop by the release.
    let partial = o["partial_passes"].as_u64().unwrap_or(0) as usize;
    assert!((2..=9).contains(&partial), "{partial} partial passes: {o}");
    let mut expected = vec![("oom_reaper", false); partial];
    expected.push(("oom_reaper", true));
    check_reap_calls(steps, &expected);
    check_refusals(steps, odp_region(&traced), partial);
}

#[test]
fn process_mrelease_on_an_odp_victim_returns_eagain_as_a_partial_pass() {
    let test = "process_mrelease_on_an_odp_victim_returns_eagain_as_a_partial_pass";
    let Some(_lock) = odp_test(test) else {
        return;
    };
    if !process_mrelease_here(test) {
        return;
    }
    let traced = trace_scenario(&["odp-mrelease"]);
    assert_eq!(traced.report["mrelease"]["ret"], -11, "{}", traced.report);
    let steps = traced.victim();
    let calls = step(steps, "mrelease");
    assert_eq!(calls.len(), 1, "{steps:#?}");
    assert_eq!(calls[0]["ret"], -11);
    let o = outcome(steps);
    // The call's partial pass, then the reaper's ten.
    assert_eq!(
        (
            o["outcome"].as_str(),
            o["gave_up_cause"].as_str(),
            o["partial_passes"].as_u64()
        ),
        (Some("gave_up"), Some("notifier"), Some(11)),
        "{o}\n{}\n{}",
        traced.report,
        timeline(steps)
    );
    let mut expected = vec![("process_mrelease", false)];
    expected.extend([("oom_reaper", false); 10]);
    check_reap_calls(steps, &expected);
    check_refusals(steps, odp_region(&traced), 11);
}

#[test]
fn process_mrelease_is_seen_with_its_caller_and_result() {
    let Some(_lock) = privileged("process_mrelease_is_seen_with_its_caller_and_result") else {
        return;
    };
    if !process_mrelease_here("process_mrelease_is_seen_with_its_caller_and_result") {
        return;
    }
    let traced = trace_scenario(&["mrelease"]);
    let steps = traced.victim();
    let call = step(steps, "mrelease");
    assert_eq!(call.len(), 1, "{steps:#?}");
    let (caller, ret) = (
        &traced.report["mrelease"]["caller"],
        &traced.report["mrelease"]["ret"],
    );
    assert_eq!(&call[0]["caller"]["pid"], caller);
    assert_eq!((&call[0]["ret"], ret), (&Value::from(0), &Value::from(0)));
    assert_eq!(outcome(steps)["outcome"], "released");
    check_reap_calls(steps, &[("process_mrelease", true)]);
}

#[test]
fn the_reapers_pass_after_process_mrelease_is_the_same_victims() {
    let Some(_lock) = privileged("the_reapers_pass_after_process_mrelease_is_the_same_victims")
    else {
        return;
    };
    if !process_mrelease_here("the_reapers_pass_after_process_mrelease_is_the_same_victims") {
        return;
    }
    let traced = trace_scenario(&["mrelease-stuck"]);
    let steps = traced.victim();
    assert_eq!(traced.report["cgroup"]["oom_kills"], 1, "{}", traced.report);
    // One kill, one victim, one outcome: every step of the thread names the same victim.
    let ids: std::collections::BTreeSet<Option<u64>> =
        steps.iter().map(|s| s["victim"]["id"].as_u64()).collect();
    assert_eq!(ids.len(), 1, "{steps:#?}");
    assert_eq!(step(steps, "kill").len(), 1);
    assert_eq!(step(steps, "outcome").len(), 1, "{steps:#?}");
    assert_eq!(outcome(steps)["outcome"], "released");
    // With function hooks the call's own reap settles it before the syscall returns, so the
    // `mrelease` step itself may follow the outcome; without, the return settles it.
    if forced_function_mode().as_deref() == Some("off") {
        assert_eq!(step(steps, "mrelease")[0]["after_outcome"], false);
    }
    // The reaper's timer outlived the release: its wake and pass come after the outcome.
    let late: Vec<&str> = steps
        .iter()
        .filter(|s| s["after_outcome"] == true)
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(
        late.contains(&"wake") && (late.contains(&"reaped") || late.contains(&"skip")),
        "late steps {late:?} in {steps:#?}"
    );
}

#[test]
fn a_userspace_killers_process_mrelease_names_its_target_and_the_memory_freed() {
    let Some(_lock) =
        privileged("a_userspace_killers_process_mrelease_names_its_target_and_the_memory_freed")
    else {
        return;
    };
    if !process_mrelease_here(
        "a_userspace_killers_process_mrelease_names_its_target_and_the_memory_freed",
    ) {
        return;
    }
    let traced = trace_scenario(&["userspace-kill"]);
    assert_eq!(traced.report["cgroup"]["oom_kills"], 0, "{}", traced.report);
    let steps = traced.victim();
    assert!(step(steps, "kill").is_empty(), "no OOM kill: {steps:#?}");
    let calls = step(steps, "mrelease");
    assert_eq!(calls.len(), 1, "{steps:#?}");
    let call = calls[0];
    let target = traced.report["victims"][0]["pid"].clone();
    // The mm's owner thread may be any of the target's (the stuck reader, once the main
    // thread has exited), but the process is the target.
    assert_eq!(&call["target"]["pid"], &target, "{call}");
    assert!(call["target"]["tid"].as_u64().is_some(), "{call}");
    assert_eq!(&call["caller"]["pid"], &traced.report["mrelease"]["caller"]);
    assert_eq!(
        (&call["ret"], &call["oom_victim"]),
        (&Value::from(0), &Value::from(false))
    );
    assert!(call["victim"].is_null(), "{call}");
    assert_eq!(call["target_memcg"]["id"], traced.report["cgroup"]["id"]);
    // The target touched half the cgroup's 128 MiB: nearly all of it was freed.
    let freed = call["freed_kib"].as_u64().expect("freed_kib");
    assert!((60 * 1024..=80 * 1024).contains(&freed), "{call}");
    assert!(
        call["rss_after"]["anon_kib"].as_u64() < Some(1024),
        "{call}"
    );
}

#[test]
fn a_storm_of_victims_is_counted_exactly() {
    let Some(_lock) = privileged("a_storm_of_victims_is_counted_exactly") else {
        return;
    };
    if in_a_function_row(
        "a_storm_of_victims_is_counted_exactly",
        "quick exits reach no function hook",
    ) {
        return;
    }
    // 200 here; the kernel matrix's TCG guests, ten times slower, storm with
    // OOMREAP_STORM_VICTIMS=50 on each of their kernels (`--long` adds 1,000 here).
    let count: u64 = std::env::var("OOMREAP_STORM_VICTIMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let traced = trace_scenario(&["storm", "--count", &count.to_string()]);
    let cgroup = &traced.report["cgroup"]["id"];
    let kills = traced.report["cgroup"]["oom_kills"]
        .as_u64()
        .expect("oom_kills");
    assert_eq!(
        kills, count,
        "each victim is killed once: {}",
        traced.report["cgroup"]
    );
    let mut seen = 0;
    for (pid, steps) in &traced.steps {
        let ours = step(steps, "kill")
            .iter()
            .filter(|k| &k["memcg"]["id"] == cgroup)
            .count();
        assert!(ours <= 1, "victim {pid} counted {ours} times");
        seen += ours as u64;
    }
    assert_eq!(
        seen, kills,
        "every kill the cgroup counted is in the trace, once"
    );
}

/// The kernel's own count of OOM kills (`oom_kill` in /proc/vmstat).
fn vmstat_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .expect("/proc/vmstat")
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .expect("an oom_kill line")
}

#[test]
#[ignore = "long: run by `cargo xtask test --long`"]
fn a_storm_of_1000_victims_loses_none_and_counts_none_twice() {
    let Some(_lock) = privileged("a_storm_of_1000_victims_loses_none_and_counts_none_twice") else {
        return;
    };
    let before = vmstat_oom_kills();
    // trace_scenario also checks the trace ended reporting no lost events.
    // A small limit makes each victim quick to kill: about 50 a second.
    let traced = trace_scenario(&["storm", "--count", "1000", "--limit", "16"]);
    let kernel_kills = vmstat_oom_kills() - before;
    let cgroup = &traced.report["cgroup"]["id"];
    let cgroup_kills = traced.report["cgroup"]["oom_kills"]
        .as_u64()
        .expect("oom_kills");
    assert_eq!(cgroup_kills, 1000, "{}", traced.report["cgroup"]);
    // Other processes on the machine may be OOM-killed too; ours are all counted there.
    assert!(
        kernel_kills >= cgroup_kills,
        "vmstat counted {kernel_kills}, the cgroup {cgroup_kills}"
    );
    let mut tracked = 0;
    for (pid, steps) in &traced.steps {
        let kills = step(steps, "kill")
            .iter()
            .filter(|k| &k["memcg"]["id"] == cgroup)
            .count();
        assert!(kills <= 1, "victim {pid} counted {kills} times");
        tracked += kills as u64;
        if kills == 1 {
            assert!(
                !step(steps, "outcome").is_empty(),
                "victim {pid} has no outcome"
            );
            // Each kill's candidates were read too, the victim among them. Its rank is not
            // asserted: read after the kill, a victim killed as it started (no memory yet)
            // can rank below a predecessor still leaving the cgroup.
            let kill = step(steps, "kill")[0];
            let listed = kill["candidates"]["listed"].as_array();
            assert!(
                listed.is_some_and(|l| l.iter().any(|c| c["victim"] == true)),
                "{kill}"
            );
        }
    }
    assert_eq!(tracked, cgroup_kills, "every kill the kernel counted, once");
}

/// SIGTERM mid-run: nothing the scenario created survives.
#[test]
fn an_interrupted_scenario_leaves_nothing_behind() {
    let Some(_lock) = privileged("an_interrupted_scenario_leaves_nothing_behind") else {
        return;
    };
    if in_a_function_row(
        "an_interrupted_scenario_leaves_nothing_behind",
        "the cleanup is inject's own, whatever trace hooks",
    ) {
        return;
    }
    let mut inject = OwnChild(
        Command::new(OOMREAP)
            .args(["inject", "lock-contended"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn oomreap inject"),
    );
    let stderr = lines_of(inject.0.stderr.take().expect("stderr"));
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("jam in place")) {
        said.push(
            stderr
                .recv_timeout(Duration::from_secs(30))
                .expect("progress until the jam"),
        );
    }
    let cgroup = said
        .iter()
        .find_map(|l| l.split("created memory cgroup ").nth(1)?.split(' ').next())
        .expect("the cgroup path")
        .to_owned();
    let pids: Vec<u32> = said
        .iter()
        .filter_map(|l| {
            l.split(" pid ")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 3, "victim, reader and writer: {said:?}");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(inject.pid() as i32, libc::SIGTERM) };
    let status = inject
        .wait_timeout(Duration::from_secs(30))
        .expect("inject exits on SIGTERM");
    assert_eq!(status.code(), Some(2), "{said:?}");
    assert!(
        !std::path::Path::new(&cgroup).exists(),
        "cgroup {cgroup} left behind"
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left behind"
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(!mounts.contains("oomreap-stall"), "FUSE mount left behind");
    let stall = std::env::temp_dir().join(format!("oomreap-stall-{}", inject.pid()));
    assert!(!stall.exists(), "{} left behind", stall.display());
}

/// `include/uapi/linux/capability.h`.
const CAP_SYS_RESOURCE: u32 = 24;

/// The task that hit the limit (the hog itself): its kernel stack at the kill runs through
/// the OOM killer, each frame named by the kernel (5.13+: `bpf_snprintf`), and its user
/// stack has at least the instruction that allocated.
fn check_trigger_stack(kill: &Value) {
    let stack = &kill["trigger"]["stack"];
    let frames = stack["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no trigger stack: {kill}"));
    assert!(!frames.is_empty(), "{kill}");
    assert!(
        !stack["user"].as_array().is_none_or(Vec::is_empty),
        "{kill}"
    );
    if kernel_older_than(5, 13) {
        eprintln!("trigger stack as addresses: this kernel has no bpf_snprintf (5.13+)");
        assert_eq!(stack["named"], false, "{kill}");
        return;
    }
    assert_eq!(stack["named"], true, "{kill}");
    assert!(
        frames
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.starts_with("out_of_memory+"))),
        "{kill}"
    );
    // The tracing's own frames are left out: the stack starts in the OOM killer.
    assert!(
        !frames[0].as_str().unwrap_or("").starts_with("bpf_"),
        "{kill}"
    );
}

/// The victim's mappings, read from its smaps right after the kill (it is stuck, so still
/// there), joined by the time the reaper wakes: their classes sum to its RSS at the kill
/// within 5 %, and make `unreapable` exact.
fn check_vma_classes(kill: &Value, wake: &Value) {
    let unreapable = &wake["unreapable"];
    let vmas = &unreapable["vmas"];
    // On the kill itself: from the counters (the mappings are read after it).
    assert_eq!(kill["unreapable"]["inferred"], true, "{kill}");
    // The victim is stuck until its reaper is done: its mappings can be read.
    assert!(vmas["error"].is_null(), "{wake}");
    let kib = |v: &Value, key: &str| {
        v[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key}: {wake} {kill}"))
    };
    let classes = kib(vmas, "anon_kib") + kib(vmas, "shmem_kib") + kib(vmas, "file_kib");
    let memory = &kill["memory"];
    let rss =
        kib(memory, "anon_rss_kib") + kib(memory, "file_rss_kib") + kib(memory, "shmem_rss_kib");
    assert!(
        classes.abs_diff(rss) * 20 <= rss,
        "classes {classes} KiB vs RSS {rss} KiB: {wake} {kill}"
    );
    assert!(kib(vmas, "count") > 0, "{wake}");
    assert_eq!(unreapable["inferred"], false, "{wake}");
    assert_eq!(unreapable["hugetlb_kib"], 0, "{wake}");
    assert_eq!(unreapable["shmem_kib"], vmas["shmem_kib"], "{wake}");
}
