//! How oomreap words what it saw, for every front end alike: skip causes, the lock text,
//! process_mrelease's return values, notifier and cgroup names, the domain's memory, tasks
//! and outcome summaries. trace, top and serve import this, never each other.
mod units;

pub use units::{attach_label, duration, kib};

use crate::{
    intake::{Annotations, UserStack},
    tracker::{
        Candidate, Candidates, DomainKey, DomainMemory, GiveUpCause, OomLoop, Outcome, Recovery,
        Verdict, Victim,
    },
    wire::{
        KernelFrame, LockSnapshot, Notifiers, OomDomain, SkipCause, Task, TriggerStacks,
        has_mmf_oom_skip,
    },
};

/// Version of the JSON schema of trace's lines (docs/events.md), in every object's `schema`
/// field, and of the other JSON oomreap writes in the same words (inject, doctor).
pub const SCHEMA_VERSION: u32 = 1;

/// A skip cause in full, as trace says it.
pub fn skip_cause(reason: SkipCause) -> &'static str {
    match reason {
        SkipCause::LockContended => "mmap_lock contended",
        SkipCause::AlreadySkipped => "MMF_OOM_SKIP already set (memory already being freed)",
        SkipCause::Unknown => "cause unknown",
    }
}

/// A skip cause in brief, for a timeline line.
pub fn skip_cause_brief(reason: SkipCause) -> &'static str {
    match reason {
        SkipCause::LockContended => "mmap_lock contended",
        SkipCause::AlreadySkipped => "MMF_OOM_SKIP set",
        SkipCause::Unknown => "cause unknown",
    }
}

/// `mm->flags` at a skip, with the bit that decides it named.
pub fn mm_flags_text(mm_flags: u64) -> String {
    let state = if has_mmf_oom_skip(mm_flags) {
        "set"
    } else {
        "clear"
    };
    format!("mm flags {mm_flags:#x}: MMF_OOM_SKIP {state}")
}

/// `writer-locked, 2 readers, waiters queued; owner 12 (x, reader hint); waiters 13 (y, write)`.
pub fn lock_text(lock: &LockSnapshot) -> String {
    let mut state = Vec::new();
    if lock.writer_locked {
        state.push("writer-locked".to_owned());
    }
    if lock.writer_pending {
        state.push("writer pending".to_owned());
    }
    if lock.readers > 0 {
        let plural = if lock.readers == 1 { "" } else { "s" };
        state.push(format!("{} reader{plural}", lock.readers));
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
    if lock.rt {
        text.push_str(" (PREEMPT_RT rtmutex)");
    }
    if let Some(owner) = &lock.owner {
        let role = if owner.reader_hint {
            "reader hint"
        } else {
            "writer"
        };
        text.push_str(&format!("; owner {} ({}, {role})", owner.pid, owner.comm));
    } else if lock.reader_owned_unnamed() {
        text.push_str("; owner unnamed (the last reader to take it has left)");
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

/// process_mrelease's return values: (value, metric label, text).
const MRELEASE_RESULTS: [(i32, &str, &str); 5] = [
    (0, "ok", "ok"),
    (
        libc::EAGAIN,
        "eagain",
        "-EAGAIN (partial reap: an mmu notifier refused)",
    ),
    (libc::EINVAL, "einval", "-EINVAL (not dying)"),
    (libc::ESRCH, "esrch", "-ESRCH (gone)"),
    (libc::EINTR, "eintr", "-EINTR"),
];

fn mrelease_entry(ret: i64) -> Option<&'static (i32, &'static str, &'static str)> {
    MRELEASE_RESULTS
        .iter()
        .find(|(errno, _, _)| -i64::from(*errno) == ret)
}

/// Why the reaper gave up, for people: the kernel's "unable to reap" names no cause.
pub fn give_up_text(v: &Victim, cause: GiveUpCause) -> String {
    match cause {
        GiveUpCause::Notifier => "because an mmu notifier refused every pass".into(),
        GiveUpCause::Lock => "because the mmap_lock was contended at every attempt".into(),
        GiveUpCause::Mixed => format!(
            "because of a contended mmap_lock ({} attempts) and an mmu notifier ({} partial passes)",
            v.lock_contended_attempts(),
            v.partial_reaper_passes()
        ),
    }
}

/// A process_mrelease return value as a metric label: `ok`, `eagain`, … or `other`.
pub fn mrelease_label(ret: i64) -> &'static str {
    mrelease_entry(ret).map_or("other", |(_, label, _)| label)
}

/// A process_mrelease return value for people: `ok`, `-EAGAIN (partial)`, … or the number.
pub fn mrelease_result(ret: i64) -> String {
    mrelease_entry(ret).map_or_else(|| ret.to_string(), |(_, _, text)| (*text).to_owned())
}

/// `owner (symbol [module])` for a notifier callback, or its address when unresolved.
pub fn notifier_name(annotations: &Annotations, address: u64) -> String {
    match (
        annotations.notifier_owner(address),
        annotations.symbol(address),
    ) {
        (Some(owner), Some(symbol)) => format!("{owner} ({symbol})"),
        _ => format!("{address:#x}"),
    }
}

/// Each listed notifier's name, an interval notifier's (the kind that refuses the reaper:
/// RDMA ODP, HMM, GPU userptr) marked so: `rdma_rxe (rxe_ib_invalidate_range [rdma_rxe]),
/// interval`.
pub fn notifier_names(annotations: &Annotations, notifiers: &Notifiers) -> Vec<String> {
    notifiers
        .callbacks
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            let name = notifier_name(annotations, address);
            if notifiers.is_interval(i) {
                format!("{name}, interval")
            } else {
                name
            }
        })
        .collect()
}

/// The victim's memory cgroup as people know it (pod or path), or `id N` when unresolved.
pub fn cgroup_name(annotations: &Annotations, id: u64) -> String {
    annotations
        .cgroup(id)
        .map_or_else(|| format!("id {id}"), |info| info.display_name())
}

/// Which limit a kill was for: `OOM domain memcg /pod (limit 128.0M, usage 127.9M)`, or the
/// machine's; `inferred` unless the OOM killer itself said.
pub fn oom_domain_text(domain: &OomDomain, annotations: &Annotations) -> String {
    let how = if domain.exact.is_some() {
        ""
    } else {
        ", inferred"
    };
    match &domain.memcg {
        Some(m) => format!(
            "OOM domain memcg {} at limit {} (usage {}{how})",
            cgroup_name(annotations, m.id),
            kib(m.limit_kib),
            kib(m.usage_kib)
        ),
        None => format!("OOM domain global (no cgroup of the trigger at its limit{how})"),
    }
}

/// What the domain held when the kill arrived: `domain held anon 90.1M file 2.0M shmem 0
/// kernel 1.2M (read 2ms after the kill)`, its largest kinds in a fixed order.
pub fn domain_memory_text(memory: &DomainMemory) -> String {
    const SHOWN: [&str; 5] = ["anon", "file", "shmem", "kernel", "sock"];
    let after = duration(memory.read_after_ns);
    match &memory.kib {
        Ok(kib) => {
            let kinds: Vec<String> = SHOWN
                .iter()
                .filter_map(|kind| Some(format!("{kind} {}", self::kib(*kib.get(*kind)?))))
                .collect();
            format!(
                "domain held {} (read {after} after the kill)",
                kinds.join(" ")
            )
        }
        Err(why) => format!("domain memory unread ({why})"),
    }
}

/// Whether the kill gave its domain memory back: `recovered: domain got 64.0M back in 12ms
/// (usage 2.1M of 128.0M)`, or `not recovered: domain got 30.0M back in 12ms; 96.1M shmem
/// still charged: shared memory no kill frees`, or `recovery unknown: why`.
pub fn recovery_text(r: &Recovery) -> String {
    let got_back = match (r.got_back_kib, r.took_ns) {
        (Some(got), Some(took)) => format!("domain got {} back in {}", kib(got), duration(took)),
        _ => "domain got an unknown amount back".to_owned(),
    };
    let usage = match (r.usage_after_kib, r.limit_kib) {
        (Some(usage), Some(limit)) => format!(" (usage {} of {})", kib(usage), kib(limit)),
        _ => String::new(),
    };
    match &r.verdict {
        Verdict::Recovered => format!("recovered: {got_back}{usage}"),
        Verdict::NotRecovered(cause) => {
            let charged = match cause.name() {
                kind @ ("shmem" | "kernel") => r
                    .still_charged
                    .get(kind)
                    .map(|n| format!("; {} {kind} still charged", self::kib(*n)))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!(
                "not recovered: {got_back}{usage}{charged}: {}",
                cause.meaning()
            )
        }
        Verdict::Unknown(why) => format!("recovery unknown: {why}"),
    }
}

/// A domain by name: its memory cgroup's, or `the machine`.
pub fn domain_name(annotations: &Annotations, domain: DomainKey) -> String {
    domain.map_or_else(
        || "the machine".to_owned(),
        |id| cgroup_name(annotations, id),
    )
}

/// An OOM loop: `OOM loop in /pod: 3 kills since 12:00:01, cause shmem`, or its end.
pub fn oom_loop_text(l: &OomLoop, annotations: &Annotations) -> String {
    let name = domain_name(annotations, l.domain);
    let cause = l.cause.map(|c| format!(", cause {c}")).unwrap_or_default();
    match l.ended_ns {
        None => format!("OOM loop in {name}: {} kills{cause}", l.kill_count),
        Some(ended) => {
            let how = if l.recovered {
                "a kill recovered the domain"
            } else {
                "no kill for the loop window"
            };
            format!(
                "OOM loop in {name} ended after {} kills in {}: {how}",
                l.kill_count,
                duration(ended.saturating_sub(l.started_ns))
            )
        }
    }
}

/// A kernel frame as shown: the kernel's own name, or the address where it gave none.
pub fn kernel_frame(frame: &KernelFrame) -> String {
    frame
        .name
        .clone()
        .unwrap_or_else(|| format!("{:#x}", frame.address))
}

/// The trigger's way into the OOM killer, in brief: the functions from `out_of_memory` (where
/// the stack has it) out to the allocation, `out_of_memory < mem_cgroup_out_of_memory <
/// try_charge_memcg < …`, the first eight, offsets and modules left out.
pub fn trigger_path(frames: &[KernelFrame]) -> String {
    const SHOWN: usize = 8;
    let function = |frame: &KernelFrame| {
        let shown = kernel_frame(frame);
        shown.split(['+', ' ']).next().unwrap_or(&shown).to_owned()
    };
    let start = frames
        .iter()
        .position(|f| function(f) == "out_of_memory")
        .unwrap_or(0);
    let path: Vec<String> = frames[start..].iter().take(SHOWN).map(function).collect();
    let rest = frames.len() - start - path.len();
    let more = if rest > 0 {
        format!(" < … {rest} more")
    } else {
        String::new()
    };
    format!("via {}{more}", path.join(" < "))
}

/// Why this victim, in one line: `chosen over 3 others: 5678 postgres -9000 pts (adj -900),
/// …`, and a note where `oom_score_adj` spared larger processes.
pub fn candidates_text(c: &Candidates) -> String {
    const NAMED: usize = 3;
    let others: Vec<&Candidate> = c.listed.iter().filter(|c| !c.victim).collect();
    let count = others.len() + c.rest as usize;
    let mut text = match count {
        0 => "the only candidate".to_owned(),
        n => {
            let named: Vec<String> = others
                .iter()
                .take(NAMED)
                .map(|o| {
                    let p = &o.process;
                    match (o.points, o.passed) {
                        (_, Some(why)) => {
                            format!("{} {} passed over ({})", p.pid, p.comm, why.text())
                        }
                        (Some(points), None) => {
                            format!(
                                "{} {} {points} pts (adj {})",
                                p.pid, p.comm, p.oom_score_adj
                            )
                        }
                        (None, None) => format!("{} {}", p.pid, p.comm),
                    }
                })
                .collect();
            let more = if n > named.len() { ", …" } else { "" };
            let plural = if n == 1 { "" } else { "s" };
            format!("chosen over {n} other{plural}: {}{more}", named.join(", "))
        }
    };
    if let Some(rank) = c.victim_rank.filter(|&r| r > 1) {
        // Exact, only a process that asked to go first (`oom_task_origin`) ranks lower.
        let source = match c.exact {
            true => "by the OOM killer's points",
            false => "as read after the kill",
        };
        text.push_str(&format!(" (ranked {rank} {source})"));
    }
    if let Some(note) = spared_note(c) {
        text.push_str(&format!("; {note}"));
    }
    text
}

/// `3 larger processes had oom_score_adj ≤ -900`, where `oom_score_adj` made processes with
/// more memory than the victim weigh less.
pub fn spared_note(c: &Candidates) -> Option<String> {
    let lowest = c.spared_lowest_adj?;
    let n = c.spared_by_adj;
    let noun = if n == 1 { "process" } else { "processes" };
    Some(format!("{n} larger {noun} had oom_score_adj ≤ {lowest}"))
}

/// The trigger's stacks in brief: its way into the OOM killer, and where it allocated.
pub fn trigger_stacks_text(stacks: &TriggerStacks, resolved: Option<&UserStack>) -> Option<String> {
    let mut parts = Vec::new();
    if !stacks.kernel.is_empty() {
        parts.push(trigger_path(&stacks.kernel));
    }
    if let Some(&address) = stacks.user.first() {
        parts.push(format!("allocating {}", user_frame_text(address, resolved)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Where the trigger allocated, from its innermost user frame: `at hog::touch+0x1e
/// (/usr/bin/hog+0x431e)`, or the address and why it was not resolved.
pub fn user_frame_text(address: u64, resolved: Option<&UserStack>) -> String {
    match resolved {
        Some(Ok(frames)) => match frames.first() {
            Some(f) => {
                let place = match (&f.module, f.offset) {
                    (Some(module), Some(offset)) => format!("{module}+{offset:#x}"),
                    _ => format!("{:#x}", f.address),
                };
                match &f.symbol {
                    Some(symbol) => format!("at {symbol} ({place})"),
                    None => format!("at {place}"),
                }
            }
            None => format!("at {address:#x}"),
        },
        Some(Err(why)) => format!("at {address:#x} ({why})"),
        None => format!("at {address:#x}"),
    }
}

/// `tgid (comm)`.
pub fn task(t: &Task) -> String {
    format!(
        "{} ({})",
        t.tgid.unwrap_or(t.pid),
        t.comm.as_deref().unwrap_or("-")
    )
}

/// The outcome in words.
pub fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pending => "pending",
        Outcome::Reaping => "reaping",
        Outcome::ExitedBeforeWake => "exited before the reaper woke",
        Outcome::Reaped => "reaped",
        Outcome::AlreadyGone => "already gone when the reaper tried (MMF_OOM_SKIP)",
        Outcome::GaveUp => "reaper gave up (oom_reaper: unable to reap)",
        Outcome::Released => "released by process_mrelease",
        Outcome::Unknown => "no outcome seen",
    }
}

/// A victim's summary: outcome, attempts, timings and what the reaper freed.
pub fn summary(v: &Victim) -> String {
    let what = outcome(v.outcome);
    let mut parts = vec![if v.outcome_inferred {
        format!("{what} (inferred)")
    } else {
        what.to_owned()
    }];
    if !v.attempts.is_empty() {
        parts.push(format!(
            "{} attempts, {} failed",
            v.attempts.len(),
            v.failed_attempts()
        ));
    }
    if let Some(cause) = v.give_up_cause() {
        parts.push(give_up_text(v, cause));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::LockOwner;

    #[test]
    fn mrelease_results_have_a_label_and_a_text() {
        let eagain = -i64::from(libc::EAGAIN);
        assert_eq!(mrelease_label(eagain), "eagain");
        assert_eq!(
            mrelease_result(eagain),
            "-EAGAIN (partial reap: an mmu notifier refused)"
        );
        assert_eq!(mrelease_label(0), "ok");
        assert_eq!(mrelease_label(-99), "other");
        assert_eq!(mrelease_result(-99), "-99");
    }

    #[test]
    fn the_trigger_path_starts_at_the_oom_killer() {
        let named = |name: &str| KernelFrame {
            address: 0xffff_ffff_8100_0000,
            name: Some(name.to_owned()),
        };
        let frames: Vec<KernelFrame> = [
            "mark_oom_victim+0x10e/0x1a0",
            "oom_kill_process+0xf9/0x200",
            "out_of_memory+0x1a0/0x5c0",
            "mem_cgroup_out_of_memory+0xe8/0x110",
            "try_charge_memcg+0x6f0/0x7a0",
            "charge_memcg+0x2c/0x80",
            "__mem_cgroup_charge+0x2f/0x80",
            "do_anonymous_page+0x27b/0x7a0",
            "__handle_mm_fault+0x7ad/0xd80",
            "handle_mm_fault+0x1a3/0x2e0",
            "do_user_addr_fault+0x1ee/0x6a0",
            "exc_page_fault+0x72/0x170",
        ]
        .map(named)
        .to_vec();
        assert_eq!(
            trigger_path(&frames),
            "via out_of_memory < mem_cgroup_out_of_memory < try_charge_memcg < charge_memcg < \
             __mem_cgroup_charge < do_anonymous_page < __handle_mm_fault < handle_mm_fault < … 2 \
             more"
        );
        // Without out_of_memory (a module's OOM path), from the innermost frame; a frame the
        // kernel did not name (before 5.13) by its address.
        let short = [
            named("f+0x1/0x10 [m]"),
            KernelFrame {
                address: 0xffff,
                name: None,
            },
        ];
        assert_eq!(trigger_path(&short), "via f < 0xffff");
    }

    /// A reader-owned lock as the scenario's jam leaves it: one reader, a writer queued.
    fn jammed(owner_raw: u64, owner: Option<LockOwner>) -> LockSnapshot {
        LockSnapshot {
            count_raw: 0x102,
            owner_raw,
            rt: false,
            writer_locked: false,
            writer_pending: false,
            waiters_queued: true,
            handoff: false,
            readers: 1,
            owner,
            waiters: None,
            waiters_truncated: false,
        }
    }

    #[test]
    fn a_reader_owned_lock_names_its_reader_or_says_it_cannot() {
        let reader = LockOwner {
            pid: 12,
            tgid: 12,
            comm: "reader".into(),
            reader_hint: true,
        };
        assert_eq!(
            lock_text(&jammed(0xffff_8880_0000_5003, Some(reader))),
            "1 reader, waiters queued; owner 12 (reader, reader hint)"
        );
        // Flag bits only: the reader named there cleared its name when it left.
        assert_eq!(
            lock_text(&jammed(0x3, None)),
            "1 reader, waiters queued; owner unnamed (the last reader to take it has left)"
        );
        // A task the programs could not read: not known to have left.
        assert_eq!(
            lock_text(&jammed(0xffff_8880_0000_5001, None)),
            "1 reader, waiters queued"
        );
        // No reader-owned bit: nobody to name, and nothing to say about it.
        let free = LockSnapshot {
            readers: 0,
            ..jammed(0, None)
        };
        assert_eq!(lock_text(&free), "waiters queued");
    }
}
