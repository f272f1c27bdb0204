//! The Prometheus metric families, fed from tracker changes.
//!
//! # Metrics
//!
//! All names start with `oomreap_`; durations are seconds, sizes bytes.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `oomreap_victims_killed_total` | counter | | victims the OOM killer chose |
//! | `oomreap_victims_total` | counter | `outcome` | victims whose story ended, by outcome (`exited`, `reaped`, `already_gone`, `gave_up`, `released`, `unknown`) |
//! | `oomreap_cgroup_victims_total` | counter | `cgroup`, `namespace`, `pod`, `container`, `pod_uid`, `outcome` | the same per memory cgroup, capped (see `--max-cgroups`): its path, and for a Kubernetes pod's cgroup the pod's namespace and name, the container's name and the pod's uid (empty, so absent in Prometheus, elsewhere). Every outcome's series is created at 0 at the cgroup's first kill |
//! | `oomreap_reaper_attempts_total` | counter | `result` (`reaped`, `partial`, `lock_contended`, `mmf_oom_skip`, `unknown`) | reaper attempts of finished victims |
//! | `oomreap_reaper_skips_total` | counter | `cause` | skipped attempts as they happen |
//! | `oomreap_lock_contention_events_total` | counter | | attempts that met a contended mmap_lock |
//! | `oomreap_reaper_gave_up_total` | counter | `cause` (`notifier`: an mmu notifier made every pass partial; `lock`: the mmap_lock was contended at every attempt; `mixed`; `unknown`: no failed attempt seen) | victims the reaper gave up on ("unable to reap"), by what failed their attempts; with tracepoints only a partial pass is deduced from the attempt after it |
//! | `oomreap_notifier_victims_total` | counter | `notifier` | victims whose mm had mmu notifiers, by owner (`kvm`, …) |
//! | `oomreap_process_mrelease_calls_total` | counter | `result` (`ok`, `eagain`, `einval`, `esrch`, `eintr`, `other`), `target` (`oom_victim`, `other`: a process a userspace killer chose) | process_mrelease(2) calls |
//! | `oomreap_process_mrelease_freed_bytes_total` | counter | `target` | memory process_mrelease(2) freed (the target's RSS as the call locked it minus as it returned) |
//! | `oomreap_reap_calls_total` | counter | `caller` (`oom_reaper`, `process_mrelease`, `exit_mmap`: an exiting victim's own reap, before 6.0), `result` (`complete`, `partial`) | `__oom_reap_task_mm` calls and their own result (fentry/kprobe modes only) |
//! | `oomreap_reap_call_duration_seconds` | histogram | | duration of each `__oom_reap_task_mm` call (fentry/kprobe modes only) |
//! | `oomreap_notifier_refusals_total` | counter | `notifier` (the owners of the mm's notifiers, one of which refused, joined by `+`: `rdma_rxe`, `kvm+rdma_rxe`; `unknown` where a symbol is unresolved) | mmu notifier refusals of non-blocking invalidations during reaps, by the reaper or process_mrelease (fentry/kprobe modes only) |
//! | `oomreap_recoveries_total` | counter | `verdict` (`recovered`, `not_recovered`, `unknown`), `cause` (for `not_recovered`: `shmem`, `shared_file`, `kernel`, `anon`, `reaper_gave_up`; else empty) | kills judged by whether their OOM domain got memory back (docs/events.md, `recovery`) |
//! | `oomreap_recovered_bytes` | histogram | | memory each kill's domain got back, from its usage at the kill to once the victim's memory was gone |
//! | `oomreap_oom_loops_total` | counter | | OOM loops started: a domain that kills again within a minute of a kill that did not recover it, or kills three times within a minute |
//! | `oomreap_cgroup_oom_loops_total` | counter | `cgroup`, `namespace`, `pod`, `container`, `pod_uid` | the same by the memory cgroup of the victim whose kill started the loop, capped as `oomreap_cgroup_victims_total` |
//! | `oomreap_oom_loops_active` | gauge | | OOM loops going on now |
//! | `oomreap_kill_to_wake_seconds` | histogram | | kill to the reaper's wake-up |
//! | `oomreap_kill_to_reaped_seconds` | histogram | | kill to the end of the successful reap |
//! | `oomreap_reap_duration_seconds` | histogram | | time spent in reap passes per victim |
//! | `oomreap_kill_to_mm_freed_seconds` | histogram | | kill to exit_mmap |
//! | `oomreap_reaper_freed_bytes_total` | counter | | memory the reaper freed |
//! | `oomreap_allocation_retries_total` | counter | `kind` (`reclaim`, `compaction`) | retries counted before OOMs |
//! | `oomreap_dropped_events_total` | counter | `reason` (`ring_buffer_full`, `read_failed`, `undecodable`) | events lost |
//! | `oomreap_build_info` | gauge | `version`, `revision` (git commit) | always 1 |
//! | `oomreap_hook_attached` | gauge | `hook`, `kind` (`tracepoint`, `function`), `mode` (`btf_tracepoint`, `tracepoint`, `fentry`, `kprobe`, `not_needed`, `none`) | 1 if the hook is attached in that mode |
//!
//! Past 500 lines on purpose: this table is the reference for every family, and each family
//! is registered (`Metrics::new`) and fed (`Metrics::observe`) right below it, so adding one
//! is a change to one file.
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::labels::{CgroupFamilies, CgroupIdentity, CgroupOutcome};
use crate::{
    intake::{HookStatus, KernelCounters},
    tracker::{AttemptResult, Change, GiveUpCause, Notifiers, SkipCause, Tracker, Verdict, Victim},
};

/// Bucket bounds (seconds) for the kill→… histograms: the reaper waits 2 s, then retries
/// every 100 ms up to 10 times.
const KILL_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 2.1, 2.25, 2.5, 3.0, 5.0, 10.0,
];
/// `oomreap_process_mrelease_calls_total{result}`.
const MRELEASE_RESULTS: [&str; 6] = ["ok", "eagain", "einval", "esrch", "eintr", "other"];
/// `oomreap_dropped_events_total{reason}`.
const DROP_REASONS: [&str; 3] = ["ring_buffer_full", "read_failed", "undecodable"];

/// Bucket bounds (bytes) for what a kill's domain got back: 1 MiB to 16 GiB.
const RECOVERED_BUCKETS: [f64; 8] = [
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
    17179869184.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    verdict: String,
    cause: String,
}

/// Bucket bounds (seconds) for reap passes.
const REAP_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MreleaseLabels {
    result: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Target {
    target: String,
}

/// `target` of the process_mrelease families.
const MRELEASE_TARGETS: [&str; 2] = ["oom_victim", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Notifier {
    notifier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReapCallLabels {
    caller: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Hook {
    hook: String,
    /// `tracepoint` (the base every kernel since 5.8 offers) or `function` (fentry/kprobe
    /// extras many kernels refuse): alerts ask only about tracepoints.
    kind: String,
    mode: String,
}

/// Resolves label values the tracker holds only as ids and addresses.
pub trait LabelNames {
    /// A victim's cgroup labels and notifier owners.
    fn victim(&mut self, v: &Victim) -> VictimNames;
    /// The owners (`kvm`, `rdma_rxe`, …, `unknown` where unresolved) of these notifiers.
    fn notifier_owners(&mut self, notifiers: &Notifiers) -> Vec<String>;
}

/// Names the caller resolved for a victim (the tracker has only ids and addresses).
#[derive(Clone, Debug, Default)]
pub struct VictimNames {
    /// Its cgroup's labels, already capped.
    pub cgroup: CgroupIdentity,
    /// Owners of its mmu notifiers (`kvm`, …).
    pub notifiers: Vec<String>,
}

/// Handles to every metric; cheap to clone, updated without locks.
#[derive(Clone)]
pub struct Metrics {
    killed: Counter,
    victims: Family<Outcome, Counter>,
    cgroup_victims: Family<CgroupOutcome, Counter>,
    recoveries: Family<RecoveryLabels, Counter>,
    recovered_bytes: Histogram,
    oom_loops: Counter,
    cgroup_oom_loops: Family<CgroupIdentity, Counter>,
    oom_loops_active: Gauge,
    attempts: Family<ResultLabel, Counter>,
    skips: Family<Cause, Counter>,
    lock_contention: Counter,
    gave_up: Family<Cause, Counter>,
    notifier_victims: Family<Notifier, Counter>,
    mrelease: Family<MreleaseLabels, Counter>,
    mrelease_freed: Family<Target, Counter>,
    reap_calls: Family<ReapCallLabels, Counter>,
    reap_call_seconds: Histogram,
    notifier_refusals: Family<Notifier, Counter>,
    kill_to_wake: Histogram,
    kill_to_reaped: Histogram,
    reap_duration: Histogram,
    kill_to_mm_freed: Histogram,
    freed_bytes: Counter,
    retries: Family<Kind, Counter>,
    dropped: Family<Reason, Counter>,
    dropped_seen: KernelCounters,
    undecodable_seen: u64,
    hooks: Family<Hook, Gauge>,
}

impl Metrics {
    /// Registers every family in a new registry.
    pub fn new() -> (Self, Arc<Registry>) {
        let mut registry = Registry::with_prefix("oomreap");
        let histogram = |buckets: &[f64]| Histogram::new(buckets.iter().copied());
        let metrics = Self {
            killed: Counter::default(),
            victims: Family::default(),
            cgroup_victims: Family::default(),
            recoveries: Family::default(),
            recovered_bytes: histogram(&RECOVERED_BUCKETS),
            oom_loops: Counter::default(),
            cgroup_oom_loops: Family::default(),
            oom_loops_active: Gauge::default(),
            attempts: Family::default(),
            skips: Family::default(),
            lock_contention: Counter::default(),
            gave_up: Family::default(),
            notifier_victims: Family::default(),
            mrelease: Family::default(),
            mrelease_freed: Family::default(),
            reap_calls: Family::default(),
            reap_call_seconds: histogram(&REAP_BUCKETS),
            notifier_refusals: Family::default(),
            kill_to_wake: histogram(&KILL_BUCKETS),
            kill_to_reaped: histogram(&KILL_BUCKETS),
            reap_duration: histogram(&REAP_BUCKETS),
            kill_to_mm_freed: histogram(&KILL_BUCKETS),
            freed_bytes: Counter::default(),
            retries: Family::default(),
            dropped: Family::default(),
            dropped_seen: KernelCounters::default(),
            undecodable_seen: 0,
            hooks: Family::default(),
        };
        let r = &mut registry;
        r.register(
            "victims_killed",
            "Victims the OOM killer chose",
            metrics.killed.clone(),
        );
        r.register(
            "victims",
            "Victims whose story ended, by outcome",
            metrics.victims.clone(),
        );
        r.register(
            "cgroup_victims",
            "Victims whose story ended, by memory cgroup, pod and outcome (capped; the rest as other)",
            metrics.cgroup_victims.clone(),
        );
        r.register(
            "recoveries",
            "Kills by whether their OOM domain got memory back, and if not why",
            metrics.recoveries.clone(),
        );
        r.register_with_unit(
            "recovered",
            "Memory each kill's OOM domain got back",
            Unit::Bytes,
            metrics.recovered_bytes.clone(),
        );
        r.register(
            "oom_loops",
            "OOM loops started: a domain killing again without getting memory back",
            metrics.oom_loops.clone(),
        );
        r.register(
            "cgroup_oom_loops",
            "OOM loops started, by the memory cgroup of the kill that started each (capped)",
            metrics.cgroup_oom_loops.clone(),
        );
        r.register(
            "oom_loops_active",
            "OOM loops going on now",
            metrics.oom_loops_active.clone(),
        );
        r.register(
            "reaper_attempts",
            "Reaper attempts of finished victims, by result",
            metrics.attempts.clone(),
        );
        r.register(
            "reaper_skips",
            "Skipped reaper attempts, by cause",
            metrics.skips.clone(),
        );
        r.register(
            "lock_contention_events",
            "Reaper attempts that found the victim's mmap_lock contended",
            metrics.lock_contention.clone(),
        );
        r.register(
            "reaper_gave_up",
            "Victims the reaper gave up on (oom_reaper: unable to reap), by what failed their attempts",
            metrics.gave_up.clone(),
        );
        r.register(
            "notifier_victims",
            "Victims whose mm had mmu notifiers, by notifier owner",
            metrics.notifier_victims.clone(),
        );
        r.register(
            "process_mrelease_calls",
            "process_mrelease(2) calls, by result and by whether the target was an OOM victim",
            metrics.mrelease.clone(),
        );
        r.register_with_unit(
            "process_mrelease_freed",
            "Memory process_mrelease(2) freed, by whether the target was an OOM victim",
            Unit::Bytes,
            metrics.mrelease_freed.clone(),
        );
        r.register(
            "reap_calls",
            "__oom_reap_task_mm calls by caller and their own result (fentry/kprobe modes)",
            metrics.reap_calls.clone(),
        );
        r.register_with_unit(
            "reap_call_duration",
            "Duration of each __oom_reap_task_mm call (fentry/kprobe modes)",
            Unit::Seconds,
            metrics.reap_call_seconds.clone(),
        );
        r.register(
            "notifier_refusals",
            "mmu notifier refusals of non-blocking invalidations during reaps, by the mm's notifiers",
            metrics.notifier_refusals.clone(),
        );
        r.register_with_unit(
            "kill_to_wake",
            "Kill to the reaper's wake-up",
            Unit::Seconds,
            metrics.kill_to_wake.clone(),
        );
        r.register_with_unit(
            "kill_to_reaped",
            "Kill to the end of the successful reap",
            Unit::Seconds,
            metrics.kill_to_reaped.clone(),
        );
        r.register_with_unit(
            "reap_duration",
            "Time spent in reap passes per victim",
            Unit::Seconds,
            metrics.reap_duration.clone(),
        );
        r.register_with_unit(
            "kill_to_mm_freed",
            "Kill to exit_mmap: the victim's memory gone",
            Unit::Seconds,
            metrics.kill_to_mm_freed.clone(),
        );
        r.register_with_unit(
            "reaper_freed",
            "Memory the reaper freed",
            Unit::Bytes,
            metrics.freed_bytes.clone(),
        );
        r.register(
            "allocation_retries",
            "Reclaim and compaction retries counted before OOMs",
            metrics.retries.clone(),
        );
        r.register(
            "dropped_events",
            "Kernel events lost, by reason",
            metrics.dropped.clone(),
        );
        r.register(
            "hook_attached",
            "1 if the kernel hook is attached in this mode",
            metrics.hooks.clone(),
        );
        let build: Family<Version, Gauge> = Family::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: crate::REVISION.into(),
            })
            .set(1);
        r.register("build_info", "oomreap's version", build);
        metrics.zero_known_series();
        (metrics, Arc::new(registry))
    }

    /// The per-cgroup families, for the label cap to remove a cgroup's series from.
    pub(super) fn cgroup_families(&self) -> CgroupFamilies {
        CgroupFamilies {
            victims: self.cgroup_victims.clone(),
            loops: self.cgroup_oom_loops.clone(),
        }
    }

    /// Records how each hook is attached.
    pub fn set_hooks(&self, hooks: &[HookStatus]) {
        for hook in hooks {
            // A hook this kernel does not need is no missing one (the alert looks for "none").
            let mode = match (hook.attach, &hook.not_needed) {
                (Some(kind), _) => kind.id(),
                (None, Some(_)) => "not_needed",
                (None, None) => "none",
            };
            let kind = if hook.is_function() {
                "function"
            } else {
                "tracepoint"
            };
            self.hooks
                .get_or_create(&Hook {
                    hook: hook.name.into(),
                    kind: kind.into(),
                    mode: mode.into(),
                })
                .set(1);
        }
    }

    /// Creates every series whose label values are known in advance, at 0: a series that
    /// first appears at 1 is invisible to `increase()` and `rate()`.
    fn zero_known_series(&self) {
        for outcome in crate::tracker::Outcome::ALL.iter().filter(|o| o.is_final()) {
            drop(self.victims.get_or_create(&Outcome {
                outcome: outcome.name().into(),
            }));
        }
        let causes = crate::tracker::Cause::ALL.map(|c| ("not_recovered", c.name()));
        for (verdict, cause) in [("recovered", ""), ("unknown", "")]
            .into_iter()
            .chain(causes)
        {
            drop(self.recoveries.get_or_create(&RecoveryLabels {
                verdict: verdict.into(),
                cause: cause.into(),
            }));
        }
        for cause in GiveUpCause::ALL {
            drop(self.gave_up.get_or_create(&Cause {
                cause: cause.name().into(),
            }));
        }
        for reason in SkipCause::ALL {
            drop(self.skips.get_or_create(&Cause {
                cause: reason.name().into(),
            }));
        }
        // A reap pass, complete or partial, or a skip cause: as `finished` names them.
        let skips = SkipCause::ALL.map(SkipCause::name);
        for result in ["reaped", "partial"].into_iter().chain(skips) {
            drop(self.attempts.get_or_create(&ResultLabel {
                result: result.into(),
            }));
        }
        for target in MRELEASE_TARGETS {
            for result in MRELEASE_RESULTS {
                drop(self.mrelease.get_or_create(&MreleaseLabels {
                    result: result.into(),
                    target: target.into(),
                }));
            }
            drop(self.mrelease_freed.get_or_create(&Target {
                target: target.into(),
            }));
        }
        for caller in ["oom_reaper", "process_mrelease", "exit_mmap"] {
            for result in ["complete", "partial"] {
                drop(self.reap_calls.get_or_create(&ReapCallLabels {
                    caller: caller.into(),
                    result: result.into(),
                }));
            }
        }
        for kind in ["reclaim", "compaction"] {
            drop(self.retries.get_or_create(&Kind { kind: kind.into() }));
        }
        for reason in DROP_REASONS {
            drop(self.dropped.get_or_create(&Reason {
                reason: reason.into(),
            }));
        }
    }

    /// Brings the dropped-event counters up to the kernel's totals.
    pub fn set_dropped(&mut self, kernel: KernelCounters, undecodable: u64) {
        let add = |family: &Family<Reason, Counter>, reason: &str, now: u64, seen: u64| {
            if now > seen {
                family
                    .get_or_create(&Reason {
                        reason: reason.into(),
                    })
                    .inc_by(now - seen);
            }
        };
        add(
            &self.dropped,
            "ring_buffer_full",
            kernel.ring_buffer_full,
            self.dropped_seen.ring_buffer_full,
        );
        add(
            &self.dropped,
            "read_failed",
            kernel.read_failed,
            self.dropped_seen.read_failed,
        );
        add(
            &self.dropped,
            "undecodable",
            undecodable,
            self.undecodable_seen,
        );
        self.dropped_seen = kernel;
        self.undecodable_seen = undecodable;
    }

    /// Folds one tracker change into the metrics. `names` resolves labels.
    pub fn observe(&self, tracker: &Tracker, change: &Change, names: &mut dyn LabelNames) {
        match change {
            Change::VictimMarked(id) => {
                self.killed.inc();
                let Some(v) = tracker.victim(*id) else { return };
                let names = names.victim(v);
                // The cgroup's series exist at 0 from the kill on, so the outcome that follows
                // is an increase even for the cgroup's first victim.
                for outcome in crate::tracker::Outcome::ALL.iter().filter(|o| o.is_final()) {
                    drop(
                        self.cgroup_victims
                            .get_or_create(&CgroupOutcome::new(&names.cgroup, outcome.name())),
                    );
                }
                if v.has_notifiers() {
                    for owner in names.notifiers {
                        self.notifier_victims
                            .get_or_create(&Notifier { notifier: owner })
                            .inc();
                    }
                }
                let (reclaim, compaction) = v.retries_by_kind();
                for (kind, n) in [("reclaim", reclaim), ("compaction", compaction)] {
                    if n > 0 {
                        self.retries
                            .get_or_create(&Kind { kind: kind.into() })
                            .inc_by(n);
                    }
                }
            }
            Change::Attempt { victim, index } => {
                let Some((v, attempt)) = tracker
                    .victim(*victim)
                    .and_then(|v| Some((v, v.attempts.get(*index)?)))
                else {
                    return;
                };
                // Attempts are counted when their victim finishes; one after that (the
                // reaper's timer outlives process_mrelease) is counted as it ends.
                if v.after_outcome(attempt.started_ns)
                    && let Some(result) = attempt_result(&attempt.result)
                {
                    self.attempts
                        .get_or_create(&ResultLabel {
                            result: result.into(),
                        })
                        .inc();
                }
                let AttemptResult::Skipped { reason, .. } = &attempt.result else {
                    return;
                };
                self.skips
                    .get_or_create(&Cause {
                        cause: reason.name().into(),
                    })
                    .inc();
                if *reason == SkipCause::LockContended {
                    self.lock_contention.inc();
                }
            }
            Change::MmFreed(id) => {
                if let Some(ns) = tracker.victim(*id).and_then(Victim::kill_to_mm_freed_ns) {
                    self.kill_to_mm_freed.observe(seconds(ns));
                }
            }
            Change::Mrelease { victim, call } => {
                let target = MRELEASE_TARGETS[usize::from(victim.is_none())];
                self.mrelease
                    .get_or_create(&MreleaseLabels {
                        result: crate::wording::mrelease_label(call.ret).into(),
                        target: target.into(),
                    })
                    .inc();
                if let Some(kib) = call.target.freed_kib() {
                    self.mrelease_freed
                        .get_or_create(&Target {
                            target: target.into(),
                        })
                        .inc_by(kib * 1024);
                }
            }
            Change::Finished(id) => {
                let Some(v) = tracker.victim(*id) else { return };
                self.finished(v, names.victim(v));
            }
            Change::ReapCall { call, .. } => {
                self.reap_calls
                    .get_or_create(&ReapCallLabels {
                        caller: call.caller_name().into(),
                        result: if call.complete { "complete" } else { "partial" }.into(),
                    })
                    .inc();
                if let Some(ns) = call.timestamp_ns.checked_sub(call.entered_ns) {
                    self.reap_call_seconds.observe(seconds(ns));
                }
            }
            Change::NotifierRefused { refusal, .. } => {
                let mut owners = names.notifier_owners(&refusal.notifiers);
                owners.sort();
                owners.dedup();
                let notifier = if owners.is_empty() {
                    "unknown".to_owned()
                } else {
                    owners.join("+")
                };
                self.notifier_refusals
                    .get_or_create(&Notifier { notifier })
                    .inc();
            }
            Change::Recovery(id) => {
                let Some(r) = tracker.victim(*id).and_then(|v| v.recovery.as_ref()) else {
                    return;
                };
                let cause = match &r.verdict {
                    Verdict::NotRecovered(cause) => cause.name(),
                    _ => "",
                };
                self.recoveries
                    .get_or_create(&RecoveryLabels {
                        verdict: r.verdict.name().into(),
                        cause: cause.into(),
                    })
                    .inc();
                if let Some(kib) = r.got_back_kib {
                    self.recovered_bytes.observe((kib * 1024) as f64);
                }
            }
            Change::OomLoop { domain, started } => {
                if !*started {
                    self.oom_loops_active.dec();
                    return;
                }
                self.oom_loops.inc();
                self.oom_loops_active.inc();
                let starter = tracker
                    .oom_loop(*domain)
                    .and_then(|l| l.kills.last())
                    .and_then(|id| tracker.victim(*id));
                if let Some(v) = starter {
                    let names = names.victim(v);
                    self.cgroup_oom_loops.get_or_create(&names.cgroup).inc();
                }
            }
            Change::MarkedAgain(_) | Change::Woken(_) | Change::ScoreAdjusted(_) => {}
        }
    }

    fn finished(&self, v: &Victim, names: VictimNames) {
        let outcome = v.outcome.name().to_owned();
        self.victims
            .get_or_create(&Outcome {
                outcome: outcome.clone(),
            })
            .inc();
        self.cgroup_victims
            .get_or_create(&CgroupOutcome::new(&names.cgroup, &outcome))
            .inc();
        if v.outcome == crate::tracker::Outcome::GaveUp {
            // A give-up with no failed attempt seen (events lost) has no cause to name.
            let cause = v.give_up_cause().map_or("unknown", GiveUpCause::name);
            self.gave_up
                .get_or_create(&Cause {
                    cause: cause.into(),
                })
                .inc();
        }
        for attempt in &v.attempts {
            let Some(result) = attempt_result(&attempt.result) else {
                continue;
            };
            self.attempts
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc();
        }
        for (histogram, value) in [
            (&self.kill_to_wake, v.kill_to_wake_ns()),
            (&self.kill_to_reaped, v.kill_to_reaped_ns()),
            (&self.reap_duration, v.reap_duration_ns()),
        ] {
            if let Some(ns) = value {
                histogram.observe(seconds(ns));
            }
        }
        if let Some(kib) = v.freed_by_reaper_kib() {
            self.freed_bytes.inc_by(kib * 1024);
        }
    }
}

/// The `result` label of an ended attempt.
fn attempt_result(result: &AttemptResult) -> Option<&'static str> {
    match result {
        AttemptResult::Reaped {
            complete: Some(false),
            ..
        } => Some("partial"),
        AttemptResult::Reaped { .. } => Some("reaped"),
        AttemptResult::Skipped { reason, .. } => Some(reason.name()),
        AttemptResult::InProgress => None,
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
mod tests;
