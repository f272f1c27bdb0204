//! The OOM killer's own evaluation: `oom_badness(p, totalpages)` for each process it weighs,
//! between `out_of_memory`'s entry and `oom_kill_process`, whose entry sends the processes
//! with the most points (see `oom_kill`). fentry/fexit where the kernel allows BPF
//! trampolines, kprobe/kretprobe elsewhere.
//!
//! `oom_badness` is also what a read of /proc/PID/oom_score calls: only the task inside
//! `out_of_memory` is followed. Every `out_of_memory` call holds the global `oom_lock`, so one
//! evaluation runs at a time on the whole machine, and one slot holds it.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::Array,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use oomreap_common::{event::OomCandidate, maps::OomEvaluation};

use crate::{mm, task};

#[map]
static EVALUATION: Array<OomEvaluation> = Array::with_max_entries(1, 0);

/// An evaluation takes milliseconds (a walk over every process); one older than this ended
/// without a kill (the OOM killer found a victim already on its way, or nothing to kill)
/// and is not continued.
pub const STALE_NS: u64 = 10_000_000_000;

#[fentry(function = "out_of_memory")]
pub fn out_of_memory_fentry(_ctx: FEntryContext) -> i32 {
    begin();
    0
}

#[kprobe]
pub fn out_of_memory_kprobe(_ctx: ProbeContext) -> u32 {
    begin();
    0
}

#[fexit(function = "oom_badness")]
pub fn oom_badness_fexit(ctx: FExitContext) -> i32 {
    // The return value follows the two arguments.
    weighed(ctx.arg::<u64>(0), ctx.arg::<i64>(2));
    0
}

#[kprobe]
pub fn oom_badness_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(evaluation) = ours() {
        evaluation.entered_task = ctx.arg::<u64>(0).unwrap_or(0);
    }
    0
}

#[kretprobe]
pub fn oom_badness_kretprobe(ctx: RetProbeContext) -> u32 {
    let task = ours().map_or(0, |e| core::mem::take(&mut e.entered_task));
    weighed(task, ctx.ret::<i64>());
    0
}

/// The current task's pid (the kernel's, a thread id).
#[inline(always)]
fn current_pid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// A new evaluation by the current task: the slot is its own, and empty.
#[inline(always)]
fn begin() {
    let Some(evaluation) = EVALUATION.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the pointer comes from the map lookup; the slot is plain integers, and the
    // OOM killer's `oom_lock` keeps a second evaluation from writing it at the same time.
    let evaluation = unsafe { &mut *evaluation };
    evaluation.weighed = 0;
    evaluation.count = 0;
    evaluation.spared_count = 0;
    evaluation.entered_task = 0;
    // SAFETY: takes no arguments, cannot fail.
    evaluation.started_ns = unsafe { bpf_ktime_get_ns() };
    evaluation.pid = current_pid();
}

/// The evaluation the current task is running, if it runs one.
#[inline(always)]
pub fn ours() -> Option<&'static mut OomEvaluation> {
    let evaluation = EVALUATION.get_ptr_mut(0)?;
    // SAFETY: as in `begin`.
    let evaluation = unsafe { &mut *evaluation };
    // SAFETY: takes no arguments, cannot fail.
    let now = unsafe { bpf_ktime_get_ns() };
    (evaluation.pid == current_pid() && now.saturating_sub(evaluation.started_ns) < STALE_NS)
        .then_some(evaluation)
}

/// Counts one process weighed, and keeps it if it is among those with the most points, or
/// with a negative `oom_score_adj`, among those with the most memory.
#[inline(always)]
fn weighed(task: u64, points: i64) {
    if task == 0 {
        return;
    }
    let Some(evaluation) = ours() else {
        return;
    };
    evaluation.weighed = evaluation.weighed.saturating_add(1);
    let by_points = slot_among(
        &evaluation.candidates,
        &mut evaluation.count,
        &mut evaluation.lowest,
        |c| c.points,
        points,
    );
    let adjusted_down = task::oom_score_adj(task).is_some_and(|adj| adj < 0);
    if by_points.is_none() && !adjusted_down {
        return;
    }
    // SAFETY: `OomCandidate` is plain integers, for which all zero bytes are a valid value.
    let mut candidate: OomCandidate = unsafe { core::mem::zeroed() };
    describe(task, points, &mut candidate);
    if let Some(slot) = by_points.and_then(|i| evaluation.candidates.get_mut(i)) {
        *slot = candidate;
    }
    if adjusted_down {
        let by_memory = slot_among(
            &evaluation.spared,
            &mut evaluation.spared_count,
            &mut evaluation.lowest,
            memory,
            memory(&candidate),
        );
        if let Some(slot) = by_memory.and_then(|i| evaluation.spared.get_mut(i)) {
            *slot = candidate;
        }
    }
}

/// What `oom_badness` counts of a process's memory: RSS, swap and page tables (KiB).
#[inline(always)]
fn memory(c: &OomCandidate) -> i64 {
    (c.rss_kib + c.swap_kib + c.pgtables_kib) as i64
}

/// Where an entry whose `key` is `value` goes among `entries` (the first `*count` in use),
/// keeping those with the largest keys: the next free one, or in place of the one with the
/// smallest key if that is no larger (a later equal one displaces it, as in the OOM killer's
/// own choice); `None` if it is not among them. `N` is a power of two.
///
/// The index of the smallest is kept in `lowest`, map memory the verifier does not follow:
/// held in a register, each comparison would split the verifier's walk in two, 2^N ways on
/// kernels that prune little (5.10 ran for minutes).
#[inline(always)]
fn slot_among<const N: usize>(
    entries: &[OomCandidate; N],
    count: &mut u32,
    lowest: &mut u32,
    key: impl Fn(&OomCandidate) -> i64,
    value: i64,
) -> Option<usize> {
    let used = *count as usize;
    if used < N {
        *count += 1;
        return Some(used);
    }
    let at = |lowest: &u32| {
        // SAFETY: a plain read of a field of ours.
        unsafe { core::ptr::read_volatile(lowest) as usize & (N - 1) }
    };
    // SAFETY: a plain write of a field of ours.
    unsafe { core::ptr::write_volatile(lowest, 0) };
    for i in 1..N {
        let smallest = entries.get(at(lowest)).map_or(i64::MAX, &key);
        if key(&entries[i]) < smallest {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(lowest, i as u32) };
        }
    }
    let index = at(lowest);
    let smallest = entries.get(index).map_or(i64::MAX, &key);
    (value >= smallest).then_some(index)
}

/// Fills `candidate` from the task `oom_badness` weighed.
#[inline(always)]
fn describe(task: u64, points: i64, candidate: &mut OomCandidate) {
    let (pid, tgid) = task::ids(task).unwrap_or((0, 0));
    candidate.points = points;
    candidate.pid = pid;
    candidate.tgid = tgid;
    candidate.oom_score_adj = task::oom_score_adj(task).map_or(0, i32::from);
    candidate.memcg_id = task::memcg_id(task).unwrap_or(0);
    task::comm(task, &mut candidate.comm);
    // As `oom_badness` weighs it: through `find_lock_task_mm`, any thread's mm.
    let mm = task::mm_of_any_thread(task);
    candidate.has_mm = u32::from(mm != 0);
    let rss = mm::rss(mm);
    candidate.rss_kib = rss.map_or(0, |r| r.anon_kib + r.file_kib + r.shmem_kib);
    candidate.swap_kib = mm::swap_kib(mm).unwrap_or(0);
    candidate.pgtables_kib = mm::size(mm).map_or(0, |(_, pgtables)| pgtables);
    candidate.mm_flags = mm::flags(mm).unwrap_or(0);
}
