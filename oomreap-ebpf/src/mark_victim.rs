//! `oom:mark_victim`: the OOM killer chose a victim.
//!
//! Two programs, one per attach kind; user space loads the one the kernel supports. Both fill a
//! [`MarkVictimEvent`], setting a bit in `fields` for each value they really read, so a kernel
//! that offers less never shows up as zeros. The victim is remembered for the reaper's events.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::{debug, warn};
use oomreap_common::{
    event::{AttachKind, COMM_LEN, EventKind, MarkVictimEvent, mark_victim_fields as field},
    layout::{ABSENT, MarkVictimArgs, MarkVictimRecord},
    maps::Counter,
};

use crate::{
    emit::{self, Record},
    kernel::{add, current_comm, current_ids, layout, read},
    mm, task, tracepoint_field, victims,
};

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
    let Some(mut record) = Record::<MarkVictimEvent>::reserve() else {
        return Ok(());
    };
    let event = record.get();
    start(event, AttachKind::BtfTracePoint);
    let args = layout().mark_victim_args;
    if args == MarkVictimArgs::PidOnly as u32 {
        event.victim_pid = ctx.arg::<u32>(0);
    } else if args == MarkVictimArgs::TaskAndUid as u32 {
        let task: u64 = ctx.arg(0);
        event.uid = ctx.arg(1);
        event.fields |= field::UID;
        if !read_task(task, event) {
            record.discard();
            return Err(());
        }
    } else {
        record.discard();
        warn!(ctx, "mark_victim: kernel layout not set by user space");
        return Err(());
    }
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
    start(event, AttachKind::TracePoint);
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
    victims::remember(event.victim_pid, 0, 0);
    debug!(
        ctx,
        "mark_victim pid {} (classic tracepoint)", event.victim_pid
    );
    record.submit();
    Ok(())
}

/// Fills the header, the trigger (the current task) and the OOM domain.
#[inline(always)]
fn start(event: &mut MarkVictimEvent, attach: AttachKind) {
    event.header = emit::header(EventKind::MarkVictim);
    let (pid, tgid) = current_ids();
    event.trigger_pid = pid;
    event.trigger_tgid = tgid;
    event.trigger_comm = current_comm();
    event.attach = attach as u32;
    // SAFETY: takes no arguments; returns the current task's address.
    let current = unsafe { bpf_get_current_task() };
    oom_domain(current, event);
}

/// Memory cgroup levels walked up from the trigger's.
const MAX_MEMCG_DEPTH: u32 = 16;

/// Pages a memory cgroup may be under its limit and still be the one that hit it: a charge
/// fails when `usage + batch > max`, and the batch is up to `MEMCG_CHARGE_BATCH` (64) pages.
const AT_LIMIT_PAGES: u64 = 64;

/// The OOM domain as the kernel's charge saw it: walking up from the trigger's memory cgroup,
/// the first whose usage is at its limit (a charge fails at the lowest such level); none
/// means the machine's memory ran out. Derived, not read from the OOM killer: user space
/// marks it inferred.
#[inline(always)]
fn oom_domain(trigger: u64, event: &mut MarkVictimEvent) {
    let l = layout();
    let needed = [
        l.task_cgroups,
        l.css_set_subsys,
        l.memory_subsys_index_bytes,
        l.memcg_css,
        l.css_parent,
        l.memcg_memory,
        l.page_counter_usage,
        l.page_counter_max,
    ];
    if needed.contains(&ABSENT) {
        return;
    }
    let Some(css_set) = read::<u64>(trigger, l.task_cgroups) else {
        return;
    };
    let Some(mut css) = read::<u64>(css_set, add(l.css_set_subsys, l.memory_subsys_index_bytes))
    else {
        return;
    };
    let usage_at = add(l.memcg_memory, l.page_counter_usage);
    let max_at = add(l.memcg_memory, l.page_counter_max);
    for _ in 0..MAX_MEMCG_DEPTH {
        if css == 0 {
            break;
        }
        let memcg = css.wrapping_sub(u64::from(l.memcg_css));
        let (Some(usage), Some(max)) = (read::<u64>(memcg, usage_at), read::<u64>(memcg, max_at))
        else {
            return;
        };
        if usage.saturating_add(AT_LIMIT_PAGES) >= max {
            let Some(id) = css_id(css) else { return };
            let shift = l.page_to_kib_shift;
            event.domain_memcg_id = id;
            event.domain_usage_kib = usage << shift;
            event.domain_limit_kib = max << shift;
            event.fields |= field::DOMAIN_WALKED | field::DOMAIN;
            return;
        }
        let Some(parent) = read::<u64>(css, l.css_parent) else {
            return;
        };
        css = parent;
    }
    // The root's counter has no limit: reaching it means no cgroup limit was hit.
    if css == 0 {
        event.fields |= field::DOMAIN_WALKED;
    }
}

/// The id of a memory cgroup's css: `css->cgroup->kn->id`, as [`task::memcg_id`] reads.
#[inline(always)]
fn css_id(css: u64) -> Option<u64> {
    let l = layout();
    let cgroup = read::<u64>(css, l.css_cgroup)?;
    let kn = read::<u64>(cgroup, l.cgroup_kn)?;
    read(kn, l.kernfs_node_id)
}

/// Fills what `task_struct`, its `mm_struct` and `signal_struct` tell about the victim.
/// Returns false if not even the pid could be read.
#[inline(always)]
fn read_task(task: u64, event: &mut MarkVictimEvent) -> bool {
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
    if let Some(count) = mm::notifiers(mm, &mut event.notifiers) {
        event.notifier_count = count;
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
