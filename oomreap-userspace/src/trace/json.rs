//! JSON Lines output: one object per lifecycle step. The schema is documented in
//! docs/events.md; bump [`SCHEMA_VERSION`] on any incompatible change.
use serde_json::{Value, json};

pub use crate::wording::SCHEMA_VERSION;
use crate::{
    intake::{Annotations, Intake, UserFrame, user_frame_json},
    tracker::{
        AttemptResult, Candidates, Change, DomainMemory, GiveUpCause, LockSnapshot, MarkVictim,
        OomLoop, Recovery, RetryKind, Rss, Task, Unreapable, Verdict, Victim, VictimId, VictimVmas,
        has_mmf_oom_skip,
    },
    wording::{candidates_text, kernel_frame, spared_note},
};

/// The object for one change, or `None` when the victim was already evicted.
pub fn object(cx: &Intake, change: &Change) -> Option<Value> {
    let tracker = cx.tracker();
    let (step, at_ns, victim, mut fields) = match change {
        Change::VictimMarked(id) => {
            let v = tracker.victim(*id)?;
            ("kill", v.killed_at_ns(), Some(v), kill_fields(v, cx))
        }
        Change::MarkedAgain(id) => {
            let v = tracker.victim(*id)?;
            (
                "kill_again",
                v.killed_at_ns(),
                Some(v),
                json!({"times_marked": v.times_marked}),
            )
        }
        Change::Woken(id) => {
            let v = tracker.victim(*id)?;
            let since = v.kill_to_wake_ns();
            (
                "wake",
                v.woken_at_ns,
                Some(v),
                json!({
                    "since_kill_ns": since,
                    "unreapable": v.unreapable_at_kill().map(|u| unreapable_with_vmas(v, &u)),
                }),
            )
        }
        Change::Attempt { victim, index } => {
            let v = tracker.victim(*victim)?;
            let attempt = v.attempts.get(*index)?;
            let n = index + 1;
            match &attempt.result {
                AttemptResult::InProgress => (
                    "reap_start",
                    Some(attempt.started_ns),
                    Some(v),
                    json!({"attempt": n}),
                ),
                AttemptResult::Reaped {
                    finished_ns,
                    rss_after,
                    complete,
                    complete_traced,
                } => (
                    "reaped",
                    Some(*finished_ns),
                    Some(v),
                    json!({
                        "attempt": n,
                        "duration_ns": finished_ns.saturating_sub(attempt.started_ns),
                        "rss_after": rss_after.as_ref().map(rss),
                        // Known here only when traced (fentry/kprobe modes).
                        "complete": complete.filter(|_| *complete_traced),
                        "unreapable": v.unreapable_after(*index).as_ref().map(unreapable_json),
                    }),
                ),
                AttemptResult::Skipped {
                    reason,
                    inferred,
                    lock,
                    mm_flags,
                } => (
                    "skip",
                    Some(attempt.started_ns),
                    Some(v),
                    json!({
                        "attempt": n,
                        "reason": reason.name(),
                        "inferred": inferred,
                        "mm_flags": mm_flags,
                        "mmf_oom_skip": mm_flags.map(has_mmf_oom_skip),
                        "lock": lock.as_ref().map(|l| lock_json(l, cx.annotations(), *victim, *index)),
                    }),
                ),
            }
        }
        Change::MmFreed(id) => {
            let v = tracker.victim(*id)?;
            (
                "exit_mmap",
                v.mm_freed_at_ns,
                Some(v),
                json!({"since_kill_ns": v.kill_to_mm_freed_ns(), "by": v.mm_freed_by.as_ref().map(task)}),
            )
        }
        Change::Mrelease { victim, call } => (
            "mrelease",
            Some(call.returned_ns),
            victim.and_then(|id| tracker.victim(id)),
            json!({
                "caller": task(&call.caller),
                "ret": call.ret,
                "duration_ns": call.returned_ns.saturating_sub(call.entered_ns),
                "target": call.target.task.as_ref().map(task),
                "target_memcg": call.target.memcg_id.map(|id| memcg_json(id, cx.annotations())),
                "oom_victim": victim.is_some(),
                "rss_before": call.target.rss_before.as_ref().map(rss),
                "rss_after": call.target.rss_after.as_ref().map(rss),
                "freed_kib": call.target.freed_kib(),
            }),
        ),
        Change::ReapCall { victim, call } => (
            "reap_fn",
            Some(call.timestamp_ns),
            victim.and_then(|id| tracker.victim(id)),
            json!({
                "caller": call.caller_name(),
                "task": task(&call.caller),
                "complete": call.complete,
                "refusals": call.refusals,
                "duration_ns": call.timestamp_ns.saturating_sub(call.entered_ns),
                "mm": format!("{:#x}", call.mm),
                "attach": call.attach.id(),
            }),
        ),
        Change::NotifierRefused { victim, refusal } => (
            "notifier_refused",
            Some(refusal.timestamp_ns),
            victim.and_then(|id| tracker.victim(id)),
            json!({
                "mm": format!("{:#x}", refusal.mm),
                "range": refusal.range.map(|(s, e)| json!({"start": format!("{s:#x}"), "end": format!("{e:#x}")})),
                "ret": refusal.ret,
                "caller_tid": refusal.caller_pid,
                "notifiers": notifiers_json(&refusal.notifiers, cx.annotations()),
                "attach": refusal.attach.id(),
            }),
        ),
        Change::Finished(id) => {
            let v = tracker.victim(*id)?;
            ("outcome", v.finished_at_ns, Some(v), outcome_fields(v))
        }
        Change::Recovery(id) => {
            let v = tracker.victim(*id)?;
            let at = v.recovery_read_at_ns();
            let recovery = v.recovery.as_deref().map(recovery_json);
            ("recovery", at, Some(v), json!({ "recovery": recovery }))
        }
        Change::OomLoop { domain, started } => {
            let l = tracker.oom_loop(*domain)?;
            let at = if *started {
                l.started_ns
            } else {
                l.ended_ns.unwrap_or(l.started_ns)
            };
            (
                "oom_loop",
                Some(at),
                None,
                oom_loop_json(l, *started, cx.annotations()),
            )
        }
        Change::ScoreAdjusted(e) => (
            "score_adj",
            Some(e.timestamp_ns),
            None,
            json!({"task": task(&e.task), "oom_score_adj": e.oom_score_adj, "changer": task(&e.changer)}),
        ),
    };
    let at_ns = at_ns.unwrap_or_default();
    let mut object = json!({
        "schema": SCHEMA_VERSION,
        "step": step,
        // Always nine fractional digits, so times sort and align as text.
        "time": cx.clock().local(at_ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        "ts_ns": at_ns,
        "victim": victim.map(victim_id),
        // A reaper pass or process_mrelease call that came after the victim's outcome: the
        // kernel's timer still fires after process_mrelease released it.
        "after_outcome": victim.map(|v| step != "recovery" && v.after_outcome(at_ns)),
    });
    if let (Some(map), Some(extra)) = (object.as_object_mut(), fields.as_object_mut()) {
        map.append(extra);
    }
    Some(object)
}

fn victim_id(v: &Victim) -> Value {
    json!({"id": v.id.0, "pid": v.tgid(), "tid": v.pid, "comm": v.comm()})
}

/// A memory cgroup: its id, path and, for a Kubernetes pod's, the pod's names.
fn memcg_json(id: u64, annotations: &Annotations) -> Value {
    let info = annotations.cgroup(id);
    let pod = info.as_ref().and_then(|i| i.pod.as_ref());
    json!({
        "id": id,
        "path": info.as_ref().map(|i| i.path.clone()),
        "namespace": pod.map(|p| p.namespace.clone()),
        "pod": pod.map(|p| p.pod.clone()),
        "container": pod.and_then(|p| p.container.clone()),
        "pod_uid": info.as_ref().and_then(|i| i.pod_uid.clone()),
        "container_id": info.as_ref().and_then(|i| i.container_id.clone()),
    })
}

/// A kill's effect on its domain, as `recovery` says it (docs/events.md).
pub fn recovery_json(r: &Recovery) -> Value {
    json!({
        "verdict": r.verdict.name(),
        "cause": match &r.verdict { Verdict::NotRecovered(c) => Some(c.name()), _ => None },
        "why": match &r.verdict { Verdict::Unknown(why) => Some(why.as_str()), _ => None },
        "usage_at_kill_kib": r.usage_at_kill_kib,
        "usage_after_kib": r.usage_after_kib,
        "limit_kib": r.limit_kib,
        "got_back_kib": r.got_back_kib,
        "took_ns": r.took_ns,
        "read_at": r.read_at.map(|a| a.name()),
        "still_charged_kib": r.still_charged,
    })
}

/// What a reap cannot free, as `unreapable` says it (docs/events.md).
fn unreapable_json(u: &Unreapable) -> Value {
    json!({
        "shmem_kib": u.shmem_kib,
        "shared_file_kib": u.shared_file_kib,
        "hugetlb_kib": u.hugetlb_kib,
        "pfnmap_kib": u.pfnmap_kib,
        "left_anon_kib": u.left_anon_kib,
        "refused_ranges": u.refused_ranges.iter()
            .map(|(s, e)| json!({"start": format!("{s:#x}"), "end": format!("{e:#x}")}))
            .collect::<Vec<_>>(),
        "inferred": u.inferred,
    })
}

/// `unreapable` with the victim's mappings by class as read after the kill (`vmas`:
/// `count`, `anon_kib`, …, `read_after_ns`; or `error` and `read_after_ns`; null before).
fn unreapable_with_vmas(v: &Victim, u: &Unreapable) -> Value {
    let mut value = unreapable_json(u);
    value["vmas"] = match v.vmas.as_deref() {
        Some(VictimVmas {
            read_after_ns,
            classes: Ok(c),
        }) => json!({
            "count": c.vmas, "anon_kib": c.anon_kib, "shmem_kib": c.shmem_kib,
            "file_kib": c.file_kib, "hugetlb_kib": c.hugetlb_kib, "pfnmap_kib": c.pfnmap_kib,
            "read_after_ns": read_after_ns,
        }),
        Some(VictimVmas {
            read_after_ns,
            classes: Err(why),
        }) => json!({"error": why, "read_after_ns": read_after_ns}),
        None => Value::Null,
    };
    value
}

/// The OOM killer's candidates for a kill, as `candidates` says it (docs/events.md).
fn candidates_json(c: &Result<Candidates, String>, annotations: &Annotations) -> Value {
    let c = match c {
        Ok(c) => c,
        Err(why) => return json!({ "error": why }),
    };
    let listed: Vec<Value> = c
        .listed
        .iter()
        .map(|candidate| {
            let p = &candidate.process;
            json!({
                "pid": p.pid,
                "comm": p.comm,
                "points": candidate.points,
                "rss_kib": p.rss_kib,
                "swap_kib": p.swap_kib,
                "pgtables_kib": p.pgtables_kib,
                "oom_score_adj": p.oom_score_adj,
                "memcg": p.memcg.map(|id| memcg_json(id, annotations)),
                "skipped": candidate.passed.map(|why| json!({"reason": why.id(), "text": why.text()})),
                "victim": candidate.victim,
            })
        })
        .collect();
    json!({
        "exact": c.exact,
        "why_inferred": c.why_inferred,
        "listed": listed,
        "rest": c.rest,
        "victim_rank": c.victim_rank,
        "total_pages": c.total_pages,
        "spared_by_adj": c.spared_by_adj,
        "note": spared_note(c),
        "summary": candidates_text(c),
        "read_after_ns": c.read_after_ns,
    })
}

/// An OOM loop's start or end, as `oom_loop` says it (docs/events.md).
fn oom_loop_json(l: &OomLoop, started: bool, annotations: &Annotations) -> Value {
    json!({
        "state": if started { "started" } else { "ended" },
        "scope": if l.domain.is_some() { "memcg" } else { "machine" },
        "memcg": l.domain.map(|id| memcg_json(id, annotations)),
        "kills": l.kill_count,
        "victims": l.kills.iter().map(|id| id.0).collect::<Vec<_>>(),
        "cause": l.cause,
        "started_ns": l.started_ns,
        "ended_ns": l.ended_ns,
        "recovered": l.ended_ns.map(|_| l.recovered),
    })
}

/// A domain's memory at the kill, as `domain_memory` says it (docs/events.md).
fn domain_memory_json(memory: &DomainMemory, annotations: &Annotations) -> Value {
    let mut value = json!({
        "scope": if memory.memcg.is_some() { "memcg" } else { "machine" },
        "memcg": memory.memcg.map(|id| memcg_json(id, annotations)),
        "read_after_ns": memory.read_after_ns,
    });
    match &memory.kib {
        Ok(kib) => value["kib"] = json!(kib),
        Err(why) => value["error"] = json!(why),
    }
    value
}

fn kill_fields(v: &Victim, cx: &Intake) -> Value {
    let Some(k) = &v.kill else {
        return Value::Null;
    };
    let memcg = k.memcg_id.map(|id| memcg_json(id, cx.annotations()));
    let notifiers = k
        .notifiers
        .as_ref()
        .map(|n| notifiers_json(n, cx.annotations()));
    let retries: Vec<Value> = v
        .retries_before
        .iter()
        .map(|(c, count)| {
            json!({
                "what": match c.what { RetryKind::Reclaim => "reclaim", RetryKind::Compaction => "compaction" },
                "node": c.node, "zone": c.zone, "order": c.order, "count": count,
            })
        })
        .collect();
    json!({
        "attach": k.attach.id(),
        "uid": k.uid,
        "oom_score_adj": k.oom_score_adj,
        "memory": k.memory.map(|m| json!({
            "total_vm_kib": m.total_vm_kib,
            "anon_rss_kib": m.anon_rss_kib,
            "file_rss_kib": m.file_rss_kib,
            "shmem_rss_kib": m.shmem_rss_kib,
            "pgtables_kib": m.pgtables_kib,
            "swap_kib": k.swap_kib,
        })),
        "mm": k.mm.map(|mm| format!("{mm:#x}")),
        "memcg": memcg,
        "notifiers": notifiers,
        "trigger": trigger_json(v, k, cx.annotations()),
        "parent_pid": k.parent_tgid,
        "retries_before": retries,
        "unreapable": v.unreapable_at_kill().map(|u| unreapable_with_vmas(v, &u)),
        "domain_memory": v.domain_at_kill.as_ref().map(|m| domain_memory_json(m, cx.annotations())),
        "candidates": v.candidates.as_deref().map(|c| candidates_json(c, cx.annotations())),
        "oom_domain": k.domain.as_ref().map(|d| {
            let badness = v.badness();
            json!({
                "constraint": d.constraint(),
                "memcg": d.memcg.map(|m| memcg_json(m.id, cx.annotations())),
                "limit_kib": d.memcg.map(|m| m.limit_kib),
                "usage_kib": d.memcg.map(|m| m.usage_kib),
                "inferred": d.exact.is_none(),
                "badness_points": badness.map(|(points, _)| points),
                "total_pages": badness.map(|(_, pages)| pages),
            })
        }),
    })
}

fn notifiers_json(n: &crate::tracker::Notifiers, annotations: &Annotations) -> Value {
    let callbacks: Vec<Value> = n
        .callbacks
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            let symbol = annotations.symbol(address);
            json!({
                "address": format!("{address:#x}"),
                "owner": annotations.notifier_owner(address),
                "symbol": symbol,
                "kind": if n.is_interval(i) { "interval" } else { "classic" },
            })
        })
        .collect();
    json!({"count": n.count, "interval": n.interval, "callbacks": callbacks})
}

fn outcome_fields(v: &Victim) -> Value {
    json!({
        "outcome": v.outcome.name(),
        "inferred": v.outcome_inferred,
        // False for a victim first met at a reaper step: its kill came before oomreap
        // attached (or its record was lost, which `dropped` events would show).
        "kill_seen": v.killed_at_ns().is_some(),
        "attempts": v.attempts.len(),
        "failed_attempts": v.failed_attempts(),
        "lock_contended": v.lock_contended(),
        "gave_up_cause": v.give_up_cause().map(GiveUpCause::name),
        "partial_passes": v.partial_passes(),
        "has_notifiers": v.has_notifiers(),
        "kill_to_wake_ns": v.kill_to_wake_ns(),
        "kill_to_reaped_ns": v.kill_to_reaped_ns(),
        "reap_duration_ns": v.reap_duration_ns(),
        "kill_to_mm_freed_ns": v.kill_to_mm_freed_ns(),
        "reaper_freed_kib": v.freed_by_reaper_kib(),
        "mreleases": v.mreleases.len(),
        "reap_calls": v.reap_calls.len(),
        "reap_calls_partial": v.reap_calls.iter().filter(|c| !c.complete).count(),
        "notifier_refusals": v.notifier_refusals.len(),
        "unreapable": v.unreapable().map(|u| unreapable_with_vmas(v, &u)),
        // Known here when judged by the outcome; else in the `recovery` step that follows.
        "recovery": v.recovery.as_deref().map(recovery_json),
    })
}

fn lock_json(
    lock: &LockSnapshot,
    annotations: &Annotations,
    victim: VictimId,
    index: usize,
) -> Value {
    let stack_of = |pid| stack(pid, annotations, victim, index);
    let waiters: Option<Vec<Value>> = lock.waiters.as_ref().map(|ws| {
        ws.iter()
            .map(|w| {
                // The queue names threads only: `tid`, as everywhere a thread is meant.
                json!({"tid": w.pid, "comm": w.comm, "kind": w.kind.name(), "stack": stack_of(w.pid)})
            })
            .collect()
    });
    json!({
        "rt": lock.rt,
        "writer_locked": lock.writer_locked,
        "writer_pending": lock.writer_pending,
        "waiters_queued": lock.waiters_queued,
        "handoff": lock.handoff,
        "readers": lock.readers,
        "count_raw": format!("{:#x}", lock.count_raw),
        "owner_raw": format!("{:#x}", lock.owner_raw),
        "owner": lock.owner.as_ref().map(|o| json!({
            "pid": o.tgid, "tid": o.pid, "comm": o.comm, "reader_hint": o.reader_hint,
            "stack": stack_of(o.pid),
        })),
        "waiters": waiters,
        "waiters_truncated": lock.waiters_truncated,
    })
}

/// `{"frames": [...]}` or `{"error": "..."}` as read when these holders first held the lock
/// (at this attempt or an earlier one of the run); `null` when stacks were not read.
fn stack(pid: u32, annotations: &Annotations, victim: VictimId, index: usize) -> Value {
    let read = (0..=index).rev().find_map(|i| {
        annotations
            .stacks(victim, i)?
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, s)| s)
    });
    match read {
        Some(Ok(frames)) => json!({"frames": frames}),
        Some(Err(error)) => json!({"error": error}),
        None => Value::Null,
    }
}

fn rss(r: &Rss) -> Value {
    json!({"anon_kib": r.anon_kib, "file_kib": r.file_kib, "shmem_kib": r.shmem_kib})
}

/// The task that hit the OOM, with its stacks where they were read (`stack`: `frames`, the
/// kernel's, innermost first; `user`, its user frames with module, offset and symbol where
/// they were resolved at the kill; `user_error`, why they were not).
fn trigger_json(v: &Victim, k: &MarkVictim, annotations: &Annotations) -> Value {
    let mut value = task(&k.trigger);
    let Some(stacks) = &k.trigger_stacks else {
        value["stack"] = Value::Null;
        return value;
    };
    let resolved = annotations.user_stack(v.id);
    let user: Vec<Value> = match resolved {
        Some(Ok(frames)) => frames.iter().map(user_frame_json).collect(),
        _ => stacks
            .user
            .iter()
            .map(|&address| {
                user_frame_json(&UserFrame {
                    address,
                    module: None,
                    offset: None,
                    symbol: None,
                })
            })
            .collect(),
    };
    value["stack"] = json!({
        "frames": stacks.kernel.iter().map(kernel_frame).collect::<Vec<_>>(),
        "named": stacks.kernel.iter().all(|f| f.name.is_some()),
        "user": user,
        "user_error": resolved.and_then(|r| r.as_ref().err()),
    });
    value
}

fn task(t: &Task) -> Value {
    json!({"pid": t.tgid, "tid": t.pid, "comm": t.comm})
}
