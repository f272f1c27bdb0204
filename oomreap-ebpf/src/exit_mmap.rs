//! `mmap:exit_mmap` of a victim's mm: its memory is gone. Other mms are ignored in the kernel,
//! and with no victim in flight (nearly always) after a single array read: it runs at every
//! process exit.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oomreap_common::event::{EventKind, ExitMmapEvent};

use crate::{
    emit::{self, Record},
    kernel::{current_comm, current_ids, layout},
    tracepoint_field, victims,
};

#[btf_tracepoint(function = "exit_mmap")]
pub fn exit_mmap_btf(ctx: BtfTracePointContext) -> i32 {
    if victims::any_live() {
        exit_mmap(ctx.arg(0));
    }
    0
}

#[tracepoint(category = "mmap", name = "exit_mmap")]
pub fn exit_mmap_tp(ctx: TracePointContext) -> u32 {
    // Before the record is read, not in `exit_mmap`: once per run is enough.
    if !victims::any_live() {
        return 0;
    }
    if let Some(mm) = tracepoint_field::<u64>(&ctx, layout().records.exit_mmap_mm) {
        exit_mmap(mm);
    }
    0
}

/// Both entry points call it only after [`victims::any_live`].
#[inline(always)]
fn exit_mmap(mm: u64) {
    let Some(victim) = victims::by_mm(mm) else {
        return;
    };
    victims::forget(&victim);
    let Some(mut record) = Record::<ExitMmapEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::ExitMmap);
    event.mm = mm;
    event.victim_pid = victim.pid;
    let (pid, tgid) = current_ids();
    event.current_pid = pid;
    event.current_tgid = tgid;
    event.current_comm = current_comm();
    record.submit();
}
