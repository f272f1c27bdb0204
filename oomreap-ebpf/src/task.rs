//! Reads from `task_struct` and what hangs off it.
use oomreap_common::{event::COMM_LEN, layout::ABSENT};

use crate::kernel::{layout, read, read_comm, read_word};

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
    if l.task_real_parent == ABSENT {
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

/// Threads looked at when the leader has exited: `find_lock_task_mm` takes the first with an
/// mm, and a dying process's threads lose theirs one by one.
const MAX_THREADS: u32 = 16;

/// The mm of `leader`'s process as `find_lock_task_mm` finds it: the leader's, or once it has
/// exited, the first of its threads that still has one (0 if none does).
#[inline(always)]
pub fn mm_of_any_thread(leader: u64) -> u64 {
    let mm = mm(leader);
    if mm != 0 {
        return mm;
    }
    let l = layout();
    if l.task_thread_node == ABSENT || l.signal_thread_head == ABSENT {
        return 0;
    }
    let signal = read_word(leader, l.task_signal);
    if signal == 0 {
        return 0;
    }
    let head = signal + u64::from(l.signal_thread_head);
    let mut node = read_word(head, l.list_head_next);
    for _ in 0..MAX_THREADS {
        if node == 0 || node == head {
            return 0;
        }
        let mm = self::mm(node - u64::from(l.task_thread_node));
        if mm != 0 {
            return mm;
        }
        node = read_word(node, l.list_head_next);
    }
    0
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
