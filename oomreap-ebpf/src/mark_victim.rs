//! `oom:mark_victim`: the OOM killer chose a victim.
//!
//! Two programs, one per attach kind; user space loads the one the kernel supports. Both fill a
//! [`MarkVictimEvent`], setting a bit in `fields` for each value they really read, so a kernel
//! that offers less never shows up as zeros.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::{debug, warn};
use oomreap_common::{
    event::{AttachKind, COMM_LEN, EventKind, MarkVictimEvent, mark_victim_fields as field},
    layout::{ABSENT, KernelLayout, MarkVictimArgs, MarkVictimRecord},
    maps::Counter,
};

use crate::{
    emit,
    kernel::{layout, read, read_comm},
};

/// Indices of `mm_struct::rss_stat[]` (enum in include/linux/mm_types_task.h).
const MM_FILEPAGES: u32 = 0;
const MM_ANONPAGES: u32 = 1;
const MM_SHMEMPAGES: u32 = 3;

#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_btf(ctx: BtfTracePointContext) -> i32 {
    if try_mark_victim_btf(&ctx).is_err() {
        emit::count(Counter::ReadFailed);
        warn!(
            &ctx,
            "mark_victim: could not read the victim task; event dropped"
        );
    }
    0
}

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn mark_victim_tp(ctx: TracePointContext) -> u32 {
    if try_mark_victim_tp(&ctx).is_err() {
        emit::count(Counter::ReadFailed);
        warn!(
            &ctx,
            "mark_victim: could not read the tracepoint record; event dropped"
        );
    }
    0
}

fn try_mark_victim_btf(ctx: &BtfTracePointContext) -> Result<(), ()> {
    let layout = layout();
    let mut event = new_event(AttachKind::BtfTracePoint);
    if layout.mark_victim_args == MarkVictimArgs::PidOnly as u32 {
        event.victim_pid = ctx.arg::<u32>(0);
    } else if layout.mark_victim_args == MarkVictimArgs::TaskAndUid as u32 {
        let task: u64 = ctx.arg(0);
        event.uid = ctx.arg(1);
        event.fields |= field::UID;
        event.victim_pid = read::<u32>(task, layout.task_pid).ok_or(())?;
        read_task(&layout, task, &mut event);
    } else {
        warn!(ctx, "mark_victim: kernel layout not set by user space");
        return Err(());
    }
    debug!(
        ctx,
        "mark_victim pid {} tgid {}", event.victim_pid, event.victim_tgid
    );
    emit::send(event);
    Ok(())
}

fn try_mark_victim_tp(ctx: &TracePointContext) -> Result<(), ()> {
    let record = layout().mark_victim_record;
    let mut event = new_event(AttachKind::TracePoint);
    event.victim_pid = read_record::<u32>(ctx, record.pid).ok_or(())?;
    if let Some(comm) = read_record_comm(ctx, &record) {
        event.victim_comm = comm;
        event.fields |= field::COMM;
    }
    if let Some(uid) = read_record::<u32>(ctx, record.uid) {
        event.uid = uid;
        event.fields |= field::UID;
    }
    if let Some(adj) = read_record::<i16>(ctx, record.oom_score_adj) {
        event.oom_score_adj = i32::from(adj);
        event.fields |= field::OOM_SCORE_ADJ;
    }
    if let (Some(total_vm), Some(anon), Some(file), Some(shmem), Some(pgtables)) = (
        read_record::<u64>(ctx, record.total_vm),
        read_record::<u64>(ctx, record.anon_rss),
        read_record::<u64>(ctx, record.file_rss),
        read_record::<u64>(ctx, record.shmem_rss),
        read_record::<u64>(ctx, record.pgtables),
    ) {
        // The classic record already holds KiB.
        event.total_vm_kib = total_vm;
        event.anon_rss_kib = anon;
        event.file_rss_kib = file;
        event.shmem_rss_kib = shmem;
        event.pgtables_kib = pgtables;
        event.fields |= field::MEMORY;
    }
    debug!(
        ctx,
        "mark_victim pid {} (classic tracepoint)", event.victim_pid
    );
    emit::send(event);
    Ok(())
}

/// An event with the header and the trigger (the current task) filled in.
#[inline(always)]
fn new_event(attach: AttachKind) -> MarkVictimEvent {
    let pid_tgid = bpf_get_current_pid_tgid();
    MarkVictimEvent {
        header: emit::header(EventKind::MarkVictim),
        victim_pid: 0,
        victim_tgid: 0,
        uid: 0,
        oom_score_adj: 0,
        total_vm_kib: 0,
        anon_rss_kib: 0,
        file_rss_kib: 0,
        shmem_rss_kib: 0,
        pgtables_kib: 0,
        victim_mm: 0,
        trigger_pid: pid_tgid as u32,
        trigger_tgid: (pid_tgid >> 32) as u32,
        victim_comm: [0; COMM_LEN],
        trigger_comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        attach: attach as u32,
        fields: 0,
    }
}

/// Fills what `task_struct` and its `mm_struct` and `signal_struct` tell about the victim.
#[inline(always)]
fn read_task(layout: &KernelLayout, task: u64, event: &mut MarkVictimEvent) {
    if let Some(tgid) = read::<u32>(task, layout.task_tgid) {
        event.victim_tgid = tgid;
        event.fields |= field::TGID;
    }
    if let Some(comm) = read_comm(task, layout.task_comm) {
        event.victim_comm = comm;
        event.fields |= field::COMM;
    }
    let signal = read::<u64>(task, layout.task_signal).unwrap_or(0);
    if let Some(adj) = read::<i16>(signal, layout.signal_oom_score_adj) {
        event.oom_score_adj = i32::from(adj);
        event.fields |= field::OOM_SCORE_ADJ;
    }
    let mm = read::<u64>(task, layout.task_mm).unwrap_or(0);
    if mm == 0 {
        return;
    }
    event.victim_mm = mm;
    event.fields |= field::MM;
    let shift = layout.page_to_kib_shift;
    if let (Some(total_vm), Some(anon), Some(file), Some(shmem), Some(pgtables)) = (
        read::<u64>(mm, layout.mm_total_vm),
        read::<i64>(mm, rss_counter(layout, MM_ANONPAGES)),
        read::<i64>(mm, rss_counter(layout, MM_FILEPAGES)),
        read::<i64>(mm, rss_counter(layout, MM_SHMEMPAGES)),
        read::<i64>(mm, layout.mm_pgtables_bytes),
    ) {
        event.total_vm_kib = total_vm << shift;
        // Percpu counters' global `count` lags the per-CPU deltas and can dip below zero.
        event.anon_rss_kib = (anon.max(0) as u64) << shift;
        event.file_rss_kib = (file.max(0) as u64) << shift;
        event.shmem_rss_kib = (shmem.max(0) as u64) << shift;
        event.pgtables_kib = (pgtables.max(0) as u64) >> 10;
        event.fields |= field::MEMORY;
    }
}

/// Offset in `mm_struct` of `rss_stat[index].count`, or [`ABSENT`].
#[inline(always)]
fn rss_counter(layout: &KernelLayout, index: u32) -> u32 {
    if layout.mm_rss_stat == ABSENT
        || layout.percpu_counter_size == ABSENT
        || layout.percpu_counter_count == ABSENT
    {
        return ABSENT;
    }
    layout.mm_rss_stat + index * layout.percpu_counter_size + layout.percpu_counter_count
}

/// Reads a field of the classic tracepoint record, or `None` when this kernel's record lacks it.
#[inline(always)]
fn read_record<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    if offset == ABSENT {
        return None;
    }
    // SAFETY: read_at goes through bpf_probe_read_kernel, which validates the address.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// Reads the record's `__data_loc char[] comm`: a u32 whose low 16 bits are the string's offset.
#[inline(always)]
fn read_record_comm(ctx: &TracePointContext, record: &MarkVictimRecord) -> Option<[u8; COMM_LEN]> {
    let data_loc = read_record::<u32>(ctx, record.comm_data_loc)?;
    let offset = (data_loc & 0xffff) as usize;
    let mut comm = [0u8; COMM_LEN];
    let src = (ctx.as_ptr() as usize + offset) as *const u8;
    // SAFETY: the helper validates `src` and writes at most `comm.len()` bytes.
    unsafe { bpf_probe_read_kernel_str_bytes(src, &mut comm) }.ok()?;
    Some(comm)
}
