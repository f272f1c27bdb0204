//! Reads from `task_struct` and what hangs off it.
use oomreap_common::event::COMM_LEN;

use crate::kernel::{layout, read, read_comm};

/// A task's (pid, tgid), if readable.
#[inline(always)]
pub fn ids(task: u64) -> Option<(u32, u32)> {
    let l = layout();
    Some((read(task, l.task_pid)?, read(task, l.task_tgid)?))
}

/// The tgid of a task's parent process (`real_parent`).
#[inline(always)]
pub fn parent_tgid(task: u64) -> Option<u32> {
    let l = layout();
    if l.task_real_parent == oomreap_common::layout::ABSENT {
        return None;
    }
    let parent = read::<u64>(task, l.task_real_parent)?;
    read(parent, l.task_tgid)
}

/// A task's name into `comm`; false if unreadable.
#[inline(always)]
pub fn comm(task: u64, comm: &mut [u8; COMM_LEN]) -> bool {
    read_comm(task, layout().task_comm, comm)
}

/// A task's mm (0 for kernel threads and exited tasks).
#[inline(always)]
pub fn mm(task: u64) -> u64 {
    read(task, layout().task_mm).unwrap_or(0)
}

/// `task->signal->oom_score_adj`.
#[inline(always)]
pub fn oom_score_adj(task: u64) -> Option<i16> {
    let l = layout();
    let signal = read::<u64>(task, l.task_signal)?;
    read(signal, l.signal_oom_score_adj)
}

/// The id of the task's memory cgroup:
/// `task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id`.
#[inline(always)]
pub fn memcg_id(task: u64) -> Option<u64> {
    let l = layout();
    let css_set = read::<u64>(task, l.task_cgroups)?;
    let subsys = crate::kernel::add(l.css_set_subsys, l.memory_subsys_index_bytes);
    css_id(read::<u64>(css_set, subsys)?)
}

/// The id of a cgroup subsystem state's cgroup: `css->cgroup->kn->id`.
#[inline(always)]
pub fn css_id(css: u64) -> Option<u64> {
    let l = layout();
    let cgroup = read::<u64>(css, l.css_cgroup)?;
    let kn = read::<u64>(cgroup, l.cgroup_kn)?;
    read(kn, l.kernfs_node_id)
}
