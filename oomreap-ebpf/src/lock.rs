//! `mmap_lock:mmap_lock_acquire_returned`, kept only for the oom_reaper kthread and for tasks
//! inside process_mrelease(2). It fires on every mmap_lock acquisition system-wide, so the
//! filter comes first and costs one comparison for everyone else.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oomreap_common::event::{EventKind, LockAttemptEvent};

use crate::{
    emit::{self, Record},
    kernel::{current_ids, layout},
    mrelease, tracepoint_field, victims,
};

/// `(struct mm_struct *mm, bool write, bool success)`, kernels since 6.12 or so.
#[btf_tracepoint(function = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned_btf(ctx: BtfTracePointContext) -> i32 {
    attempt(
        ctx.arg(0),
        ctx.arg::<u64>(1) & 0xff != 0,
        ctx.arg::<u64>(2) & 0xff != 0,
    );
    0
}

/// `(struct mm_struct *mm, const char *memcg_path, bool write, bool success)`, older kernels.
/// A separate program because the verifier wants constant context offsets.
#[btf_tracepoint(function = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned_memcg_btf(ctx: BtfTracePointContext) -> i32 {
    attempt(
        ctx.arg(0),
        ctx.arg::<u64>(2) & 0xff != 0,
        ctx.arg::<u64>(3) & 0xff != 0,
    );
    0
}

#[tracepoint(category = "mmap_lock", name = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned_tp(ctx: TracePointContext) -> u32 {
    let r = &layout().records;
    if let (Some(mm), Some(write), Some(success)) = (
        tracepoint_field::<u64>(&ctx, r.lock_mm),
        tracepoint_field::<u8>(&ctx, r.lock_write),
        tracepoint_field::<u8>(&ctx, r.lock_success),
    ) {
        attempt(mm, write != 0, success != 0);
    }
    0
}

#[inline(always)]
fn attempt(mm: u64, write: bool, success: bool) {
    let (pid, tgid) = current_ids();
    let by_reaper = tgid == victims::reaper();
    if !by_reaper && !mrelease::note_lock(mm) {
        return;
    }
    // The reaper only ever takes the read lock; so does process_mrelease.
    if write {
        return;
    }
    if by_reaper {
        victims::set_last_trylock(mm, success);
    }
    let Some(mut record) = Record::<LockAttemptEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::LockAttempt);
    event.mm = mm;
    event.caller_pid = pid;
    event.caller_tgid = tgid;
    event.write = u32::from(write);
    event.success = u32::from(success);
    event.by_reaper = u32::from(by_reaper);
    event.victim_pid = victims::by_mm(mm).map_or(0, |v| v.pid);
    record.submit();
}
