//! The OOM domain of a kill: the memory cgroup whose limit was hit, or the machine. Exact from
//! the OOM killer's `oom_control` where a function hook on `oom_kill_process` is allowed
//! ([`crate::oom_kill`]); otherwise derived from the trigger's cgroups, which user space marks
//! inferred.
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
#[inline(always)]
pub fn fill(trigger: u64, victim_tgid: u32, event: &mut MarkVictimEvent) {
    match crate::oom_kill::take(victim_tgid) {
        Some(context) => exact(&context, event),
        None => derive(trigger, event),
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
fn derive(trigger: u64, event: &mut MarkVictimEvent) {
    let l = layout();
    if l.task_cgroups == ABSENT || l.css_set_subsys == ABSENT || l.css_parent == ABSENT {
        return;
    }
    let Some(css_set) = read::<u64>(trigger, l.task_cgroups) else {
        return;
    };
    let Some(mut css) = read::<u64>(css_set, add(l.css_set_subsys, l.memory_subsys_index_bytes))
    else {
        return;
    };
    for _ in 0..MAX_MEMCG_DEPTH {
        if css == 0 {
            break;
        }
        let memcg = css.wrapping_sub(u64::from(l.memcg_css));
        let Some((id, usage_kib, limit_kib)) = state(memcg) else {
            return;
        };
        let page_kib = 1u64 << l.page_to_kib_shift;
        if usage_kib.saturating_add(AT_LIMIT_PAGES * page_kib) >= limit_kib {
            event.domain_memcg_id = id;
            event.domain_usage_kib = usage_kib;
            event.domain_limit_kib = limit_kib;
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

/// A memory cgroup's id, usage and limit in KiB.
#[inline(always)]
pub fn state(memcg: u64) -> Option<(u64, u64, u64)> {
    let l = layout();
    if l.memcg_css == ABSENT || l.memcg_memory == ABSENT {
        return None;
    }
    let usage = read::<u64>(memcg, add(l.memcg_memory, l.page_counter_usage))?;
    let max = read::<u64>(memcg, add(l.memcg_memory, l.page_counter_max))?;
    let id = crate::task::css_id(memcg.wrapping_add(u64::from(l.memcg_css)))?;
    let shift = l.page_to_kib_shift;
    // PAGE_COUNTER_MAX in KiB would overflow: saturate instead.
    Some((
        id,
        usage << shift,
        max.checked_shl(shift)
            .filter(|v| v >> shift == max)
            .unwrap_or(u64::MAX),
    ))
}
