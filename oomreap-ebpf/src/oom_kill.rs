//! `oom_kill_process(oc, message)`: the OOM killer's own record of a kill, read where a
//! function hook is allowed (fentry, else kprobe) and handed to the `mark_victim` program
//! that follows it in the same kill, keyed by the chosen process; and the evaluation that
//! chose it (see `badness`), sent from here, just before that `mark_victim`.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{fentry, kprobe, map},
    maps::HashMap,
    programs::{FEntryContext, ProbeContext},
};
use oomreap_common::{
    event::{AttachKind, EventKind, MAX_OOM_CANDIDATES, MAX_OOM_SPARED, OomCandidatesEvent},
    maps::OomContext,
};

use crate::{
    badness, domain,
    emit::{self, Record},
    kernel::{layout, read},
    task,
};

/// Kills between `oom_kill_process` and `mark_victim`: one at a time per OOM domain, and the
/// OOM killer holds `oom_lock` across both.
const MAX_PENDING: u32 = 64;

#[map]
static OOM_CONTEXTS: HashMap<u32, OomContext> = HashMap::with_max_entries(MAX_PENDING, 0);

#[fentry(function = "oom_kill_process")]
pub fn oom_kill_process_fentry(ctx: FEntryContext) -> i32 {
    note(ctx.arg::<u64>(0), AttachKind::Fentry);
    0
}

#[kprobe]
pub fn oom_kill_process_kprobe(ctx: ProbeContext) -> u32 {
    note(ctx.arg::<u64>(0).unwrap_or(0), AttachKind::Kprobe);
    0
}

#[inline(always)]
fn note(oc: u64, attach: AttachKind) {
    let l = layout();
    // `chosen` is -1 when the OOM killer aborted.
    let Some(chosen) = read::<u64>(oc, l.oc_chosen).filter(|&t| t != 0 && t != u64::MAX) else {
        return;
    };
    let Some((_, tgid)) = task::ids(chosen) else {
        return;
    };
    let mut context = OomContext {
        domain_memcg_id: 0,
        domain_usage_kib: 0,
        domain_limit_kib: 0,
        chosen_points: read::<i64>(oc, l.oc_chosen_points).unwrap_or(0),
        total_pages: read::<u64>(oc, l.oc_totalpages).unwrap_or(0),
        constraint: read::<u32>(oc, l.oc_constraint).unwrap_or(0),
        _pad: 0,
        // SAFETY: takes no arguments, cannot fail.
        noted_ns: unsafe { bpf_ktime_get_ns() },
    };
    if let Some((id, usage_kib, limit_kib)) = read::<u64>(oc, l.oc_memcg)
        .filter(|&m| m != 0)
        .and_then(domain::state)
    {
        context.domain_memcg_id = id;
        context.domain_usage_kib = usage_kib;
        context.domain_limit_kib = limit_kib;
    }
    let _ = OOM_CONTEXTS.insert(tgid, context, 0);
    send_candidates(tgid, context.total_pages, attach);
}

/// Sends the evaluation that chose process `chosen` (see `badness`), once.
#[inline(always)]
fn send_candidates(chosen: u32, total_pages: u64, attach: AttachKind) {
    let Some(evaluation) = badness::ours() else {
        return;
    };
    // The next kill by this task starts a new evaluation: this one is not sent twice. Sent
    // even if `oom_badness` never fired in it: user space then knows the kernel inlined it.
    evaluation.pid = 0;
    let Some(mut record) = Record::<OomCandidatesEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::OomCandidates);
    event.chosen_tgid = chosen;
    event.weighed = evaluation.weighed;
    event.total_pages = total_pages;
    event.count = evaluation.count.min(MAX_OOM_CANDIDATES as u32);
    event.attach = attach as u32;
    for i in 0..MAX_OOM_CANDIDATES {
        event.candidates[i] = evaluation.candidates[i];
    }
    event.spared_count = evaluation.spared_count.min(MAX_OOM_SPARED as u32);
    for i in 0..MAX_OOM_SPARED {
        event.spared[i] = evaluation.spared[i];
    }
    record.submit();
}

/// `mark_victim` follows `oom_kill_process` once its header is printed (`dump_header`, with
/// the task list: seconds on a slow serial console); a record older than this belongs to a
/// kill whose `mark_victim` never came (a reused pid must not inherit it).
const STALE_NS: u64 = 10_000_000_000;

/// What `oom_kill_process` recorded for the process `tgid`, once.
#[inline(always)]
pub fn take(tgid: u32) -> Option<OomContext> {
    // SAFETY: the value is copied out before the entry is removed.
    let context = unsafe { OOM_CONTEXTS.get(tgid) }.copied()?;
    let _ = OOM_CONTEXTS.remove(tgid);
    // SAFETY: takes no arguments, cannot fail.
    let now = unsafe { bpf_ktime_get_ns() };
    (now.saturating_sub(context.noted_ns) < STALE_NS).then_some(context)
}
