//! Human-readable lines: one per lifecycle step, one summary per victim.
use crate::{
    intake::Intake,
    tracker::{AttachKind, AttemptResult, Change, Rss, Victim, VictimId},
    wording::{
        candidates_text, cgroup_name, domain_memory_text, duration, kib, lock_text, mm_flags_text,
        mrelease_result, notifier_names, oom_domain_text, oom_loop_text, recovery_text, skip_cause,
        summary, task, trigger_stacks_text,
    },
};

/// Column headings matching [`lines`].
pub fn header() -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<9} {}",
        "TIME", "PID", "TID", "COMM", "STEP", "DETAIL"
    )
}

/// The lines for one change (a skip with lock holders adds their stacks, indented).
pub fn lines(cx: &Intake, change: &Change) -> Vec<String> {
    let tracker = cx.tracker();
    match change {
        Change::VictimMarked(id) => victim_line(cx, *id, "kill", kill_detail),
        Change::MarkedAgain(id) => victim_line(cx, *id, "kill", |v, _| {
            format!("marked again ({} times)", v.times_marked)
        }),
        Change::Woken(id) => victim_line(cx, *id, "wake", |v, _| since_kill(v, v.woken_at_ns)),
        Change::Attempt { victim, index } => attempt_lines(cx, *victim, *index),
        Change::Recovery(id) => victim_line(cx, *id, "recovery", |v, _| {
            v.recovery.as_deref().map(recovery_text).unwrap_or_default()
        }),
        Change::OomLoop { domain, .. } => {
            let Some(l) = tracker.oom_loop(*domain) else {
                return Vec::new();
            };
            let at = l.ended_ns.unwrap_or(l.started_ns);
            vec![format!(
                "{:<12} {:>7} {:>7} {:<16} {:<9} {}",
                cx.clock().time_of_day(at),
                "-",
                "-",
                "-",
                "oom_loop",
                oom_loop_text(l, cx.annotations())
            )]
        }
        Change::MmFreed(id) => victim_line(cx, *id, "exit_mmap", |v, _| {
            let by = v.mm_freed_by.as_ref().map(task).unwrap_or_default();
            format!("memory freed {}, by {by}", since_kill(v, v.mm_freed_at_ns))
        }),
        Change::Mrelease { victim, call } => {
            let result = mrelease_result(call.ret);
            let took = duration(call.returned_ns.saturating_sub(call.entered_ns));
            let target = &call.target;
            let mut detail = format!(
                "process_mrelease by {}: {result} in {took}",
                task(&call.caller)
            );
            if let Some(freed) = target.freed_kib() {
                detail.push_str(&format!("; freed {}", kib(freed)));
            }
            match victim.and_then(|id| tracker.victim(id)) {
                Some(v) => vec![row(cx, call.returned_ns, v, "mrelease", &detail)],
                None => {
                    // Not an OOM victim (lmkd, earlyoom and others kill on their own).
                    let t = target.task.as_ref();
                    let memcg = target
                        .memcg_id
                        .map(|id| format!(" memcg {}", cgroup_name(cx.annotations(), id)))
                        .unwrap_or_default();
                    vec![format!(
                        "{:<12} {:>7} {:>7} {:<16} {:<9} {detail}; not an OOM victim{memcg}",
                        cx.clock().time_of_day(call.returned_ns),
                        t.and_then(|t| t.tgid).map_or("-".into(), |p| p.to_string()),
                        t.map_or("-".into(), |t| t.pid.to_string()),
                        t.and_then(|t| t.comm.as_deref()).unwrap_or("-"),
                        "mrelease"
                    )]
                }
            }
        }
        Change::ReapCall { victim, call } => {
            let who = if call.by_reaper {
                "oom_reaper".to_owned()
            } else {
                format!("{} by {}", call.caller_name(), task(&call.caller))
            };
            let result = if call.complete {
                "complete".to_owned()
            } else {
                format!("partial, {} notifier refusal(s)", call.refusals)
            };
            let took = duration(call.timestamp_ns.saturating_sub(call.entered_ns));
            let detail = format!(
                "__oom_reap_task_mm ({who}): {result} in {took} [{}]",
                call.attach.id()
            );
            unattributed_or_row(cx, *victim, call.timestamp_ns, "reap_fn", &detail)
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
            unattributed_or_row(cx, *victim, refusal.timestamp_ns, "notifier", &detail)
        }
        Change::Finished(id) => victim_line(cx, *id, "outcome", |v, _| summary(v)),
        Change::ScoreAdjusted(e) => vec![format!(
            "{:<12} {:>7} {:>7} {:<16} {:<9} oom_score_adj {} set by {}",
            cx.clock().time_of_day(e.timestamp_ns),
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
    cx: &Intake,
    id: VictimId,
    step: &str,
    detail: impl FnOnce(&Victim, &Intake) -> String,
) -> Vec<String> {
    let Some(v) = cx.tracker().victim(id) else {
        return Vec::new();
    };
    let at = match step {
        "wake" => v.woken_at_ns,
        "exit_mmap" => v.mm_freed_at_ns,
        "outcome" => v.finished_at_ns,
        "recovery" => v.recovery_read_at_ns(),
        _ => v.killed_at_ns(),
    }
    .unwrap_or_default();
    let detail = detail(v, cx);
    vec![row(cx, at, v, step, &detail)]
}

/// The victim's row, or a row without one when the mm was no victim's.
fn unattributed_or_row(
    cx: &Intake,
    victim: Option<VictimId>,
    at_ns: u64,
    step: &str,
    detail: &str,
) -> Vec<String> {
    match victim.and_then(|id| cx.tracker().victim(id)) {
        Some(v) => vec![row(cx, at_ns, v, step, detail)],
        None => vec![format!(
            "{:<12} {:>7} {:>7} {:<16} {step:<9} {detail} (not a victim's)",
            cx.clock().time_of_day(at_ns),
            "-",
            "-",
            "-",
        )],
    }
}

fn row(cx: &Intake, at_ns: u64, v: &Victim, step: &str, detail: &str) -> String {
    // A recovery always follows the outcome: only a kernel step can come late.
    let late = if step != "recovery" && v.after_outcome(at_ns) {
        " (after its outcome)"
    } else {
        ""
    };
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<9} {detail}{late}",
        cx.clock().time_of_day(at_ns),
        v.tgid().map_or_else(|| "-".to_owned(), |t| t.to_string()),
        v.pid,
        v.comm().unwrap_or("-"),
        step
    )
}

fn kill_detail(v: &Victim, cx: &Intake) -> String {
    let Some(k) = &v.kill else {
        return String::new();
    };
    let mut parts = Vec::new();
    match k.memory {
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
    if let Some(adj) = k.oom_score_adj {
        parts.push(format!("adj {adj}"));
    }
    if let Some(uid) = k.uid {
        parts.push(format!("uid {uid}"));
    }
    if let Some(id) = k.memcg_id {
        parts.push(match cx.annotations().cgroup(id) {
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
    if let Some(n) = &k.notifiers {
        parts.push(notifiers(n, cx));
    }
    if let Some(domain) = &k.domain {
        parts.push(oom_domain_text(domain, cx.annotations()));
    }
    if let Some(memory) = &v.domain_at_kill {
        parts.push(domain_memory_text(memory));
    }
    if k.attach == AttachKind::TracePoint {
        parts.push("(classic tracepoint)".into());
    }
    let retries: u64 = v.retries_before.iter().map(|(_, n)| n).sum();
    if retries > 0 {
        parts.push(format!("{retries} reclaim/compaction retries before"));
    }
    parts.push(format!("trigger {}", task(&k.trigger)));
    match v.candidates.as_deref() {
        Some(Ok(c)) => parts.push(candidates_text(c)),
        Some(Err(why)) => parts.push(format!("candidates unknown: {why}")),
        None => {}
    }
    if let Some(text) = k
        .trigger_stacks
        .as_ref()
        .and_then(|stacks| trigger_stacks_text(stacks, cx.annotations().user_stack(v.id)))
    {
        parts.push(text);
    }
    parts.join(" ")
}

fn notifiers(n: &crate::tracker::Notifiers, cx: &Intake) -> String {
    if n.count == 0 {
        return "notifiers none".into();
    }
    let names = notifier_names(cx.annotations(), n);
    format!("notifiers {}: {}", n.count, names.join("; "))
}

fn attempt_lines(cx: &Intake, id: VictimId, index: usize) -> Vec<String> {
    let Some(v) = cx.tracker().victim(id) else {
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
            mm_flags,
        } => {
            let why = skip_cause(*reason);
            let mut detail = format!("attempt {n}: {why}");
            if *inferred {
                detail.push_str(" (inferred)");
            }
            let mut lines = Vec::new();
            if let Some(lock) = lock {
                detail.push_str(&format!("; {}", lock_text(lock)));
            }
            if let Some(flags) = mm_flags {
                detail.push_str(&format!("; {}", mm_flags_text(*flags)));
            }
            lines.push(row(cx, attempt.started_ns, v, "skip", &detail));
            // Stacks once per set of holders: the same jam repeats for every attempt.
            for (pid, stack) in cx.annotations().stacks(id, index).into_iter().flatten() {
                match stack {
                    Ok(frames) => {
                        lines.push(format!("    stack of {pid}:"));
                        lines.extend(frames.iter().map(|f| format!("      {f}")));
                    }
                    Err(why) => lines.push(format!("    stack of {pid}: {why}")),
                }
            }
            lines
        }
    }
}

fn since_kill(v: &Victim, at: Option<u64>) -> String {
    match (at, v.killed_at_ns()) {
        (Some(at), Some(killed)) => format!("+{} after kill", duration(at.saturating_sub(killed))),
        _ => "(kill not seen: before oomreap attached)".to_owned(),
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
