//! The reaper's core function, `__oom_reap_task_mm(mm)`, and the mmu notifier invalidations
//! it starts: fentry/fexit where the kernel allows BPF trampolines, kprobe/kretprobe
//! elsewhere. User space loads one pair per function, never both.
//!
//! Tracepoints only bracket the oom_reaper's calls and never say whether a pass was complete;
//! the function's return value does, and process_mrelease(2) calls it too. Entry remembers
//! the call per task; the notifier hooks count refusals only for tasks inside a reap (the
//! function is hot elsewhere: every munmap of a KVM guest's memory goes through it); the
//! return sends one [`ReapCallEvent`].
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use oomreap_common::{
    event::{AttachKind, EventKind, MAX_NOTIFIERS, NotifierRefusedEvent, ReapCallEvent},
    layout::ABSENT,
    maps::ReapInFlight,
};

use crate::{
    emit::{self, Record},
    kernel::{current_comm, layout, read},
    mm, task, victims,
};

/// Tasks inside `__oom_reap_task_mm` at once: the reaper, process_mrelease callers and, before
/// 6.0, exiting victims.
const MAX_IN_FLIGHT: u32 = 256;

#[map]
static REAPS_IN_FLIGHT: HashMap<u64, ReapInFlight> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

#[fentry(function = "__oom_reap_task_mm")]
pub fn oom_reap_task_mm_fentry(ctx: FEntryContext) -> i32 {
    reap_entered(ctx.arg::<u64>(0));
    0
}

#[fexit(function = "__oom_reap_task_mm")]
pub fn oom_reap_task_mm_fexit(ctx: FExitContext) -> i32 {
    // The return value follows the one argument; a C `bool` is its low byte.
    reap_returned(ctx.arg::<u64>(1) & 0xff != 0, AttachKind::Fentry);
    0
}

#[kprobe]
pub fn oom_reap_task_mm_kprobe(ctx: ProbeContext) -> u32 {
    reap_entered(ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn oom_reap_task_mm_kretprobe(ctx: RetProbeContext) -> u32 {
    reap_returned(ctx.ret::<u64>() & 0xff != 0, AttachKind::Kprobe);
    0
}

#[fexit(function = "__mmu_notifier_invalidate_range_start")]
pub fn invalidate_range_start_fexit(ctx: FExitContext) -> i32 {
    invalidate_range_start_exited::<false>(&ctx)
}

/// The same program, its notifier walks under `bpf_loop` (5.17+; see `mm::notifiers`).
#[fexit(function = "__mmu_notifier_invalidate_range_start")]
pub fn invalidate_range_start_fexit_loop(ctx: FExitContext) -> i32 {
    invalidate_range_start_exited::<true>(&ctx)
}

#[inline(always)]
fn invalidate_range_start_exited<const LOOP: bool>(ctx: &FExitContext) -> i32 {
    let range = ctx.arg::<u64>(0);
    let ret = ctx.arg::<u64>(1) as i32;
    if ret != 0 {
        refused::<LOOP>(range, ret, AttachKind::Fentry);
    }
    0
}

#[kprobe]
pub fn invalidate_range_start_kprobe(ctx: ProbeContext) -> u32 {
    // Only inside a reap: keep the argument for the return probe.
    if let Some(call) = REAPS_IN_FLIGHT.get_ptr_mut(bpf_get_current_pid_tgid()) {
        // SAFETY: pointer from the map lookup, valid during this program run; only this task
        // writes its own entry.
        unsafe { (*call).range = ctx.arg::<u64>(0).unwrap_or(0) };
    }
    0
}

#[kretprobe]
pub fn invalidate_range_start_kretprobe(ctx: RetProbeContext) -> u32 {
    invalidate_range_start_returned::<false>(&ctx)
}

/// The same program, its notifier walks under `bpf_loop` (5.17+; see `mm::notifiers`).
#[kretprobe]
pub fn invalidate_range_start_kretprobe_loop(ctx: RetProbeContext) -> u32 {
    invalidate_range_start_returned::<true>(&ctx)
}

#[inline(always)]
fn invalidate_range_start_returned<const LOOP: bool>(ctx: &RetProbeContext) -> u32 {
    let ret = ctx.ret::<u64>() as i32;
    if ret == 0 {
        return 0;
    }
    // SAFETY: copied out at once.
    let range = unsafe { REAPS_IN_FLIGHT.get(bpf_get_current_pid_tgid()) }.map_or(0, |c| c.range);
    if range != 0 {
        refused::<LOOP>(range, ret, AttachKind::Kprobe);
    }
    0
}

#[inline(always)]
fn reap_entered(mm: u64) {
    let call = ReapInFlight {
        // SAFETY: takes no arguments, cannot fail.
        entered_ns: unsafe { bpf_ktime_get_ns() },
        mm,
        refusals: 0,
        _pad: 0,
        range: 0,
    };
    let _ = REAPS_IN_FLIGHT.insert(bpf_get_current_pid_tgid(), call, 0);
}

#[inline(always)]
fn reap_returned(complete: bool, attach: AttachKind) {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { REAPS_IN_FLIGHT.get(key) }).copied() else {
        return;
    };
    let _ = REAPS_IN_FLIGHT.remove(key);
    let Some(mut record) = Record::<ReapCallEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::ReapCall);
    event.entered_ns = call.entered_ns;
    event.mm = call.mm;
    event.caller_pid = key as u32;
    event.caller_tgid = (key >> 32) as u32;
    event.caller_comm = current_comm();
    event.victim_pid = victims::by_mm(call.mm).map_or(0, |v| v.pid);
    event.complete = u32::from(complete);
    event.by_reaper = u32::from(event.caller_tgid == victims::reaper());
    // SAFETY: takes no arguments, cannot fail.
    let current = unsafe { bpf_get_current_task() };
    // exit_mm() clears `current->mm` before its mmput, so an exiting caller has none. The
    // last mmput may come from another task that held a reference (one reading the victim's
    // memory, as the jammed-lock scenario's reader does), which has an mm of its own: then
    // mm_users, which process_mrelease's own reference keeps above 0, is 0.
    let last_user_gone = read::<u32>(call.mm, layout().mm_users) == Some(0);
    event.by_exit = u32::from(event.by_reaper == 0 && (task::mm(current) == 0 || last_user_gone));
    event.attach = attach as u32;
    event.refusals = call.refusals;
    record.submit();
}

/// An invalidation failed: if the task is inside a reap, count it there and report it.
#[inline(always)]
fn refused<const LOOP: bool>(range: u64, ret: i32, attach: AttachKind) {
    let key = bpf_get_current_pid_tgid();
    let Some(call) = REAPS_IN_FLIGHT.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: pointer from the map lookup, valid during this program run; only this task
    // writes its own entry.
    let reap_mm = unsafe {
        (*call).refusals += 1;
        (*call).mm
    };
    let Some(mut record) = Record::<NotifierRefusedEvent>::reserve() else {
        return;
    };
    let l = layout();
    let event = record.get();
    event.header = emit::header(EventKind::NotifierRefused);
    event.mm = match l.range_mm {
        ABSENT => reap_mm,
        offset => read::<u64>(range, offset).unwrap_or(reap_mm),
    };
    if l.range_start != ABSENT && l.range_end != ABSENT {
        event.start = read::<u64>(range, l.range_start).unwrap_or(0);
        event.end = read::<u64>(range, l.range_end).unwrap_or(0);
    }
    event.caller_pid = key as u32;
    event.victim_pid = victims::by_mm(event.mm).map_or(0, |v| v.pid);
    event.ret = ret;
    event.attach = attach as u32;
    let mut callbacks = [0u64; MAX_NOTIFIERS];
    if let Some(count) = mm::notifiers::<LOOP>(event.mm, &mut callbacks) {
        event.notifier_count = count.total;
        event.interval_notifiers = count.interval;
    }
    event.notifiers = callbacks;
    record.submit();
}
