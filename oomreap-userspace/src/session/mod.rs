//! A tracing session around a command: the Rust API behind `oomreap run`, for test harnesses
//! too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use oomreap::{capture::{Capture, CaptureOptions}, clock::WallClock, intake::{Intake, IntakeOptions}};
//! use oomreap::session::{Expectation, Scope, Session};
//! let capture = Capture::start(&CaptureOptions::default())?;
//! let intake = Intake::live(capture, WallClock::now(), IntakeOptions::default())?;
//! let mut session = Session::start(intake, Scope::All);
//! let status = session.run_while(tokio::process::Command::new("./my-oom-test").status()).await??;
//! session.settle(std::time::Duration::from_secs(10)).await?;
//! let report = session.finish(vec!["./my-oom-test".into()], status.code().unwrap_or(1), &[Expectation::Reaped])?;
//! assert!(report.passed(), "{}", report.table());
//! # Ok(()) }
//! ```

mod expect;
mod report;

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

pub use expect::{Expectation, FailOn, Verdict, judge};
pub use report::{REPORT_SCHEMA_VERSION, Report, VictimSummary};

use crate::{
    clock::monotonic_now_ns,
    intake::{Intake, IntakeError},
    tracker::{Change, VictimId},
};

/// Which victims a session reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every victim on the system.
    #[default]
    All,
    /// Victims in the memory cgroup with this kernel id (the cgroup directory's inode).
    Cgroup { id: u64, path: PathBuf },
    /// Victims descended from this process (checked through /proc when the kill is seen).
    Descendants { root: u32 },
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Self::All => "all victims".into(),
            Self::Cgroup { path, .. } => format!("cgroup {}", path.display()),
            Self::Descendants { root } => format!("descendants of pid {root}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

/// An intake folding events until finished, judging the victims in scope. Their memory
/// cgroups (and pods) are the intake's annotations, resolved at the kill: a test's cgroup is
/// often gone by the time the report is written.
pub struct Session {
    intake: Intake,
    scope: Scope,
    in_scope: BTreeSet<VictimId>,
    started_ns: u64,
}

impl Session {
    /// A session over a live intake.
    pub fn start(intake: Intake, scope: Scope) -> Self {
        Self {
            intake,
            scope,
            in_scope: BTreeSet::new(),
            started_ns: monotonic_now_ns(),
        }
    }

    /// Narrows the scope once the command's pid is known.
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    /// Folds events while `work` runs; returns its output.
    pub async fn run_while<T>(&mut self, work: impl Future<Output = T>) -> Result<T, SessionError> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Ok(output),
                step = self.intake.next() => self.fold(step?),
            }
        }
    }

    /// Folds events until every victim in scope has a final outcome (and its memory was seen
    /// freed, where exit_mmap is traced), or `max` passed.
    pub async fn settle(&mut self, max: Duration) -> Result<(), SessionError> {
        let deadline = tokio::time::Instant::now() + max;
        while !self.settled() {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                step = self.intake.next() => self.fold(step?),
            }
        }
        Ok(())
    }

    /// Detaches and judges the expectations.
    pub fn finish(
        mut self,
        command: Vec<String>,
        exit_code: i32,
        expectations: &[Expectation],
    ) -> Result<Report, SessionError> {
        self.intake.refresh_counters();
        let dropped = self.intake.losses().dropped();
        let annotations = self.intake.annotations();
        let tracker = self.intake.tracker();
        let victims: Vec<VictimSummary> = tracker
            .victims()
            .filter(|v| self.in_scope.contains(&v.id))
            .map(|v| {
                let mut summary = VictimSummary::of(v);
                summary.memcg = v.memcg_id().and_then(|id| annotations.cgroup(id).cloned());
                summary.in_oom_loop = tracker.in_oom_loop(v.id);
                summary
            })
            .collect();
        let verdicts = expectations
            .iter()
            .map(|e| judge(*e, &victims, dropped))
            .collect();
        Ok(Report {
            command,
            exit_code,
            duration_ms: monotonic_now_ns().saturating_sub(self.started_ns) / 1_000_000,
            scope: self.scope.describe(),
            victims,
            dropped,
            verdicts,
        })
    }

    fn settled(&self) -> bool {
        self.intake
            .tracker()
            .victims()
            .filter(|v| self.in_scope.contains(&v.id))
            .all(|v| v.outcome.is_final())
    }

    fn fold(&mut self, step: Option<crate::intake::Step>) {
        if let Some(step) = step {
            self.scope_changes(&step.changes);
        }
    }

    /// Decides, for each new victim, whether the scope covers it.
    fn scope_changes(&mut self, changes: &[Change]) {
        for change in changes {
            let Change::VictimMarked(id) = change else {
                continue;
            };
            let Some(v) = self.intake.tracker().victim(*id) else {
                continue;
            };
            let covered = match &self.scope {
                Scope::All => true,
                Scope::Cgroup { id: memcg, .. } => v.memcg_id() == Some(*memcg),
                // The victim may be gone from /proc already (a quick exit reaped by its
                // parent): its parent, from the kill itself, usually is not.
                Scope::Descendants { root } => {
                    descends_from(v.tgid().unwrap_or(v.pid), *root)
                        || v.kill
                            .as_ref()
                            .and_then(|k| k.parent_tgid)
                            .is_some_and(|p| descends_from(p, *root))
                        || v.kill.as_ref().is_some_and(|k| {
                            descends_from(k.trigger.tgid.unwrap_or(k.trigger.pid), *root)
                        })
                }
            };
            if covered {
                self.in_scope.insert(*id);
            }
        }
    }
}

/// Returns true if and only if `pid`'s parent chain (read from /proc now) reaches `root`.
fn descends_from(mut pid: u32, root: u32) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
        else {
            return false;
        };
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim(outcome: &str, contended: usize) -> VictimSummary {
        VictimSummary {
            pid: Some(42),
            tid: 42,
            comm: Some("hog".into()),
            memcg_id: None,
            memcg: None,
            outcome: outcome.into(),
            outcome_inferred: false,
            attempts: contended,
            failed_attempts: contended,
            lock_contended_attempts: contended,
            partial_reaps: 0,
            notifiers: 0,
            gave_up_cause: None,
            kill_to_wake_ns: None,
            kill_to_reaped_ns: None,
            reap_duration_ns: None,
            kill_to_mm_freed_ns: Some(12_000_000),
            reaper_freed_kib: None,
            oom_domain: None,
            attempts_after_outcome: 0,
            mreleases: Vec::new(),
            recovery: None,
            candidates: None,
            in_oom_loop: false,
        }
    }

    #[test]
    fn recovery_and_loop_expectations_name_the_victim_and_the_cause() {
        use crate::tracker::{Cause, Recovery, Verdict as RecoveryVerdict};
        let judged = |verdict| Recovery {
            usage_at_kill_kib: Some(131_072),
            usage_after_kib: Some(100_000),
            limit_kib: Some(131_072),
            got_back_kib: Some(31_072),
            took_ns: Some(5_000_000),
            read_at: None,
            still_charged: Default::default(),
            verdict,
        };
        let mut shmem = victim("exited", 0);
        shmem.recovery = Some(judged(RecoveryVerdict::NotRecovered(Cause::Shmem)));
        shmem.in_oom_loop = true;
        let mut fine = victim("exited", 0);
        fine.recovery = Some(judged(RecoveryVerdict::Recovered));
        let unjudged = victim("exited", 0);
        assert!(judge(Expectation::Recovered, std::slice::from_ref(&fine), 0).passed());
        assert_eq!(
            judge(Expectation::Recovered, &[shmem.clone(), unjudged], 0).failures,
            [
                "victim pid 42 (hog): its domain did not recover: shmem (shared memory no kill \
                 frees)",
                "victim pid 42 (hog): recovery not judged (its domain unknown, or no outcome)"
            ]
        );
        assert_eq!(
            judge(Expectation::FailOn(FailOn::OomLoop), &[shmem, fine], 0).failures,
            ["victim pid 42 (hog): its kill was one of an OOM loop's"]
        );
    }

    #[test]
    fn verdicts_name_the_offending_victim() {
        let gave_up = [victim("gave_up", 10)];
        let verdict = judge(Expectation::FailOn(FailOn::GaveUp), &gave_up, 0);
        assert_eq!(
            verdict.failures,
            ["victim pid 42 (hog): the reaper gave up"]
        );
        assert!(!judge(Expectation::Reaped, &gave_up, 0).passed());
        assert!(!judge(Expectation::FailOn(FailOn::LockContention), &gave_up, 0).passed());
        let exited = [victim("exited", 0)];
        assert!(judge(Expectation::Reaped, &exited, 0).passed());
        assert!(judge(Expectation::MaxReapMs(12), &exited, 0).passed());
        assert!(!judge(Expectation::MaxReapMs(11), &exited, 0).passed());
        assert!(judge(Expectation::Victims(1), &exited, 0).passed());
        assert!(!judge(Expectation::MinVictims(2), &exited, 0).passed());
        assert!(!judge(Expectation::FailOn(FailOn::DroppedEvents), &exited, 3).passed());
    }

    #[test]
    fn junit_has_one_case_per_expectation() {
        let report = Report {
            command: vec!["a&b".into()],
            exit_code: 0,
            duration_ms: 1500,
            scope: "all victims".into(),
            victims: vec![victim("gave_up", 10)],
            dropped: 0,
            verdicts: vec![
                judge(Expectation::Reaped, &[victim("gave_up", 10)], 0),
                judge(Expectation::Victims(1), &[victim("gave_up", 10)], 0),
            ],
        };
        let xml = report.junit();
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"victim pid 42 (hog): outcome gave_up\">"),
            "{xml}"
        );
        assert!(xml.contains("value=\"a&amp;b\""), "{xml}");
        assert!(!report.passed());
        assert_eq!(report.json()["passed"], false);
    }

    #[test]
    fn this_process_descends_from_itself_and_not_from_a_stranger() {
        let me = std::process::id();
        assert!(descends_from(me, me));
        assert!(!descends_from(me, u32::MAX));
    }
}
