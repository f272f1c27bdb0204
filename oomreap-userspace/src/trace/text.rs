//! Human-readable lines: one per lifecycle step, one summary per victim.
use oomreap_common::event::AttachKind;

use super::Context;
use crate::{
    display::{duration, kib},
    enrich::notifier_owner,
    tracker::{AttemptResult, Change, Outcome, SkipReason, Tracker, Victim},
    wire::{LockSnapshot, Rss, Task},
};

/// Column headings matching [`lines`].
pub fn header() -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<9} {}",
        "TIME", "PID", "TID", "COMM", "STEP", "DETAIL"
    )
}

/// The lines for one change (a skip with lock holders adds their stacks, indented).
pub fn lines(tracker: &Tracker, change: &Change, cx: &mut Context) -> Vec<String> {
    match change {
        Change::VictimMarked(id) => victim_line(tracker, *id, cx, "kill", kill_detail),
        Change::MarkedAgain(id) => victim_line(tracker, *id, cx, "kill", |v, _| {
            format!("marked again ({} times)", v.times_marked)
        }),
        Change::Woken(id) => victim_line(tracker, *id, cx, "wake", |v, _| {
            since_kill(v, v.woken_at_ns)
        }),
        Change::Attempt { victim, index } => attempt_lines(tracker, *victim, *index, cx),
        Change::MmFreed(id) => victim_line(tracker, *id, cx, "exit_mmap", |v, _| {
            let by = v.mm_freed_by.as_ref().map(task).unwrap_or_default();
            format!("memory freed {}, by {by}", since_kill(v, v.mm_freed_at_ns))
        }),
        Change::Mrelease { victim, call } => {
            let result = mrelease_result(call.ret);
            let took = duration(call.returned_ns.saturating_sub(call.entered_ns));
            let detail = format!(
                "process_mrelease by {}: {result} in {took}",
                task(&call.caller)
            );
            match victim.and_then(|id| tracker.victim(id)) {
                Some(v) => vec![row(cx, call.returned_ns, v, "mrelease", &detail)],
                None => vec![format!(
                    "{:<12} {:>7} {:>7} {:<16} {:<9} {detail} (not a victim's)",
                    cx.clock.time_of_day(call.returned_ns),
                    "-",
                    "-",
                    "-",
                    "mrelease"
                )],
            }
        }
        Change::ReapCall { victim, call } => {
            let who = if call.by_reaper {
                "oom_reaper".to_owned()
            } else {
                format!("process_mrelease by {}", task(&call.caller))
            };
            let result = if call.complete {
                "complete".to_owned()
            } else {
                format!("partial, {} notifier refusal(s)", call.refusals)
            };
            let took = duration(call.timestamp_ns.saturating_sub(call.entered_ns));
            let detail = format!(
                "__oom_reap_task_mm ({who}): {result} in {took} [{}]",
                crate::display::attach_id(call.attach)
            );
            unattributed_or_row(tracker, *victim, cx, call.timestamp_ns, "reap_fn", &detail)
        }
        Change::NotifierRefused { victim, refusal } => {
            let range = refusal.range.map_or_else(String::new, |(start, end)| {
                format!(" [{start:#x}, {end:#x})")
            });
            let detail = format!(
                "mmu notifier refused a non-blocking invalidation{range} (error {}); {}",
                refusal.ret,
                notifiers(&refusal.notifiers, cx)
            );
            unattributed_or_row(
                tracker,
                *victim,
                cx,
                refusal.timestamp_ns,
                "notifier",
                &detail,
            )
        }
        Change::Finished(id) => victim_line(tracker, *id, cx, "outcome", |v, _| summary(v)),
        Change::ScoreAdjusted(e) => vec![format!(
            "{:<12} {:>7} {:>7} {:<16} {:<9} oom_score_adj {} set by {}",
            cx.clock.time_of_day(e.timestamp_ns),
            e.task.pid,
            e.task.pid,
            e.task.comm.as_deref().unwrap_or("-"),
            "score_adj",
            e.oom_score_adj,
            task(&e.changer)
        )],
    }
}

fn victim_line(
    tracker: &Tracker,
    id: crate::tracker::VictimId,
    cx: &mut Context,
    step: &str,
    detail: impl FnOnce(&Victim, &mut Context) -> String,
) -> Vec<String> {
    let Some(v) = tracker.victim(id) else {
        return Vec::new();
    };
    let at = match step {
        "wake" => v.woken_at_ns,
        "exit_mmap" => v.mm_freed_at_ns,
        "outcome" => v.finished_at_ns,
        _ => v.killed_at_ns,
    }
    .unwrap_or_default();
    let detail = detail(v, cx);
    vec![row(cx, at, v, step, &detail)]
}

/// The victim's row, or a row without one when the mm was no victim's.
fn unattributed_or_row(
    tracker: &Tracker,
    victim: Option<crate::tracker::VictimId>,
    cx: &Context,
    at_ns: u64,
    step: &str,
    detail: &str,
) -> Vec<String> {
    match victim.and_then(|id| tracker.victim(id)) {
        Some(v) => vec![row(cx, at_ns, v, step, detail)],
        None => vec![format!(
            "{:<12} {:>7} {:>7} {:<16} {step:<9} {detail} (not a victim's)",
            cx.clock.time_of_day(at_ns),
            "-",
            "-",
            "-",
        )],
    }
}

fn row(cx: &Context, at_ns: u64, v: &Victim, step: &str, detail: &str) -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<9} {detail}",
        cx.clock.time_of_day(at_ns),
        v.tgid.map_or_else(|| "-".to_owned(), |t| t.to_string()),
        v.pid,
        v.comm.as_deref().unwrap_or("-"),
        step
    )
}

fn kill_detail(v: &Victim, cx: &mut Context) -> String {
    let mut parts = Vec::new();
    match v.memory_at_kill {
        Some(m) => parts.push(format!(
            "anon {} file {} shmem {} pgtables {} total_vm {}",
            kib(m.anon_rss_kib),
            kib(m.file_rss_kib),
            kib(m.shmem_rss_kib),
            kib(m.pgtables_kib),
            kib(m.total_vm_kib)
        )),
        None => parts.push("memory unknown".into()),
    }
    if let Some(adj) = v.oom_score_adj {
        parts.push(format!("adj {adj}"));
    }
    if let Some(uid) = v.uid {
        parts.push(format!("uid {uid}"));
    }
    if let Some(id) = v.memcg_id {
        parts.push(match cx.enricher.as_mut().and_then(|e| e.cgroup(id)) {
            Some(info) => {
                let mut text = format!("memcg {}", info.path);
                if info.pod_uid.is_some() {
                    // `pod <uid>`, or `pod namespace/pod/container` when kubelet knows it.
                    let name = info.display_name();
                    text.push_str(&format!(" pod {}", name.trim_start_matches("pod ")));
                }
                text
            }
            None => format!("memcg id {id}"),
        });
    }
    if let Some(n) = &v.notifiers {
        parts.push(notifiers(n, cx));
    }
    if v.attach == Some(AttachKind::TracePoint) {
        parts.push("(classic tracepoint)".into());
    }
    let retries: u64 = v.retries_before.iter().map(|(_, n)| n).sum();
    if retries > 0 {
        parts.push(format!("{retries} reclaim/compaction retries before"));
    }
    if let Some(t) = &v.trigger {
        parts.push(format!("trigger {}", task(t)));
    }
    parts.join(" ")
}

fn notifiers(n: &crate::wire::Notifiers, cx: &mut Context) -> String {
    if n.count == 0 {
        return "notifiers none".into();
    }
    let names: Vec<String> = n
        .callbacks
        .iter()
        .map(
            |&address| match cx.enricher.as_mut().map(|e| e.symbol(address)) {
                Some(Ok(symbol)) => format!("{} ({symbol})", notifier_owner(&symbol)),
                _ => format!("{address:#x}"),
            },
        )
        .collect();
    format!("notifiers {}: {}", n.count, names.join(", "))
}

fn attempt_lines(
    tracker: &Tracker,
    id: crate::tracker::VictimId,
    index: usize,
    cx: &mut Context,
) -> Vec<String> {
    let Some(v) = tracker.victim(id) else {
        return Vec::new();
    };
    let Some(attempt) = v.attempts.get(index) else {
        return Vec::new();
    };
    let n = index + 1;
    match &attempt.result {
        AttemptResult::InProgress => {
            vec![row(
                cx,
                attempt.started_ns,
                v,
                "reap",
                &format!("attempt {n}: reaping"),
            )]
        }
        AttemptResult::Reaped {
            finished_ns,
            rss_after,
            complete,
            complete_traced,
        } => {
            let took = duration(finished_ns.saturating_sub(attempt.started_ns));
            let after = rss_after.map_or_else(|| "RSS after unknown".to_owned(), |r| rss(&r));
            // Only the traced return value is known this early; inference comes later.
            let result = match (complete, complete_traced) {
                (Some(true), true) => " (complete)",
                (Some(false), true) => " (partial: an mmu notifier refused)",
                _ => "",
            };
            vec![row(
                cx,
                *finished_ns,
                v,
                "reaped",
                &format!("attempt {n}: pass took {took}{result}; {after}"),
            )]
        }
        AttemptResult::Skipped {
            reason,
            inferred,
            lock,
        } => {
            let why = match reason {
                SkipReason::LockContended => "mmap_lock contended",
                SkipReason::AlreadySkipped => {
                    "MMF_OOM_SKIP already set (memory already being freed)"
                }
                SkipReason::Unknown => "cause unknown",
            };
            let mut detail = format!("attempt {n}: {why}");
            if *inferred {
                detail.push_str(" (inferred)");
            }
            let mut lines = Vec::new();
            if let Some(lock) = lock {
                detail.push_str(&format!("; {}", lock_text(lock)));
            }
            lines.push(row(cx, attempt.started_ns, v, "skip", &detail));
            // Stacks once per set of holders: the same jam repeats for every attempt.
            let same_holders = index
                .checked_sub(1)
                .and_then(|i| v.attempts.get(i))
                .is_some_and(|previous| match (&previous.result, lock) {
                    (
                        AttemptResult::Skipped {
                            lock: Some(before), ..
                        },
                        Some(now),
                    ) => lock_pids(before) == lock_pids(now),
                    _ => false,
                });
            if let (Some(lock), Some(enricher)) = (lock, cx.enricher.as_ref())
                && cx.stacks
                && !same_holders
            {
                for pid in lock_pids(lock) {
                    match enricher.stack(pid) {
                        Ok(frames) => {
                            lines.push(format!("    stack of {pid}:"));
                            lines.extend(frames.iter().map(|f| format!("      {f}")));
                        }
                        Err(why) => lines.push(format!("    stack of {pid}: {why}")),
                    }
                }
            }
            lines
        }
    }
}

/// The owner (if a task is named) and the waiters.
pub fn lock_pids(lock: &LockSnapshot) -> Vec<u32> {
    let mut pids: Vec<u32> = lock.owner.iter().map(|o| o.pid).collect();
    pids.extend(
        lock.waiters
            .iter()
            .flatten()
            .map(|w| w.pid)
            .filter(|&p| p != 0),
    );
    pids.dedup();
    pids
}

/// `writer-locked, 2 readers, waiters queued; owner 12 (x, reader hint); waiters 13 (y, write)`.
pub fn lock_text(lock: &LockSnapshot) -> String {
    let mut state = Vec::new();
    if lock.writer_locked {
        state.push("writer-locked".to_owned());
    }
    if lock.readers > 0 {
        state.push(format!("{} readers", lock.readers));
    }
    if lock.waiters_queued {
        state.push("waiters queued".to_owned());
    }
    if lock.handoff {
        state.push("handoff".to_owned());
    }
    let mut text = if state.is_empty() {
        "lock free now".to_owned()
    } else {
        state.join(", ")
    };
    if let Some(owner) = &lock.owner {
        let role = if owner.reader_hint {
            "reader hint"
        } else {
            "writer"
        };
        text.push_str(&format!("; owner {} ({}, {role})", owner.pid, owner.comm));
    }
    if let Some(waiters) = &lock.waiters
        && !waiters.is_empty()
    {
        let listed: Vec<String> = waiters
            .iter()
            .map(|w| format!("{} ({}, {})", w.pid, w.comm, w.kind.name()))
            .collect();
        text.push_str(&format!("; waiters {}", listed.join(", ")));
        if lock.waiters_truncated {
            text.push_str(", …");
        }
    }
    text
}

/// The summary line's text.
pub fn summary(v: &Victim) -> String {
    let what = match v.outcome {
        Outcome::Pending => "pending".to_owned(),
        Outcome::Reaping => "reaping".to_owned(),
        Outcome::ExitedBeforeWake => "exited before the reaper woke".to_owned(),
        Outcome::Reaped => "reaped".to_owned(),
        Outcome::AlreadyGone => "already gone when the reaper tried (MMF_OOM_SKIP)".to_owned(),
        Outcome::GaveUp => "reaper gave up (oom_reaper: unable to reap)".to_owned(),
        Outcome::Released => "released by process_mrelease".to_owned(),
        Outcome::Unknown => "no outcome seen".to_owned(),
    };
    let mut parts = vec![if v.outcome_inferred {
        format!("{what} (inferred)")
    } else {
        what
    }];
    if !v.attempts.is_empty() {
        parts.push(format!(
            "{} attempts, {} failed",
            v.attempts.len(),
            v.failed_attempts()
        ));
    }
    let timings = [
        ("kill→wake", v.kill_to_wake_ns()),
        ("kill→reaped", v.kill_to_reaped_ns()),
        ("reap", v.reap_duration_ns()),
        ("kill→freed", v.kill_to_mm_freed_ns()),
    ];
    let timings: Vec<String> = timings
        .iter()
        .filter_map(|(name, ns)| ns.map(|ns| format!("{name} {}", duration(ns))))
        .collect();
    if !timings.is_empty() {
        parts.push(timings.join(" "));
    }
    if let Some(freed) = v.freed_by_reaper_kib() {
        parts.push(format!("reaper freed {}", kib(freed)));
    }
    parts.join("; ")
}

fn since_kill(v: &Victim, at: Option<u64>) -> String {
    match (at, v.killed_at_ns) {
        (Some(at), Some(killed)) => format!("+{} after kill", duration(at.saturating_sub(killed))),
        _ => "(kill not seen)".to_owned(),
    }
}

fn rss(r: &Rss) -> String {
    format!(
        "RSS now anon {} file {} shmem {}",
        kib(r.anon_kib),
        kib(r.file_kib),
        kib(r.shmem_kib)
    )
}

fn task(t: &Task) -> String {
    format!(
        "{} ({})",
        t.tgid.unwrap_or(t.pid),
        t.comm.as_deref().unwrap_or("-")
    )
}

fn mrelease_result(ret: i64) -> String {
    match ret {
        0 => "ok".to_owned(),
        r if r == -i64::from(libc::EAGAIN) => "-EAGAIN (partial)".to_owned(),
        r if r == -i64::from(libc::EINVAL) => "-EINVAL (not dying)".to_owned(),
        r if r == -i64::from(libc::ESRCH) => "-ESRCH (gone)".to_owned(),
        r if r == -i64::from(libc::EINTR) => "-EINTR".to_owned(),
        r => format!("{r}"),
    }
}
