//! The OOM domain of a kill: the memory cgroup whose limit was hit, or the machine. Exact from
//! the OOM killer's `oom_control` where a function hook on `oom_kill_process` is allowed
//! ([`crate::oom_kill`]); otherwise derived from the trigger's cgroups, which user space marks
//! inferred.
use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use oomreap_common::{
    event::{MarkVictimEvent, mark_victim_fields as field},
    layout::ABSENT,
    maps::OomContext,
};

use crate::kernel::{add, layout, read};

/// Memory cgroup levels walked up from the trigger's.
const MAX_MEMCG_DEPTH: u32 = 16;

/// Pages a memory cgroup may be under its limit and still be the one that hit it: a charge
/// fails when `usage + batch > max`, and the batch is up to `MEMCG_CHARGE_BATCH` (64) pages.
const AT_LIMIT_PAGES: u64 = 64;

/// Fills the domain from what `oom_kill_process` recorded for this victim, if it did, else
/// derives it: walking up from the trigger's memory cgroup, the first whose usage is at its
/// limit (a charge fails at the lowest such level); none means the machine's memory ran out.
/// `LOOP` walks the levels under `bpf_loop` (see `mm::notifiers`).
#[inline(always)]
pub fn fill<const LOOP: bool>(trigger: u64, victim_tgid: u32, event: &mut MarkVictimEvent) {
    match crate::oom_kill::take(victim_tgid) {
        Some(context) => exact(&context, event),
        None => derive::<LOOP>(trigger, event),
    }
}

#[inline(always)]
fn exact(context: &OomContext, event: &mut MarkVictimEvent) {
    event.fields |= field::DOMAIN_WALKED | field::EXACT;
    if context.domain_memcg_id != 0 {
        event.domain_memcg_id = context.domain_memcg_id;
        event.domain_usage_kib = context.domain_usage_kib;
        event.domain_limit_kib = context.domain_limit_kib;
        event.fields |= field::DOMAIN;
    }
    event.constraint = context.constraint;
    event.chosen_points = context.chosen_points;
    event.total_pages = context.total_pages;
}

#[inline(always)]
fn derive<const LOOP: bool>(trigger: u64, event: &mut MarkVictimEvent) {
    let l = layout();
    if l.task_cgroups == ABSENT || l.css_set_subsys == ABSENT || l.css_parent == ABSENT {
        return;
    }
    let Some(css_set) = read::<u64>(trigger, l.task_cgroups) else {
        return;
    };
    let Some(css) = read::<u64>(css_set, add(l.css_set_subsys, l.memory_subsys_index_bytes)) else {
        return;
    };
    let mut walk = MemcgWalk {
        css,
        ..MemcgWalk::default()
    };
    if LOOP {
        let walk = (&raw mut walk).cast::<c_void>();
        // SAFETY: the callback has bpf_loop's signature and takes `walk`, which outlives the
        // call, as its context.
        unsafe { bpf_loop(MAX_MEMCG_DEPTH, memcg_step_callback as *mut c_void, walk, 0) };
    } else {
        for _ in 0..MAX_MEMCG_DEPTH {
            if !memcg_step(&mut walk) {
                break;
            }
        }
    }
    if walk.found != 0 {
        // Read again here, not carried out of the walk: see `MemcgWalk`.
        let Some((id, usage_kib, limit_kib)) = state(memcg_of(walk.css)) else {
            return;
        };
        event.domain_memcg_id = id;
        event.domain_usage_kib = usage_kib;
        event.domain_limit_kib = limit_kib;
        event.fields |= field::DOMAIN_WALKED | field::DOMAIN;
    } else if walk.failed == 0 && walk.css == 0 {
        // The root's counter has no limit: reaching it means no cgroup limit was hit.
        event.fields |= field::DOMAIN_WALKED;
    }
}

/// The walk up the memory cgroups: where it is, and whether it ended there. On the
/// program's stack, which a `bpf_loop` callback reaches through its context pointer.
///
/// It carries no reading of the cgroup it found: values read in one turn and kept for the
/// next make each turn's state differ from the last, and the verifier then checks the
/// callback again and again (56 times on 6.18, most of the kill program's verification)
/// instead of once or twice.
#[derive(Default)]
#[repr(C)]
struct MemcgWalk {
    css: u64,
    /// The cgroup at `css` is at its limit: the domain.
    found: u32,
    /// A read failed: the domain is unknown.
    failed: u32,
}

/// The memory cgroup a memory `css` is embedded in.
#[inline(always)]
fn memcg_of(css: u64) -> u64 {
    css.wrapping_sub(u64::from(layout().memcg_css))
}

#[inline(never)]
extern "C" fn memcg_step_callback(_index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `derive` passes its own `MemcgWalk`, alive for the whole loop.
    let walk = unsafe { &mut *walk.cast::<MemcgWalk>() };
    i64::from(!memcg_step(walk))
}

/// One level: is the cgroup at `css` at its limit, else up to its parent. False once the
/// walk is over (found, failed, or past the root).
#[inline(always)]
fn memcg_step(walk: &mut MemcgWalk) -> bool {
    let l = layout();
    if walk.css == 0 {
        return false;
    }
    let Some((usage_kib, limit_kib)) = usage_and_limit(memcg_of(walk.css)) else {
        walk.failed = 1;
        return false;
    };
    let page_kib = 1u64 << l.page_to_kib_shift;
    if usage_kib.saturating_add(AT_LIMIT_PAGES * page_kib) >= limit_kib {
        walk.found = 1;
        return false;
    }
    let Some(parent) = read::<u64>(walk.css, l.css_parent) else {
        walk.failed = 1;
        return false;
    };
    walk.css = parent;
    true
}

/// A memory cgroup's id, usage and limit in KiB.
#[inline(always)]
pub fn state(memcg: u64) -> Option<(u64, u64, u64)> {
    let (usage_kib, limit_kib) = usage_and_limit(memcg)?;
    let id = crate::task::css_id(memcg.wrapping_add(u64::from(layout().memcg_css)))?;
    Some((id, usage_kib, limit_kib))
}

/// A memory cgroup's usage and limit in KiB: what the walk weighs at each level.
#[inline(always)]
fn usage_and_limit(memcg: u64) -> Option<(u64, u64)> {
    let l = layout();
    if l.memcg_css == ABSENT || l.memcg_memory == ABSENT {
        return None;
    }
    let usage = read::<u64>(memcg, add(l.memcg_memory, l.page_counter_usage))?;
    let max = read::<u64>(memcg, add(l.memcg_memory, l.page_counter_max))?;
    let shift = l.page_to_kib_shift;
    // PAGE_COUNTER_MAX in KiB would overflow: saturate instead.
    Some((
        usage << shift,
        max.checked_shl(shift)
            .filter(|v| v >> shift == max)
            .unwrap_or(u64::MAX),
    ))
}
