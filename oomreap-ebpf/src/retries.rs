//! `oom:reclaim_retry_zone` and `oom:compact_retry`, counted in the kernel per node, zone and
//! order: under memory pressure they fire far too often to send one by one.
use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::HashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use oomreap_common::{
    event::{RetryKey, RetryKind},
    maps::RETRY_CAPACITY,
};

use crate::{
    kernel::{layout, read},
    tracepoint_field,
};

/// BPF_NOEXIST: insert only if absent.
const BPF_NOEXIST: u64 = 1;

#[map]
static RETRIES: HashMap<RetryKey, u64> = HashMap::with_max_entries(RETRY_CAPACITY, 0);

#[btf_tracepoint(function = "reclaim_retry_zone")]
pub fn reclaim_retry_zone_btf(ctx: BtfTracePointContext) -> i32 {
    let l = layout();
    let zoneref: u64 = ctx.arg(0);
    let zone = read::<u64>(zoneref, l.zoneref_zone).unwrap_or(0);
    bump(RetryKey {
        kind: RetryKind::Reclaim as u32,
        node: read(zone, l.zone_node).unwrap_or(-1),
        zone: read(zoneref, l.zoneref_zone_idx).unwrap_or(-1),
        order: ctx.arg(1),
    });
    0
}

#[tracepoint(category = "oom", name = "reclaim_retry_zone")]
pub fn reclaim_retry_zone_tp(ctx: TracePointContext) -> u32 {
    let r = &layout().records;
    bump(RetryKey {
        kind: RetryKind::Reclaim as u32,
        node: tracepoint_field(&ctx, r.reclaim_node).unwrap_or(-1),
        zone: tracepoint_field(&ctx, r.reclaim_zone).unwrap_or(-1),
        order: tracepoint_field(&ctx, r.reclaim_order).unwrap_or(-1),
    });
    0
}

#[btf_tracepoint(function = "compact_retry")]
pub fn compact_retry_btf(ctx: BtfTracePointContext) -> i32 {
    bump(compaction(ctx.arg(0)));
    0
}

#[tracepoint(category = "oom", name = "compact_retry")]
pub fn compact_retry_tp(ctx: TracePointContext) -> u32 {
    let order = tracepoint_field(&ctx, layout().records.compact_order).unwrap_or(-1);
    bump(compaction(order));
    0
}

#[inline(always)]
fn compaction(order: i32) -> RetryKey {
    RetryKey {
        kind: RetryKind::Compaction as u32,
        node: -1,
        zone: -1,
        order,
    }
}

#[inline(always)]
fn bump(key: RetryKey) {
    if let Some(count) = RETRIES.get_ptr_mut(key) {
        // SAFETY: a valid, aligned u64 in a map value; other CPUs update it atomically too.
        unsafe { crate::atomic_add(count, 1) };
        return;
    }
    // Another CPU may insert the same key first; then add to its entry instead.
    if RETRIES.insert(key, 1, BPF_NOEXIST).is_err()
        && let Some(count) = RETRIES.get_ptr_mut(key)
    {
        // SAFETY: as above.
        unsafe { crate::atomic_add(count, 1) };
    }
}
