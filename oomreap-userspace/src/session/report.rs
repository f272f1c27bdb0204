//! What a `run` saw: the command, its victims, lost events and the verdicts; as JSON (schema
//! in docs/run-report.schema.json) and as JUnit XML.
use serde_json::{Value, json};

use super::expect::Verdict;
use crate::{
    intake::CgroupInfo,
    tracker::{Candidates, OomDomain, Recovery, Verdict as RecoveryVerdict, Victim},
};

/// Version of the report's JSON schema.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// One victim, flattened for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VictimSummary {
    pub pid: Option<u32>,
    pub tid: u32,
    pub comm: Option<String>,
    pub memcg_id: Option<u64>,
    /// Its memory cgroup's path and Kubernetes names, as resolved at the kill.
    pub memcg: Option<CgroupInfo>,
    pub outcome: String,
    pub outcome_inferred: bool,
    pub attempts: usize,
    pub failed_attempts: usize,
    pub lock_contended_attempts: usize,
    /// Partial passes, the reaper's and process_mrelease's.
    pub partial_reaps: usize,
    pub notifiers: u32,
    /// For a victim the reaper gave up on: `notifier`, `lock` or `mixed`.
    pub gave_up_cause: Option<&'static str>,
    pub kill_to_wake_ns: Option<u64>,
    pub kill_to_reaped_ns: Option<u64>,
    pub reap_duration_ns: Option<u64>,
    pub kill_to_mm_freed_ns: Option<u64>,
    pub reaper_freed_kib: Option<u64>,
    /// Which limit the kill was for.
    pub oom_domain: Option<OomDomain>,
    /// Reaper attempts after the outcome (the timer outlives process_mrelease).
    pub attempts_after_outcome: usize,
    /// Its process_mrelease calls: (return value, KiB freed).
    pub mreleases: Vec<(i64, Option<u64>)>,
    /// Whether the kill gave its domain memory back, once judged.
    pub recovery: Option<Recovery>,
    /// The OOM killer's candidates for its kill, or why they are unknown.
    pub candidates: Option<Result<Candidates, String>>,
    /// Its kill was one of an OOM loop's (set by the session, which sees the loops).
    pub in_oom_loop: bool,
}

impl VictimSummary {
    pub fn of(v: &Victim) -> Self {
        Self {
            pid: v.tgid(),
            tid: v.pid,
            comm: v.comm().map(str::to_owned),
            memcg_id: v.memcg_id(),
            memcg: None,
            outcome: v.outcome.name().into(),
            outcome_inferred: v.outcome_inferred,
            attempts: v.attempts.len(),
            failed_attempts: v.failed_attempts(),
            lock_contended_attempts: v.lock_contended_attempts(),
            partial_reaps: v.partial_passes(),
            notifiers: v.notifiers().map_or(0, |n| n.count),
            gave_up_cause: v.give_up_cause().map(|c| c.name()),
            kill_to_wake_ns: v.kill_to_wake_ns(),
            kill_to_reaped_ns: v.kill_to_reaped_ns(),
            reap_duration_ns: v.reap_duration_ns(),
            kill_to_mm_freed_ns: v.kill_to_mm_freed_ns(),
            reaper_freed_kib: v.freed_by_reaper_kib(),
            oom_domain: v.kill.as_ref().and_then(|k| k.domain.clone()),
            attempts_after_outcome: v
                .attempts
                .iter()
                .filter(|a| v.after_outcome(a.started_ns))
                .count(),
            mreleases: v
                .mreleases
                .iter()
                .map(|c| (c.ret, c.target.freed_kib()))
                .collect(),
            recovery: v.recovery.as_deref().cloned(),
            candidates: v.candidates.as_deref().cloned(),
            in_oom_loop: false,
        }
    }

    /// Why the kill did not give its domain memory back, if it did not (or was not judged).
    pub fn not_recovered(&self) -> Option<String> {
        match self.recovery.as_ref().map(|r| &r.verdict) {
            Some(RecoveryVerdict::Recovered) => None,
            Some(RecoveryVerdict::NotRecovered(cause)) => Some(format!(
                "its domain did not recover: {} ({})",
                cause.name(),
                cause.meaning()
            )),
            Some(RecoveryVerdict::Unknown(why)) => Some(format!("recovery unknown: {why}")),
            None => Some("recovery not judged (its domain unknown, or no outcome)".into()),
        }
    }

    /// `pid 123 (comm)`.
    pub fn name(&self) -> String {
        format!(
            "pid {} ({})",
            self.pid.unwrap_or(self.tid),
            self.comm.as_deref().unwrap_or("?")
        )
    }

    /// Milliseconds from the kill until the memory was gone: reaped, or freed by exit_mmap.
    pub fn memory_gone_ms(&self) -> Option<u64> {
        [self.kill_to_reaped_ns, self.kill_to_mm_freed_ns]
            .into_iter()
            .flatten()
            .min()
            .map(|ns| ns / 1_000_000)
    }

    fn json(&self) -> Value {
        let memcg = self.memcg.as_ref().map(|m| {
            let pod = m.pod.as_ref();
            json!({
                "path": m.path,
                "namespace": pod.map(|p| &p.namespace),
                "pod": pod.map(|p| &p.pod),
                "container": pod.and_then(|p| p.container.as_ref()),
                "pod_uid": m.pod_uid,
            })
        });
        json!({
            "pid": self.pid, "tid": self.tid, "comm": self.comm, "memcg_id": self.memcg_id,
            "memcg": memcg,
            "outcome": self.outcome, "inferred": self.outcome_inferred,
            "attempts": self.attempts, "failed_attempts": self.failed_attempts,
            "lock_contended_attempts": self.lock_contended_attempts, "partial_reaps": self.partial_reaps,
            "notifiers": self.notifiers, "gave_up_cause": self.gave_up_cause,
            "kill_to_wake_ns": self.kill_to_wake_ns, "kill_to_reaped_ns": self.kill_to_reaped_ns,
            "reap_duration_ns": self.reap_duration_ns, "kill_to_mm_freed_ns": self.kill_to_mm_freed_ns,
            "reaper_freed_kib": self.reaper_freed_kib,
            "oom_domain": self.oom_domain.as_ref().map(|d| json!({
                "constraint": d.constraint(),
                "memcg_id": d.memcg.map(|m| m.id),
                "limit_kib": d.memcg.map(|m| m.limit_kib),
                "usage_kib": d.memcg.map(|m| m.usage_kib),
                "inferred": d.exact.is_none(),
            })),
            "attempts_after_outcome": self.attempts_after_outcome,
            "mreleases": self.mreleases.iter().map(|(ret, freed)| json!({"ret": ret, "freed_kib": freed})).collect::<Vec<_>>(),
            "recovery": self.recovery.as_ref().map(|r| json!({
                "verdict": r.verdict.name(),
                "cause": match &r.verdict { RecoveryVerdict::NotRecovered(c) => Some(c.name()), _ => None },
                "why": match &r.verdict { RecoveryVerdict::Unknown(why) => Some(why.as_str()), _ => None },
                "got_back_kib": r.got_back_kib,
                "usage_after_kib": r.usage_after_kib,
                "limit_kib": r.limit_kib,
            })),
            "candidates": self.candidates.as_ref().map(candidates_json),
            "in_oom_loop": self.in_oom_loop,
        })
    }
}

/// Why this victim, as the report says it: the listed candidates in brief.
fn candidates_json(c: &Result<Candidates, String>) -> Value {
    let c = match c {
        Ok(c) => c,
        Err(why) => return json!({ "error": why }),
    };
    json!({
        "victim_rank": c.victim_rank,
        "listed": c.listed.iter().map(|candidate| json!({
            "pid": candidate.process.pid,
            "comm": candidate.process.comm,
            "points": candidate.points,
            "oom_score_adj": candidate.process.oom_score_adj,
            "skipped": candidate.passed.map(|why| why.id()),
            "victim": candidate.victim,
        })).collect::<Vec<_>>(),
        "rest": c.rest,
        "spared_by_adj": c.spared_by_adj,
        "summary": crate::wording::candidates_text(c),
        "exact": c.exact,
    })
}

/// Everything a run reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub command: Vec<String>,
    /// The command's exit code, or 128 + signal.
    pub exit_code: i32,
    pub duration_ms: u64,
    pub scope: String,
    pub victims: Vec<VictimSummary>,
    pub dropped: u64,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// Returns true if and only if every expectation held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }

    pub fn json(&self) -> Value {
        json!({
            "schema": REPORT_SCHEMA_VERSION,
            "command": self.command,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
            "scope": self.scope,
            "dropped_events": self.dropped,
            "victims": self.victims.iter().map(VictimSummary::json).collect::<Vec<_>>(),
            "expectations": self.verdicts.iter().map(|v| json!({
                "name": v.expectation, "passed": v.passed(), "failures": v.failures,
            })).collect::<Vec<_>>(),
            "passed": self.passed(),
        })
    }

    /// The summary table printed after the command.
    pub fn table(&self) -> String {
        let mut out = format!(
            "oomreap run: {} victims ({}), {} events lost, command exited {}\n",
            self.victims.len(),
            self.scope,
            self.dropped,
            self.exit_code
        );
        if !self.victims.is_empty() {
            out.push_str(&format!(
                "{:>7} {:<16} {:<13} {:>8} {:>7} {:>12} {:>12}\n",
                "PID", "COMM", "OUTCOME", "ATTEMPTS", "FAILED", "KILL→REAPED", "KILL→FREED"
            ));
        }
        let ms = |ns: Option<u64>| ns.map_or("-".to_owned(), crate::wording::duration);
        for v in &self.victims {
            out.push_str(&format!(
                "{:>7} {:<16} {:<13} {:>8} {:>7} {:>12} {:>12}\n",
                v.pid.unwrap_or(v.tid),
                v.comm.as_deref().unwrap_or("-"),
                if v.outcome_inferred {
                    format!("{}*", v.outcome)
                } else {
                    v.outcome.clone()
                },
                v.attempts,
                v.failed_attempts,
                ms(v.kill_to_reaped_ns),
                ms(v.kill_to_mm_freed_ns)
            ));
        }
        for verdict in &self.verdicts {
            let state = if verdict.passed() { "ok" } else { "FAILED" };
            out.push_str(&format!("{state:>6}  {}\n", verdict.expectation));
            for failure in &verdict.failures {
                out.push_str(&format!("        {failure}\n"));
            }
        }
        out
    }

    /// JUnit XML: one test case per expectation.
    pub fn junit(&self) -> String {
        let failures = self.verdicts.iter().filter(|v| !v.passed()).count();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{n}\" failures=\"{failures}\">\n  <testsuite name=\"oomreap run\" tests=\"{n}\" failures=\"{failures}\" time=\"{:.3}\">\n",
            self.duration_ms as f64 / 1000.0,
            n = self.verdicts.len(),
        );
        xml.push_str(&format!(
            "    <properties><property name=\"command\" value=\"{}\"/></properties>\n",
            escape(&self.command.join(" "))
        ));
        for verdict in &self.verdicts {
            xml.push_str(&format!(
                "    <testcase classname=\"oomreap\" name=\"{}\"",
                escape(&verdict.expectation)
            ));
            if verdict.passed() {
                xml.push_str("/>\n");
            } else {
                xml.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    escape(&verdict.failures[0]),
                    escape(&verdict.failures.join("\n"))
                ));
            }
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

/// XML text and attribute escaping.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
