//! `oom:oom_score_adj_update`: who changed whose OOM score adjustment, to what.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel_buf,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oomreap_common::{
    event::{EventKind, ScoreAdjEvent},
    layout::ABSENT,
};

use crate::{
    emit::{self, Record},
    kernel::{current_comm, current_ids, layout},
    task, tracepoint_field,
};

#[btf_tracepoint(function = "oom_score_adj_update")]
pub fn oom_score_adj_update_btf(ctx: BtfTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let Some((pid, _)) = task::ids(task) else {
        return 0;
    };
    let Some(mut record) = start() else {
        return 0;
    };
    let event = record.get();
    event.pid = pid;
    event.oom_score_adj = task::oom_score_adj(task).map_or(0, i32::from);
    task::comm(task, &mut event.comm);
    record.submit();
    0
}

#[tracepoint(category = "oom", name = "oom_score_adj_update")]
pub fn oom_score_adj_update_tp(ctx: TracePointContext) -> u32 {
    let r = &layout().records;
    let (Some(pid), Some(adj)) = (
        tracepoint_field::<u32>(&ctx, r.score_pid),
        tracepoint_field::<i16>(&ctx, r.score_adj),
    ) else {
        return 0;
    };
    let Some(mut record) = start() else {
        return 0;
    };
    let event = record.get();
    event.pid = pid;
    event.oom_score_adj = i32::from(adj);
    if r.score_comm != ABSENT {
        let src = (ctx.as_ptr() as usize + r.score_comm as usize) as *const u8;
        // SAFETY: the helper validates `src`; `comm` is a buffer in our record.
        let _ = unsafe { bpf_probe_read_kernel_buf(src, &mut event.comm) };
    }
    record.submit();
    0
}

#[inline(always)]
fn start() -> Option<Record<ScoreAdjEvent>> {
    let mut record = Record::<ScoreAdjEvent>::reserve()?;
    let event = record.get();
    event.header = emit::header(EventKind::ScoreAdjUpdate);
    let (pid, tgid) = current_ids();
    event.changer_pid = pid;
    event.changer_tgid = tgid;
    event.changer_comm = current_comm();
    Some(record)
}
