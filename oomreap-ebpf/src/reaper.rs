//! The oom_reaper's tracepoints: `wake_reaper`, `start_task_reaping`, `finish_task_reaping`
//! and `skip_task_reaping`. Each passes only the victim's pid; the victim's mm comes from
//! what `mark_victim` remembered.
use aya_ebpf::{
    helpers::bpf_get_current_task,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oomreap_common::{
    event::{
        EventKind, FinishReapingEvent, LockState, MMF_OOM_SKIP_BIT, RT_READER_BIAS, RT_WRITER_BIAS,
        RWSEM_OWNER_FLAGS_MASK, RWSEM_READER_OWNED, RWSEM_READER_SHIFT, RWSEM_WRITER_LOCKED,
        ReaperEvent, SkipCause, SkipReapingEvent, finish_fields, lock_flags,
    },
    maps::Counter,
};

use crate::{
    emit::{self, Record},
    gate,
    kernel::{current_ids, layout},
    mm, tracepoint_field, victims,
};

/// The pid argument of a classic reaper tracepoint.
#[inline(always)]
fn record_pid(ctx: &TracePointContext) -> Option<u32> {
    tracepoint_field(ctx, layout().records.reaper_pid)
}

#[btf_tracepoint(function = "wake_reaper")]
pub fn wake_reaper_btf(ctx: BtfTracePointContext) -> i32 {
    simple(EventKind::WakeReaper, ctx.arg(0), false);
    0
}

#[tracepoint(category = "oom", name = "wake_reaper")]
pub fn wake_reaper_tp(ctx: TracePointContext) -> u32 {
    match record_pid(&ctx) {
        Some(pid) => simple(EventKind::WakeReaper, pid, false),
        None => emit::count(Counter::ReadFailed),
    }
    0
}

#[btf_tracepoint(function = "start_task_reaping")]
pub fn start_task_reaping_btf(ctx: BtfTracePointContext) -> i32 {
    simple(EventKind::StartReaping, ctx.arg(0), true);
    0
}

#[tracepoint(category = "oom", name = "start_task_reaping")]
pub fn start_task_reaping_tp(ctx: TracePointContext) -> u32 {
    match record_pid(&ctx) {
        Some(pid) => simple(EventKind::StartReaping, pid, true),
        None => emit::count(Counter::ReadFailed),
    }
    0
}

#[btf_tracepoint(function = "finish_task_reaping")]
pub fn finish_task_reaping_btf(ctx: BtfTracePointContext) -> i32 {
    finish(ctx.arg(0));
    0
}

#[tracepoint(category = "oom", name = "finish_task_reaping")]
pub fn finish_task_reaping_tp(ctx: TracePointContext) -> u32 {
    match record_pid(&ctx) {
        Some(pid) => finish(pid),
        None => emit::count(Counter::ReadFailed),
    }
    0
}

#[btf_tracepoint(function = "skip_task_reaping")]
pub fn skip_task_reaping_btf(ctx: BtfTracePointContext) -> i32 {
    skip(ctx.arg(0));
    0
}

#[tracepoint(category = "oom", name = "skip_task_reaping")]
pub fn skip_task_reaping_tp(ctx: TracePointContext) -> u32 {
    match record_pid(&ctx) {
        Some(pid) => skip(pid),
        None => emit::count(Counter::ReadFailed),
    }
    0
}

/// Sends a [`ReaperEvent`]. `in_reaper`: the hook runs in the oom_reaper kthread, so
/// `current` identifies it (wake_reaper runs from a timer, where `current` means nothing).
#[inline(always)]
fn simple(kind: EventKind, victim_pid: u32, in_reaper: bool) {
    gate::signal(kind);
    let current_pid = if in_reaper {
        victims::learn_reaper()
    } else {
        current_ids().0
    };
    let Some(mut record) = Record::<ReaperEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(kind);
    event.victim_pid = victim_pid;
    event.current_pid = current_pid;
    record.submit();
}

#[inline(always)]
fn finish(victim_pid: u32) {
    gate::signal(EventKind::FinishReaping);
    let current_pid = victims::learn_reaper();
    let Some(mut record) = Record::<FinishReapingEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::FinishReaping);
    event.victim_pid = victim_pid;
    event.current_pid = current_pid;
    let mm = victims::by_pid(victim_pid).map_or(0, |v| v.mm);
    if let Some(rss) = mm::rss(mm) {
        event.anon_rss_kib = rss.anon_kib;
        event.file_rss_kib = rss.file_kib;
        event.shmem_rss_kib = rss.shmem_kib;
        event.fields |= finish_fields::RSS;
    }
    record.submit();
}

/// Both skip causes emit this tracepoint. The reaper's `mmap_read_trylock` just before tells
/// them apart: it failed (lock contended) or succeeded and the mm had `MMF_OOM_SKIP`. The
/// trylock hook, where it is attached, saw which; else the lock itself tells.
#[inline(always)]
fn skip(victim_pid: u32) {
    gate::signal(EventKind::SkipReaping);
    let current_pid = victims::learn_reaper();
    let Some(mut record) = Record::<SkipReapingEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::SkipReaping);
    event.victim_pid = victim_pid;
    event.current_pid = current_pid;
    let known_mm = victims::by_pid(victim_pid).map_or(0, |v| v.mm);
    let trylock = victims::last_trylock().filter(|t| known_mm == 0 || t.mm == known_mm);
    let mm = match trylock {
        Some(t) => t.mm,
        None => known_mm,
    };
    event.mm = mm;
    event.mm_flags = mm::flags(mm).unwrap_or(0);
    let cause = match trylock {
        Some(t) if t.success == 0 => SkipCause::LockContended,
        Some(_) => SkipCause::AlreadySkipped,
        None => {
            mm::lock_state(mm, &mut event.lock);
            event.cause_from_lock = 1;
            cause_from_lock(&event.lock, event.mm_flags)
        }
    };
    if cause == SkipCause::AlreadySkipped {
        // The lock is the reaper's own: nobody else's to show.
        event.lock.flags = 0;
    } else if trylock.is_some() {
        mm::lock_state(mm, &mut event.lock);
    }
    event.cause = cause as u32;
    record.submit();
}

/// What the reaper's `mmap_read_trylock` just before told, read from the lock itself where
/// no hook saw it. The kernel skips a locked mm only for `MMF_OOM_SKIP`: without the flag the
/// trylock failed. With it, had the trylock succeeded, the reaper would hold the lock for
/// reading now: a reader leaves itself in the owner field, and PREEMPT_RT keeps
/// `READER_BIAS` while no writer is about. `Unknown` where the lock cannot tell (an RT
/// writer waiting for the readers, the reaper possibly among them).
#[inline(always)]
fn cause_from_lock(lock: &LockState, mm_flags: u64) -> SkipCause {
    if lock.flags & lock_flags::READ == 0 {
        return SkipCause::Unknown;
    }
    if mm_flags & (1 << MMF_OOM_SKIP_BIT) == 0 {
        return SkipCause::LockContended;
    }
    if lock.flags & lock_flags::RT != 0 {
        return match lock.count {
            readers if readers & RT_READER_BIAS != 0 => SkipCause::AlreadySkipped,
            RT_WRITER_BIAS => SkipCause::LockContended,
            _ => SkipCause::Unknown,
        };
    }
    // SAFETY: takes no arguments; returns the current task's address (the reaper).
    let reaper = unsafe { bpf_get_current_task() };
    let held = lock.owner_raw & !RWSEM_OWNER_FLAGS_MASK == reaper
        && lock.owner_raw & RWSEM_READER_OWNED != 0
        && lock.count & RWSEM_WRITER_LOCKED == 0
        && lock.count >> RWSEM_READER_SHIFT != 0;
    if held {
        SkipCause::AlreadySkipped
    } else {
        SkipCause::LockContended
    }
}
