//! `oom:mark_victim`: the OOM killer chose a victim.
//!
//! Two programs, one per attach kind; user space loads the one the kernel supports. Both fill a
//! [`MarkVictimEvent`], setting a bit in `fields` for each value they really read, so a kernel
//! that offers less never shows up as zeros. The victim is remembered for the reaper's events.
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_task, bpf_get_stack, bpf_probe_read_kernel_str_bytes,
        generated::bpf_snprintf,
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::{debug, warn};
use oomreap_common::{
    event::{
        AttachKind, COMM_LEN, EventKind, FRAME_NAME_LEN, MAX_STACK_FRAMES, MarkVictimEvent,
        mark_victim_fields as field,
    },
    layout::{MarkVictimArgs, MarkVictimRecord},
    maps::Counter,
};

use crate::{
    domain,
    emit::{self, Record},
    gate,
    kernel::{current_comm, current_ids, layout},
    mm, task, tracepoint_field, victims,
};

#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_btf(ctx: BtfTracePointContext) -> i32 {
    mark_victim_btf_with::<false>(&ctx)
}

/// The same program, its notifier walks under `bpf_loop` (5.17+), for a shorter
/// verification: user space loads it where the kernel has the helper (see `mm::notifiers`).
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_btf_loop(ctx: BtfTracePointContext) -> i32 {
    mark_victim_btf_with::<true>(&ctx)
}

#[inline(always)]
fn mark_victim_btf_with<const LOOP: bool>(ctx: &BtfTracePointContext) -> i32 {
    gate::signal(EventKind::MarkVictim);
    if try_mark_victim_btf::<LOOP>(ctx).is_err() {
        emit::count(Counter::ReadFailed);
        warn!(
            ctx,
            "mark_victim: could not read the victim task; event dropped"
        );
    }
    0
}

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn mark_victim_tp(ctx: TracePointContext) -> u32 {
    gate::signal(EventKind::MarkVictim);
    if try_mark_victim_tp(&ctx).is_err() {
        emit::count(Counter::ReadFailed);
        warn!(
            &ctx,
            "mark_victim: could not read the tracepoint record; event dropped"
        );
    }
    0
}

fn try_mark_victim_btf<const LOOP: bool>(ctx: &BtfTracePointContext) -> Result<(), ()> {
    let Some(mut record) = Record::<MarkVictimEvent>::reserve() else {
        return Ok(());
    };
    let event = record.get();
    start(event, AttachKind::BtfTracePoint, ctx.as_ptr());
    let args = layout().mark_victim_args;
    if args == MarkVictimArgs::PidOnly as u32 {
        event.victim_pid = ctx.arg::<u32>(0);
    } else if args == MarkVictimArgs::TaskAndUid as u32 {
        let task: u64 = ctx.arg(0);
        event.uid = ctx.arg(1);
        event.fields |= field::UID;
        if !read_task::<LOOP>(task, event) {
            record.discard();
            return Err(());
        }
    } else {
        record.discard();
        warn!(ctx, "mark_victim: kernel layout not set by user space");
        return Err(());
    }
    let tgid = if event.fields & field::TGID != 0 {
        event.victim_tgid
    } else {
        event.victim_pid
    };
    domain_of::<LOOP>(tgid, event);
    victims::remember(event.victim_pid, event.victim_tgid, event.victim_mm);
    debug!(
        ctx,
        "mark_victim pid {} tgid {}", event.victim_pid, event.victim_tgid
    );
    record.submit();
    Ok(())
}

fn try_mark_victim_tp(ctx: &TracePointContext) -> Result<(), ()> {
    let r = layout().mark_victim_record;
    let Some(mut record) = Record::<MarkVictimEvent>::reserve() else {
        return Ok(());
    };
    let event = record.get();
    start(event, AttachKind::TracePoint, ctx.as_ptr());
    let Some(pid) = tracepoint_field::<u32>(ctx, r.pid) else {
        record.discard();
        return Err(());
    };
    event.victim_pid = pid;
    if read_record_comm(ctx, &r, &mut event.victim_comm) {
        event.fields |= field::COMM;
    }
    if let Some(uid) = tracepoint_field::<u32>(ctx, r.uid) {
        event.uid = uid;
        event.fields |= field::UID;
    }
    if let Some(adj) = tracepoint_field::<i16>(ctx, r.oom_score_adj) {
        event.oom_score_adj = i32::from(adj);
        event.fields |= field::OOM_SCORE_ADJ;
    }
    if let (Some(total_vm), Some(anon), Some(file), Some(shmem), Some(pgtables)) = (
        tracepoint_field::<u64>(ctx, r.total_vm),
        tracepoint_field::<u64>(ctx, r.anon_rss),
        tracepoint_field::<u64>(ctx, r.file_rss),
        tracepoint_field::<u64>(ctx, r.shmem_rss),
        tracepoint_field::<u64>(ctx, r.pgtables),
    ) {
        // The classic record already holds KiB.
        event.total_vm_kib = total_vm;
        event.anon_rss_kib = anon;
        event.file_rss_kib = file;
        event.shmem_rss_kib = shmem;
        event.pgtables_kib = pgtables;
        event.fields |= field::MEMORY;
    }
    // The classic record has no tgid: the pid is the process's for a single-threaded one.
    domain_of::<false>(event.victim_pid, event);
    victims::remember(event.victim_pid, 0, 0);
    debug!(
        ctx,
        "mark_victim pid {} (classic tracepoint)", event.victim_pid
    );
    record.submit();
    Ok(())
}

/// How the kernel prints a stack frame (a return address) in /proc/PID/stack:
/// `function+0xoffset/0xsize [module]`. A static, so it sits in the read-only data map
/// `bpf_snprintf` requires of its format.
#[unsafe(no_mangle)]
static FRAME_FORMAT: [u8; 4] = *b"%pB\0";

/// `bpf_get_stack`'s flag for the user stack.
const USER_STACK: u64 = 1 << 8;

/// Fills the header and the trigger (the current task), with its stacks.
#[inline(always)]
fn start(event: &mut MarkVictimEvent, attach: AttachKind, ctx: *mut core::ffi::c_void) {
    event.header = emit::header(EventKind::MarkVictim);
    let (pid, tgid) = current_ids();
    event.trigger_pid = pid;
    event.trigger_tgid = tgid;
    event.trigger_comm = current_comm();
    event.attach = attach as u32;
    trigger_stacks(event, ctx);
}

/// The kill runs in the trigger's context: the current kernel stack is the path from the
/// allocation that hit the limit to the OOM killer, and the user stack where it allocated.
#[inline(always)]
fn trigger_stacks(event: &mut MarkVictimEvent, ctx: *mut core::ffi::c_void) {
    let size = core::mem::size_of_val(&event.trigger_stack) as u32;
    // SAFETY: the helper writes at most `size` bytes into the record's own array, and takes
    // the program's context as the kernel passed it.
    let bytes = unsafe { bpf_get_stack(ctx, event.trigger_stack.as_mut_ptr().cast(), size, 0) };
    if bytes > 0 {
        event.trigger_stack_frames = (bytes as u32) / 8;
        event.fields |= field::TRIGGER_STACK;
        name_frames(event);
    }
    let size = core::mem::size_of_val(&event.trigger_user_stack) as u32;
    // SAFETY: as above; a kernel thread has no user stack and the helper then fails.
    let bytes = unsafe {
        bpf_get_stack(
            ctx,
            event.trigger_user_stack.as_mut_ptr().cast(),
            size,
            USER_STACK,
        )
    };
    if bytes > 0 {
        event.trigger_user_frames = (bytes as u32) / 8;
        event.fields |= field::TRIGGER_USER_STACK;
    }
}

/// Names each kernel frame as the kernel itself would (`%pB`), so no symbol table need be
/// loaded in user space. Only where user space found `bpf_snprintf` (5.13+): the verifier
/// drops this branch elsewhere, as the layout is read-only and known when it checks.
#[inline(always)]
fn name_frames(event: &mut MarkVictimEvent) {
    if layout().bpf_snprintf == 0 {
        return;
    }
    let frames = event.trigger_stack_frames as usize;
    for i in 0..MAX_STACK_FRAMES {
        if i >= frames {
            break;
        }
        // The verifier takes one pointer into the record per call: the address goes on the
        // stack.
        let mut address = event.trigger_stack[i];
        // SAFETY: the name slot is FRAME_NAME_LEN bytes of the record; the format is a
        // NUL-terminated static in read-only data; the data is one u64 on the stack.
        unsafe {
            bpf_snprintf(
                event.trigger_frame_names[i].as_mut_ptr().cast(),
                FRAME_NAME_LEN as u32,
                FRAME_FORMAT.as_ptr().cast(),
                &raw mut address,
                8,
            );
        }
    }
    event.fields |= field::TRIGGER_STACK_NAMED;
}

/// The OOM domain, once the victim is known (exact when `oom_kill_process` recorded it).
#[inline(always)]
fn domain_of<const LOOP: bool>(victim_tgid: u32, event: &mut MarkVictimEvent) {
    // SAFETY: takes no arguments; returns the current task's address (the trigger).
    let trigger = unsafe { bpf_get_current_task() };
    domain::fill::<LOOP>(trigger, victim_tgid, event);
}

/// Fills what `task_struct`, its `mm_struct` and `signal_struct` tell about the victim.
/// Returns false if not even the pid could be read.
#[inline(always)]
fn read_task<const LOOP: bool>(task: u64, event: &mut MarkVictimEvent) -> bool {
    let Some((pid, tgid)) = task::ids(task) else {
        return false;
    };
    event.victim_pid = pid;
    event.victim_tgid = tgid;
    event.fields |= field::TGID;
    if let Some(parent) = task::parent_tgid(task) {
        event.parent_tgid = parent;
        event.fields |= field::PARENT;
    }
    if task::comm(task, &mut event.victim_comm) {
        event.fields |= field::COMM;
    }
    if let Some(adj) = task::oom_score_adj(task) {
        event.oom_score_adj = i32::from(adj);
        event.fields |= field::OOM_SCORE_ADJ;
    }
    if let Some(id) = task::memcg_id(task) {
        event.memcg_id = id;
        event.fields |= field::MEMCG;
    }
    let mm = task::mm(task);
    if mm == 0 {
        return true;
    }
    event.victim_mm = mm;
    event.fields |= field::MM;
    if let Some(blocks) = mm::lock_blocks_readers(mm) {
        event.fields |= field::MMAP_LOCK_READ;
        if blocks {
            event.fields |= field::MMAP_LOCK_BLOCKS_READERS;
        }
    }
    if let (Some(rss), Some((total_vm, pgtables))) = (mm::rss(mm), mm::size(mm)) {
        event.total_vm_kib = total_vm;
        event.anon_rss_kib = rss.anon_kib;
        event.file_rss_kib = rss.file_kib;
        event.shmem_rss_kib = rss.shmem_kib;
        event.pgtables_kib = pgtables;
        event.fields |= field::MEMORY;
    }
    if let Some(swap) = mm::swap_kib(mm) {
        event.swap_kib = swap;
        event.fields |= field::SWAP;
    }
    if let Some(count) = mm::notifiers::<LOOP>(mm, &mut event.notifiers) {
        event.notifier_count = count.total;
        event.interval_notifiers = count.interval;
        event.fields |= field::NOTIFIERS;
    }
    true
}

/// Reads the record's `__data_loc char[] comm`: a u32 whose low 16 bits are the string's offset.
#[inline(always)]
fn read_record_comm(
    ctx: &TracePointContext,
    record: &MarkVictimRecord,
    comm: &mut [u8; COMM_LEN],
) -> bool {
    let Some(data_loc) = tracepoint_field::<u32>(ctx, record.comm_data_loc) else {
        return false;
    };
    let offset = (data_loc & 0xffff) as usize;
    let src = (ctx.as_ptr() as usize + offset) as *const u8;
    // SAFETY: the helper validates `src` and writes at most `comm.len()` bytes.
    unsafe { bpf_probe_read_kernel_str_bytes(src, comm) }.is_ok()
}
