//! Kernel structure offsets, resolved by user space and handed to the kernel programs.
//!
//! aya emits no CO-RE relocations, so the kernel programs cannot ask the verifier where
//! `task_struct::pid` lives. User space reads the running kernel's BTF (and, for classic
//! tracepoints, the tracefs `format` file), fills a [`KernelLayout`] and sets it as the read-only
//! global [`crate::maps::LAYOUT_GLOBAL`] before loading. Nothing is hard-coded.

/// Offset value meaning "this field does not exist on the running kernel".
pub const ABSENT: u32 = u32::MAX;

/// The arguments `oom:mark_victim` passes to a BTF tracepoint program.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MarkVictimArgs {
    /// `(struct task_struct *task, uid_t uid)`, kernels since 2024 and some stable backports.
    TaskAndUid = 1,
    /// `(int pid)`, older kernels.
    PidOnly = 2,
}

/// Byte offsets the kernel programs need, or [`ABSENT`].
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// A [`MarkVictimArgs`] value; 0 until user space sets it.
    pub mark_victim_args: u32,
    /// `PAGE_SHIFT - 10`: converts page counts to KiB.
    pub page_to_kib_shift: u32,
    /// tgid of the oom_reaper kthread, found by user space in /proc (0 if not found; the
    /// kernel programs also learn it from the reaper's own tracepoints).
    pub reaper_pid: u32,
    /// 1 where the kernel has the `bpf_snprintf` helper (5.13+): the kill's program then names
    /// the trigger's stack frames itself (`%pB`, as /proc/PID/stack does). The verifier prunes
    /// the branch that calls it where this is 0, so older kernels load the same program.
    pub bpf_snprintf: u32,

    // struct task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub task_cgroups: u32,
    // struct signal_struct
    pub signal_oom_score_adj: u32,
    // struct mm_struct
    pub mm_total_vm: u32,
    pub mm_rss_stat: u32,
    pub mm_pgtables_bytes: u32,
    pub mm_flags: u32,
    pub mm_mmap_lock: u32,
    pub mm_notifier_subscriptions: u32,
    /// `mm->owner` (CONFIG_MEMCG): names process_mrelease's target from the mm it locks.
    pub mm_owner: u32,
    /// `mm->mm_users`: 0 once the last user let go, so a reap then is exit_mmap's, in
    /// whichever task dropped the last reference (5.10 reaps OOM victims there).
    pub mm_users: u32,
    /// Size of one `struct percpu_counter` in `mm_struct::rss_stat[]`.
    pub percpu_counter_size: u32,
    /// Offset of `count` (an `s64`) in `struct percpu_counter`.
    pub percpu_counter_count: u32,
    // struct rw_semaphore and struct rwsem_waiter
    pub rwsem_count: u32,
    pub rwsem_owner: u32,
    pub rwsem_wait_list: u32,
    pub waiter_list: u32,
    pub waiter_task: u32,
    pub waiter_type: u32,
    // mmu notifiers: subscriptions->list (hlist_head), notifier->hlist, ->ops,
    // ops->invalidate_range_start
    pub subscriptions_list: u32,
    pub notifier_hlist: u32,
    pub notifier_ops: u32,
    pub ops_invalidate_range_start: u32,
    // memory cgroup id: task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id
    pub css_set_subsys: u32,
    /// `memory_cgrp_id` times the pointer size: the byte offset into `subsys[]`.
    pub memory_subsys_index_bytes: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// For the OOM domain: `mem_cgroup.css`, `cgroup_subsys_state.parent`, `mem_cgroup.memory`
    /// (a `page_counter`) and its `usage` and `max`.
    pub memcg_css: u32,
    pub css_parent: u32,
    pub memcg_memory: u32,
    pub page_counter_usage: u32,
    pub page_counter_max: u32,
    /// `struct oom_control`, read at `oom_kill_process` (function hooks): the OOM killer's
    /// own record of the domain, constraint, victim and its points.
    pub oc_memcg: u32,
    pub oc_totalpages: u32,
    pub oc_chosen: u32,
    pub oc_chosen_points: u32,
    pub oc_constraint: u32,
    // list links: list_head::next, hlist_node::next (hlist_head::first is the head's only field)
    pub list_head_next: u32,
    pub hlist_node_next: u32,
    // reclaim_retry_zone: zoneref->zone, zoneref->zone_idx, zone->node (NUMA only)
    pub zoneref_zone: u32,
    pub zoneref_zone_idx: u32,
    pub zone_node: u32,
    // struct mmu_notifier_range: the mm and address range of an invalidation
    pub range_mm: u32,
    pub range_start: u32,
    pub range_end: u32,
    /// `task_struct::real_parent`.
    pub task_real_parent: u32,
    /// `rw_semaphore::first_waiter` (7.x), where older kernels have `wait_list`.
    pub rwsem_first_waiter: u32,
    /// Interval notifiers (RDMA ODP, HMM mirrors, GPU userptr): `subscriptions->itree`, an
    /// `rb_root_cached` whose first word is the root and whose `rb_leftmost` starts the walk.
    pub subscriptions_itree: u32,
    pub rb_cached_leftmost: u32,
    /// `rb_node`'s parent pointer (low two bits: the colour) and children.
    pub rb_parent_color: u32,
    pub rb_right: u32,
    pub rb_left: u32,
    /// Where a `mmu_interval_notifier`'s `rb_node` is (`interval_tree.rb`), its `ops`, and
    /// `ops->invalidate`, the callback that refuses a non-blocking range.
    pub interval_notifier_rb: u32,
    pub interval_notifier_ops: u32,
    pub interval_ops_invalidate: u32,
    /// `ops->invalidate_start` (7.1+), for notifiers that split the callback in two.
    pub interval_ops_invalidate_start: u32,
    /// PREEMPT_RT, where `rw_semaphore` is a `struct rwbase_rt` (no `count`, `owner`, or
    /// `wait_list`): offsets in `rw_semaphore` of `rwbase.readers` (an `atomic_t`), of
    /// `rwbase.rtmutex.owner` (the writer, holding or pending; bit 0: has waiters) and of
    /// `rwbase.rtmutex.waiters.rb_leftmost` (the first waiter's node); in
    /// `rt_mutex_waiter`, of its tree node (`tree.entry`) and its `task`.
    pub rt_readers: u32,
    pub rt_owner: u32,
    pub rt_waiters_leftmost: u32,
    pub rt_waiter_entry: u32,
    pub rt_waiter_task: u32,
    pub _pad2: u32,
    /// process_mrelease(2)'s target from its pidfd, at syscall entry (the mmap_lock hook that
    /// once named it is attached only while an OOM victim is in flight):
    /// `current->files->fdt->fd[pidfd]`, then the `struct pid` in the file's `private_data`
    /// (anon-inode pidfds, before 6.9) or its inode's `i_private` (pidfs), then the task on
    /// the pid's `tasks[PIDTYPE_TGID]` (or `[PIDTYPE_PID]`, a thread's pidfd) through its
    /// `pid_links[]`, and if that leader has exited, the first of its threads with an mm
    /// (`signal->thread_head`, `task->thread_node`).
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub file_inode: u32,
    pub inode_i_private: u32,
    /// `pid.tasks[PIDTYPE_TGID]` and `pid.tasks[PIDTYPE_PID]`, each an `hlist_head`.
    pub pid_tasks_tgid: u32,
    pub pid_tasks_pid: u32,
    /// `task_struct.pid_links[PIDTYPE_TGID]` and `[PIDTYPE_PID]`, each an `hlist_node`.
    pub task_link_tgid: u32,
    pub task_link_pid: u32,
    pub signal_thread_head: u32,
    pub task_thread_node: u32,
    /// Where a syscall wrapper's one argument, the caller's saved `struct pt_regs`, holds the
    /// syscall's first argument: `di` on x86_64, `regs[0]` on arm64. process_mrelease's
    /// function hook reads its pidfd there.
    pub pt_regs_arg0: u32,

    /// Record offsets of classic tracepoints (from their tracefs `format` files).
    pub mark_victim_record: MarkVictimRecord,
    pub records: ClassicRecords,
}

/// Record offsets of the classic tracepoints other than `mark_victim`; [`ABSENT`] where the
/// record lacks the field. `pid` is the one field of `wake_reaper`, `start_task_reaping`,
/// `finish_task_reaping` and `skip_task_reaping`, all at the same offset.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClassicRecords {
    pub reaper_pid: u32,
    pub lock_mm: u32,
    pub lock_write: u32,
    pub lock_success: u32,
    pub exit_mmap_mm: u32,
    pub score_pid: u32,
    /// A fixed `char comm[16]`.
    pub score_comm: u32,
    pub score_adj: u32,
    pub reclaim_node: u32,
    pub reclaim_zone: u32,
    pub reclaim_order: u32,
    pub compact_order: u32,
    pub mrelease_pidfd: u32,
    pub mrelease_ret: u32,
}

impl ClassicRecords {
    pub const UNSET: Self = Self {
        reaper_pid: ABSENT,
        lock_mm: ABSENT,
        lock_write: ABSENT,
        lock_success: ABSENT,
        exit_mmap_mm: ABSENT,
        score_pid: ABSENT,
        score_comm: ABSENT,
        score_adj: ABSENT,
        reclaim_node: ABSENT,
        reclaim_zone: ABSENT,
        reclaim_order: ABSENT,
        compact_order: ABSENT,
        mrelease_pidfd: ABSENT,
        mrelease_ret: ABSENT,
    };
}

/// Record offsets of the classic `oom:mark_victim` tracepoint; [`ABSENT`] where the kernel's
/// record lacks the field (before 2024 it had `pid` only).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MarkVictimRecord {
    pub pid: u32,
    /// A `__data_loc char[]`: a u32 whose low half is the string's offset in the record.
    pub comm_data_loc: u32,
    pub total_vm: u32,
    pub anon_rss: u32,
    pub file_rss: u32,
    pub shmem_rss: u32,
    pub uid: u32,
    pub pgtables: u32,
    /// A `short`.
    pub oom_score_adj: u32,
    pub _pad: u32,
}

impl MarkVictimRecord {
    pub const UNSET: Self = Self {
        pid: ABSENT,
        comm_data_loc: ABSENT,
        total_vm: ABSENT,
        anon_rss: ABSENT,
        file_rss: ABSENT,
        shmem_rss: ABSENT,
        uid: ABSENT,
        pgtables: ABSENT,
        oom_score_adj: ABSENT,
        _pad: 0,
    };
}

impl KernelLayout {
    /// Every offset absent: what the kernel programs see if user space never set the layout.
    pub const UNSET: Self = Self {
        mark_victim_args: 0,
        page_to_kib_shift: 2,
        reaper_pid: 0,
        bpf_snprintf: 0,
        task_pid: ABSENT,
        task_tgid: ABSENT,
        task_comm: ABSENT,
        task_mm: ABSENT,
        task_signal: ABSENT,
        task_cgroups: ABSENT,
        signal_oom_score_adj: ABSENT,
        mm_total_vm: ABSENT,
        mm_rss_stat: ABSENT,
        mm_pgtables_bytes: ABSENT,
        mm_flags: ABSENT,
        mm_mmap_lock: ABSENT,
        mm_notifier_subscriptions: ABSENT,
        mm_owner: ABSENT,
        mm_users: ABSENT,
        percpu_counter_size: ABSENT,
        percpu_counter_count: ABSENT,
        rwsem_count: ABSENT,
        rwsem_owner: ABSENT,
        rwsem_wait_list: ABSENT,
        waiter_list: ABSENT,
        waiter_task: ABSENT,
        waiter_type: ABSENT,
        subscriptions_list: ABSENT,
        notifier_hlist: ABSENT,
        notifier_ops: ABSENT,
        ops_invalidate_range_start: ABSENT,
        css_set_subsys: ABSENT,
        memory_subsys_index_bytes: ABSENT,
        css_cgroup: ABSENT,
        cgroup_kn: ABSENT,
        kernfs_node_id: ABSENT,
        memcg_css: ABSENT,
        css_parent: ABSENT,
        memcg_memory: ABSENT,
        page_counter_usage: ABSENT,
        page_counter_max: ABSENT,
        oc_memcg: ABSENT,
        oc_totalpages: ABSENT,
        oc_chosen: ABSENT,
        oc_chosen_points: ABSENT,
        oc_constraint: ABSENT,
        list_head_next: ABSENT,
        hlist_node_next: ABSENT,
        zoneref_zone: ABSENT,
        zoneref_zone_idx: ABSENT,
        zone_node: ABSENT,
        range_mm: ABSENT,
        range_start: ABSENT,
        range_end: ABSENT,
        task_real_parent: ABSENT,
        rwsem_first_waiter: ABSENT,
        subscriptions_itree: ABSENT,
        rb_cached_leftmost: ABSENT,
        rb_parent_color: ABSENT,
        rb_right: ABSENT,
        rb_left: ABSENT,
        interval_notifier_rb: ABSENT,
        interval_notifier_ops: ABSENT,
        interval_ops_invalidate: ABSENT,
        interval_ops_invalidate_start: ABSENT,
        rt_readers: ABSENT,
        rt_owner: ABSENT,
        rt_waiters_leftmost: ABSENT,
        rt_waiter_entry: ABSENT,
        rt_waiter_task: ABSENT,
        _pad2: 0,
        task_files: ABSENT,
        files_fdt: ABSENT,
        fdtable_max_fds: ABSENT,
        fdtable_fd: ABSENT,
        file_private_data: ABSENT,
        file_inode: ABSENT,
        inode_i_private: ABSENT,
        pid_tasks_tgid: ABSENT,
        pid_tasks_pid: ABSENT,
        task_link_tgid: ABSENT,
        task_link_pid: ABSENT,
        signal_thread_head: ABSENT,
        task_thread_node: ABSENT,
        pt_regs_arg0: ABSENT,
        mark_victim_record: MarkVictimRecord::UNSET,
        records: ClassicRecords::UNSET,
    };
}

const _: () = {
    assert!(core::mem::size_of::<MarkVictimRecord>() == 40);
    assert!(core::mem::size_of::<ClassicRecords>() == 14 * 4);
    assert!(core::mem::size_of::<KernelLayout>() == 85 * 4 + 40 + 14 * 4);
};

// SAFETY: all three structs are `repr(C)` and made of `u32`s only, so they have no padding and
// every bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelLayout {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for MarkVictimRecord {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ClassicRecords {}
