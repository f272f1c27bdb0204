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
//! | `oomreap_reaper_gave_up_total` | counter | | victims the reaper gave up on ("unable to reap") |
//! | `oomreap_notifier_victims_total` | counter | `notifier` | victims whose mm had mmu notifiers, by owner (`kvm`, …) |
//! | `oomreap_process_mrelease_calls_total` | counter | `result` (`ok`, `eagain`, `einval`, `esrch`, `eintr`, `other`) | process_mrelease(2) calls |
//! | `oomreap_reap_calls_total` | counter | `caller` (`oom_reaper`, `process_mrelease`), `result` (`complete`, `partial`) | `__oom_reap_task_mm` calls and their own result (fentry/kprobe modes only) |
//! | `oomreap_reap_call_duration_seconds` | histogram | | duration of each `__oom_reap_task_mm` call (fentry/kprobe modes only) |
//! | `oomreap_notifier_refusals_total` | counter | | mmu notifier refusals during reaps (fentry/kprobe modes only) |
//! | `oomreap_kill_to_wake_seconds` | histogram | | kill to the reaper's wake-up |
//! | `oomreap_kill_to_reaped_seconds` | histogram | | kill to the end of the successful reap |
//! | `oomreap_reap_duration_seconds` | histogram | | time spent in reap passes per victim |
//! | `oomreap_kill_to_mm_freed_seconds` | histogram | | kill to exit_mmap |
//! | `oomreap_reaper_freed_bytes_total` | counter | | memory the reaper freed |
//! | `oomreap_allocation_retries_total` | counter | `kind` (`reclaim`, `compaction`) | retries counted before OOMs |
//! | `oomreap_dropped_events_total` | counter | `reason` (`ring_buffer_full`, `read_failed`, `undecodable`) | events lost |
//! | `oomreap_build_info` | gauge | `version`, `revision` (git commit) | always 1 |
//! | `oomreap_hook_attached` | gauge | `hook`, `kind` (`tracepoint`, `function`), `mode` (`btf_tracepoint`, `tracepoint`, `fentry`, `kprobe`, `none`) | 1 if the hook is attached in that mode |
use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::labels::CgroupIdentity;
use crate::{
    intake::{HookStatus, KernelCounters},
    tracker::{AttemptResult, Change, Tracker, Victim},
    wire::SkipCause,
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

/// Bucket bounds (seconds) for reap passes.
const REAP_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CgroupOutcome {
    cgroup: String,
    namespace: String,
    pod: String,
    container: String,
    pod_uid: String,
    outcome: String,
}

impl CgroupOutcome {
    pub fn new(cgroup: &CgroupIdentity, outcome: &str) -> Self {
        Self {
            cgroup: cgroup.cgroup.clone(),
            namespace: cgroup.namespace.clone(),
            pod: cgroup.pod.clone(),
            container: cgroup.container.clone(),
            pod_uid: cgroup.pod_uid.clone(),
            outcome: outcome.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

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
    pub(super) cgroup_victims: Family<CgroupOutcome, Counter>,
    attempts: Family<ResultLabel, Counter>,
    skips: Family<Cause, Counter>,
    lock_contention: Counter,
    gave_up: Counter,
    notifier_victims: Family<Notifier, Counter>,
    mrelease: Family<ResultLabel, Counter>,
    reap_calls: Family<ReapCallLabels, Counter>,
    reap_call_seconds: Histogram,
    notifier_refusals: Counter,
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
            attempts: Family::default(),
            skips: Family::default(),
            lock_contention: Counter::default(),
            gave_up: Counter::default(),
            notifier_victims: Family::default(),
            mrelease: Family::default(),
            reap_calls: Family::default(),
            reap_call_seconds: histogram(&REAP_BUCKETS),
            notifier_refusals: Counter::default(),
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
            "Victims the reaper gave up on (oom_reaper: unable to reap)",
            metrics.gave_up.clone(),
        );
        r.register(
            "notifier_victims",
            "Victims whose mm had mmu notifiers, by notifier owner",
            metrics.notifier_victims.clone(),
        );
        r.register(
            "process_mrelease_calls",
            "process_mrelease(2) calls, by result",
            metrics.mrelease.clone(),
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
            "mmu notifier refusals of non-blocking invalidations during reaps",
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

    /// Records how each hook is attached.
    pub fn set_hooks(&self, hooks: &[HookStatus]) {
        for hook in hooks {
            let mode = hook.attach.map_or("none", crate::display::attach_id);
            // Tracepoints are named `category:event`, kernel functions by their symbol.
            let kind = if hook.name.contains(':') {
                "tracepoint"
            } else {
                "function"
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
        for result in MRELEASE_RESULTS {
            drop(self.mrelease.get_or_create(&ResultLabel {
                result: result.into(),
            }));
        }
        for caller in ["oom_reaper", "process_mrelease"] {
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

    /// Folds one tracker change into the metrics. `names` resolves a victim's labels.
    pub fn observe(
        &self,
        tracker: &Tracker,
        change: &Change,
        names: &mut dyn FnMut(&Victim) -> VictimNames,
    ) {
        match change {
            Change::VictimMarked(id) => {
                self.killed.inc();
                let Some(v) = tracker.victim(*id) else { return };
                let names = names(v);
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
                let Some(AttemptResult::Skipped { reason, .. }) = tracker
                    .victim(*victim)
                    .and_then(|v| v.attempts.get(*index))
                    .map(|a| &a.result)
                else {
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
            Change::Mrelease { call, .. } => {
                let result = crate::wording::mrelease_label(call.ret);
                self.mrelease
                    .get_or_create(&ResultLabel {
                        result: result.into(),
                    })
                    .inc();
            }
            Change::Finished(id) => {
                let Some(v) = tracker.victim(*id) else { return };
                self.finished(v, names(v));
            }
            Change::ReapCall { call, .. } => {
                self.reap_calls
                    .get_or_create(&ReapCallLabels {
                        caller: if call.by_reaper {
                            "oom_reaper"
                        } else {
                            "process_mrelease"
                        }
                        .into(),
                        result: if call.complete { "complete" } else { "partial" }.into(),
                    })
                    .inc();
                if let Some(ns) = call.timestamp_ns.checked_sub(call.entered_ns) {
                    self.reap_call_seconds.observe(seconds(ns));
                }
            }
            Change::NotifierRefused { .. } => {
                self.notifier_refusals.inc();
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
            self.gave_up.inc();
        }
        for attempt in &v.attempts {
            let result = match &attempt.result {
                AttemptResult::Reaped {
                    complete: Some(false),
                    ..
                } => "partial",
                AttemptResult::Reaped { .. } => "reaped",
                AttemptResult::Skipped { reason, .. } => reason.name(),
                AttemptResult::InProgress => continue,
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

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;

    use super::*;
    use crate::{lab::fixtures::quick_and_jammed, wire::decode};

    /// Feeds a recorded stream through a tracker into fresh metrics; returns the exposition.
    fn exposition(records: &[Vec<u8>]) -> String {
        let (metrics, registry) = Metrics::new();
        let mut tracker = Tracker::default();
        let mut names = |v: &Victim| VictimNames {
            cgroup: CgroupIdentity::path(format!("/cg{}", v.pid)),
            notifiers: vec!["kvm".into()],
        };
        for raw in records {
            let event = decode(raw).unwrap();
            let mut changes = tracker.tick(event.timestamp_ns());
            changes.extend(tracker.apply(&event));
            for change in &changes {
                metrics.observe(&tracker, change, &mut names);
            }
        }
        for change in tracker.finish_all() {
            metrics.observe(&tracker, &change, &mut names);
        }
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[track_caller]
    fn assert_sample(text: &str, sample: &str) {
        assert!(
            text.lines().any(|l| l == sample),
            "no {sample:?} in:\n{text}"
        );
    }

    #[test]
    fn outcomes_attempts_and_contention() {
        let text = exposition(&quick_and_jammed());
        assert_sample(&text, "oomreap_victims_killed_total 2");
        assert_sample(&text, "oomreap_victims_total{outcome=\"gave_up\"} 1");
        assert_sample(&text, "oomreap_victims_total{outcome=\"exited\"} 1");
        assert_sample(
            &text,
            "oomreap_cgroup_victims_total{cgroup=\"/cg7\",namespace=\"\",pod=\"\",container=\"\",pod_uid=\"\",outcome=\"gave_up\"} 1",
        );
        assert_sample(
            &text,
            "oomreap_reaper_attempts_total{result=\"lock_contended\"} 10",
        );
        assert_sample(
            &text,
            "oomreap_reaper_skips_total{cause=\"lock_contended\"} 10",
        );
        assert_sample(&text, "oomreap_lock_contention_events_total 10");
        assert_sample(&text, "oomreap_reaper_gave_up_total 1");
        assert_sample(&text, "oomreap_kill_to_wake_seconds_count 1");
        assert_sample(&text, "oomreap_kill_to_mm_freed_seconds_count 1");
        // The recording's reaper woke exactly 2 s after the kill.
        assert_sample(&text, "oomreap_kill_to_wake_seconds_bucket{le=\"1\"} 0");
        assert_sample(&text, "oomreap_kill_to_wake_seconds_bucket{le=\"2\"} 1");
        let build = format!(
            "oomreap_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::REVISION
        );
        assert!(text.lines().any(|l| l == build), "{build} in\n{text}");
    }

    #[test]
    fn every_family_has_help_and_type() {
        let text = exposition(&quick_and_jammed());
        for family in [
            "victims_total",
            "reaper_attempts_total",
            "kill_to_reaped_seconds",
            "lock_contention_events_total",
        ] {
            assert!(
                text.contains(&format!("# HELP oomreap_{family} ")),
                "no HELP for {family}:\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE oomreap_{family} ")),
                "no TYPE for {family}:\n{text}"
            );
        }
    }

    #[test]
    fn dropped_counters_follow_the_kernel_totals() {
        let (mut metrics, registry) = Metrics::new();
        let kernel = |full| KernelCounters {
            ring_buffer_full: full,
            read_failed: 0,
        };
        metrics.set_dropped(kernel(3), 1);
        metrics.set_dropped(kernel(5), 1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert_sample(
            &text,
            "oomreap_dropped_events_total{reason=\"ring_buffer_full\"} 5",
        );
        assert_sample(
            &text,
            "oomreap_dropped_events_total{reason=\"undecodable\"} 1",
        );
    }

    #[test]
    fn hooks_show_their_mode() {
        let (metrics, registry) = Metrics::new();
        metrics.set_hooks(&[HookStatus {
            name: "oom:mark_victim",
            provides: "",
            attach: Some(crate::wire::AttachKind::BtfTracePoint),
            note: None,
        }]);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert_sample(
            &text,
            "oomreap_hook_attached{hook=\"oom:mark_victim\",kind=\"tracepoint\",mode=\"btf_tracepoint\"} 1",
        );
    }
}

#[cfg(test)]
mod deploy_tests {
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
            .attempts
            .get_or_create(&ResultLabel {
                result: labels("x"),
            })
            .inc();
        metrics
            .skips
            .get_or_create(&Cause { cause: labels("x") })
            .inc();
        metrics
            .notifier_victims
            .get_or_create(&Notifier {
                notifier: labels("x"),
            })
            .inc();
        metrics
            .mrelease
            .get_or_create(&ResultLabel {
                result: labels("x"),
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
                include_str!("../../../deploy/prometheus/rules.yml"),
            ),
            (
                "deploy/kubernetes/prometheusrule.yaml",
                include_str!("../../../deploy/kubernetes/prometheusrule.yaml"),
            ),
            (
                "deploy/grafana/oomreap-dashboard.json",
                include_str!("../../../deploy/grafana/oomreap-dashboard.json"),
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
            "../../../deploy/grafana/oomreap-dashboard.json"
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
}
