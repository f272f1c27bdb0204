//! Reads from a victim's `mm_struct`: RSS, flags, mmu notifiers and the mmap_lock.
use core::{
    ffi::c_void,
    ptr::{null_mut, read_volatile, write_volatile},
};

use aya_ebpf::{helpers::bpf_loop, macros::map, maps::PerCpuArray};
use oomreap_common::{
    event::{
        LockState, MAX_NOTIFIERS, MAX_WAITERS, RT_READER_BIAS, RWSEM_FLAG_WAITERS,
        RWSEM_OWNER_FLAGS_MASK, RWSEM_WRITER_LOCKED, lock_flags,
    },
    layout::{ABSENT, KernelLayout},
};

use crate::{
    kernel::{add, layout, read, read_or_zero, read_word},
    task,
};

/// Indices of `mm_struct::rss_stat[]` (enum in include/linux/mm_types_task.h).
const MM_FILEPAGES: u32 = 0;
const MM_ANONPAGES: u32 = 1;
const MM_SWAPENTS: u32 = 2;
const MM_SHMEMPAGES: u32 = 3;

/// Most notifiers counted; the verifier needs a bound, and no real mm has more.
const MAX_NOTIFIERS_COUNTED: u32 = 16;

/// Resident memory in KiB.
pub struct Rss {
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

/// The mm's RSS counters, converted to KiB.
#[inline(always)]
pub fn rss(mm: u64) -> Option<Rss> {
    let l = layout();
    let shift = l.page_to_kib_shift;
    let pages = |index| -> Option<u64> {
        // Percpu counters' global `count` lags the per-CPU deltas and can dip below zero.
        read::<i64>(mm, rss_counter(l, index)).map(|p| (p.max(0) as u64) << shift)
    };
    Some(Rss {
        anon_kib: pages(MM_ANONPAGES)?,
        file_kib: pages(MM_FILEPAGES)?,
        shmem_kib: pages(MM_SHMEMPAGES)?,
    })
}

/// The mm's swapped-out pages (`MM_SWAPENTS`), in KiB: part of the OOM killer's badness.
#[inline(always)]
pub fn swap_kib(mm: u64) -> Option<u64> {
    let l = layout();
    read::<i64>(mm, rss_counter(l, MM_SWAPENTS)).map(|p| (p.max(0) as u64) << l.page_to_kib_shift)
}

/// Offset in `mm_struct` of `rss_stat[index]`'s value, or [`ABSENT`].
#[inline(always)]
fn rss_counter(l: &KernelLayout, index: u32) -> u32 {
    if l.percpu_counter_size == ABSENT {
        return ABSENT;
    }
    add(
        add(l.mm_rss_stat, index * l.percpu_counter_size),
        l.percpu_counter_count,
    )
}

/// `total_vm` in KiB and page tables in KiB.
#[inline(always)]
pub fn size(mm: u64) -> Option<(u64, u64)> {
    let l = layout();
    let total_vm = read::<u64>(mm, l.mm_total_vm)? << l.page_to_kib_shift;
    let pgtables = read::<i64>(mm, l.mm_pgtables_bytes)?.max(0) as u64 >> 10;
    Some((total_vm, pgtables))
}

/// The first word of `mm->flags`.
#[inline(always)]
pub fn flags(mm: u64) -> Option<u64> {
    read(mm, layout().mm_flags)
}

/// The mm's mmu notifiers: how many, and how many of them are interval notifiers.
pub struct NotifierCount {
    pub total: u32,
    pub interval: u32,
}

/// Counts the mm's mmu notifiers and names the first ones by their callback: classic ones
/// (KVM's kind, on `subscriptions->list`) by `ops->invalidate_range_start`, then interval
/// ones (RDMA ODP, HMM mirrors, GPU userptr, on `subscriptions->itree`) by
/// `ops->invalidate`. Interval notifiers are the ones that refuse the reaper, and the
/// classic walk never meets them. `None` if the notifier fields are unknown, or if this CPU
/// is already inside a walk (an fentry program preempted mid-walk; see [`NotifierWalk`]).
///
/// `LOOP` runs each walk's steps as a `bpf_loop` callback (5.17+), which the verifier checks
/// once; otherwise they are unrolled, and it checks each turn again. The walks were over half
/// of mark_victim's verification, 10 of its 19 ms at every start-up.
#[inline(always)]
pub fn notifiers<const LOOP: bool>(
    mm: u64,
    callbacks: &mut [u64; MAX_NOTIFIERS],
) -> Option<NotifierCount> {
    let l = layout();
    if l.mm_notifier_subscriptions == ABSENT || l.hlist_node_next == ABSENT {
        return None;
    }
    let subscriptions = read::<u64>(mm, l.mm_notifier_subscriptions).unwrap_or(0);
    if subscriptions == 0 {
        // No subscriptions: no notifier can refuse the reaper.
        return Some(NotifierCount {
            total: 0,
            interval: 0,
        });
    }
    // hlist_head's only field is `first`.
    let first = read::<u64>(subscriptions, l.subscriptions_list)?;
    // No early return from here to `end`: it frees the state.
    let walk = NotifierWalk::begin()?;
    if l.notifier_hlist != ABSENT {
        walk.go(first, LIST);
        repeat::<LOOP>(MAX_NOTIFIERS_COUNTED, &walk, list_step_callback, list_step);
    }
    let classic = walk.count();
    if l.interval_ops_invalidate != ABSENT {
        let tree = subscriptions + u64::from(l.subscriptions_itree);
        walk.go(read_word(tree, l.rb_cached_leftmost), VISIT);
        repeat::<LOOP>(MAX_TREE_STEPS, &walk, tree_step_callback, tree_step);
    }
    let total = walk.end(callbacks);
    Some(NotifierCount {
        total,
        interval: total - classic,
    })
}

/// The notifier walk's state, kept in a map value, not in registers. The verifier follows a
/// register's exact value down every path, so a walk whose count and step it can see splits
/// into a path per combination: the tree walk took it over 190,000 instructions, 150 ms of
/// every start-up. What it reads back from a map is only "some number", so each step of the
/// unrolled walk is checked about once. Per CPU, so two CPUs never share one; `busy` keeps an
/// fentry program preempted mid-walk (fentry runs with migration, not preemption, disabled)
/// from having another walk on the same CPU overwrite its state.
#[repr(C)]
struct WalkState {
    /// Where the tree walk is (the rb_node of the notifier to name, or on the way to it).
    node: u64,
    names: [u64; MAX_NOTIFIERS],
    /// Notifiers counted so far, classic and interval.
    count: u32,
    step: u32,
    busy: u32,
    _pad: u32,
}

#[map]
static NOTIFIER_WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's [`WalkState`], held for one walk.
struct NotifierWalk(*mut WalkState);

impl NotifierWalk {
    /// Takes this CPU's walk state and clears it, or `None` if a walk holds it.
    #[inline(always)]
    fn begin() -> Option<Self> {
        let state = NOTIFIER_WALK.get_ptr_mut(0)?;
        // SAFETY: a valid map value of this CPU; volatile so every access goes to memory,
        // where the verifier does not track the values (the point of the map).
        unsafe {
            if read_volatile(&raw const (*state).busy) != 0 {
                return None;
            }
            write_volatile(&raw mut (*state).busy, 1);
            write_volatile(&raw mut (*state).count, 0);
            write_volatile(&raw mut (*state).names, [0; MAX_NOTIFIERS]);
        }
        Some(Self(state))
    }

    #[inline(always)]
    fn count(&self) -> u32 {
        // SAFETY: as in `begin`.
        unsafe { read_volatile(&raw const (*self.0).count) }
    }

    /// Counts one notifier, naming it by `callback` if a name slot is left.
    #[inline(always)]
    fn name(&self, callback: u64) {
        let count = self.count();
        // SAFETY: as in `begin`; `names` is indexed only below its length.
        unsafe {
            if let Some(slot) = (*self.0).names.get_mut(count as usize) {
                write_volatile(slot, callback);
            }
            write_volatile(&raw mut (*self.0).count, count + 1);
        }
    }

    #[inline(always)]
    fn at(&self) -> (u64, u32) {
        // SAFETY: as in `begin`.
        unsafe {
            (
                read_volatile(&raw const (*self.0).node),
                read_volatile(&raw const (*self.0).step),
            )
        }
    }

    #[inline(always)]
    fn go(&self, node: u64, step: u32) {
        // SAFETY: as in `begin`.
        unsafe {
            write_volatile(&raw mut (*self.0).node, node);
            write_volatile(&raw mut (*self.0).step, step);
        }
    }

    /// This CPU's state while [`begin`](Self::begin)'s holder walks: for a `bpf_loop`
    /// callback, which the program calls inside its walk and which has no other way to it.
    #[inline(always)]
    fn held() -> Option<Self> {
        NOTIFIER_WALK.get_ptr_mut(0).map(Self)
    }

    /// Copies the names out, frees the state for the next walk and returns the count.
    #[inline(always)]
    fn end(self, callbacks: &mut [u64; MAX_NOTIFIERS]) -> u32 {
        // SAFETY: as in `begin`.
        unsafe {
            *callbacks = read_volatile(&raw const (*self.0).names);
            let count = self.count();
            write_volatile(&raw mut (*self.0).busy, 0);
            count
        }
    }
}

/// Runs `step` until it says the walk is over, at most `turns` times: unrolled, or, with
/// `LOOP`, as `callback` (the same step) under `bpf_loop`.
#[inline(always)]
fn repeat<const LOOP: bool>(
    turns: u32,
    walk: &NotifierWalk,
    callback: extern "C" fn(u64, *mut c_void) -> i64,
    step: impl Fn(&KernelLayout, &NotifierWalk) -> bool,
) {
    if LOOP {
        // SAFETY: `callback` is a function of this program with bpf_loop's callback
        // signature; it takes no context (null), and finds the walk's state in its map.
        unsafe { bpf_loop(turns, callback as *mut c_void, null_mut(), 0) };
        return;
    }
    let l = layout();
    for _ in 0..turns {
        if !step(l, walk) {
            return;
        }
    }
}

/// `step` as a `bpf_loop` callback: 0 to go on, 1 to stop.
#[inline(always)]
fn callback_turn(step: impl Fn(&KernelLayout, &NotifierWalk) -> bool) -> i64 {
    match NotifierWalk::held() {
        Some(walk) if step(layout(), &walk) => 0,
        _ => 1,
    }
}

#[inline(never)]
extern "C" fn list_step_callback(_index: u64, _ctx: *mut c_void) -> i64 {
    callback_turn(list_step)
}

#[inline(never)]
extern "C" fn tree_step_callback(_index: u64, _ctx: *mut c_void) -> i64 {
    callback_turn(tree_step)
}

/// The list walk's only step: name the classic notifier at the walk's node, if a name slot
/// is left, and go to the next. False once the list or the count has ended.
#[inline(always)]
fn list_step(l: &KernelLayout, walk: &NotifierWalk) -> bool {
    let (node, _) = walk.at();
    if node == 0 || walk.count() >= MAX_NOTIFIERS_COUNTED {
        return false;
    }
    let notifier = node - u64::from(l.notifier_hlist);
    if (walk.count() as usize) < MAX_NOTIFIERS {
        let ops = read::<u64>(notifier, l.notifier_ops).unwrap_or(0);
        walk.name(read(ops, l.ops_invalidate_range_start).unwrap_or(0));
    } else {
        walk.name(0);
    }
    walk.go(read(node, l.hlist_node_next).unwrap_or(0), LIST);
    true
}

/// Most steps of the interval-tree walk. Started at the leftmost node, an in-order walk by
/// parent pointers crosses each edge at most twice, so n visits take at most n + 2(n − 1)
/// steps, and the step that finds no parent above the rightmost one ends it: 3n in all.
const MAX_TREE_STEPS: u32 = 3 * MAX_NOTIFIERS_COUNTED;

/// The walks' steps. The list's: name the notifier at `node` and go to the next. The tree's:
/// name the notifier at `node`, go down to the leftmost node of its subtree, or climb to the
/// ancestor that comes next.
const LIST: u32 = 0;
const VISIT: u32 = 1;
const DESCEND: u32 = 2;
const CLIMB: u32 = 3;

/// One step (an edge, or a visit) of the in-order walk of `subscriptions->itree`, counting
/// and naming interval notifiers after the classic ones. False once the walk is over.
#[inline(always)]
fn tree_step(l: &KernelLayout, walk: &NotifierWalk) -> bool {
    let (node, step) = walk.at();
    if node == 0 || walk.count() >= MAX_NOTIFIERS_COUNTED {
        return false;
    }
    match step {
        VISIT => {
            let notifier = node - u64::from(l.interval_notifier_rb);
            walk.name(interval_callback(l, notifier));
            match read_word(node, l.rb_right) {
                0 => walk.go(node, CLIMB),
                right => walk.go(right, DESCEND),
            }
        }
        DESCEND => match read_word(node, l.rb_left) {
            0 => walk.go(node, VISIT),
            left => walk.go(left, DESCEND),
        },
        _ => {
            let parent = read_word(node, l.rb_parent_color) & !RB_COLOR_MASK;
            // A left child's parent comes next; a right child's was visited already.
            if parent != 0 && read_word(parent, l.rb_right) != node {
                walk.go(parent, VISIT);
            } else {
                walk.go(parent, CLIMB);
            }
        }
    }
    true
}

/// An interval notifier's callback: `ops->invalidate`, or `ops->invalidate_start` where the
/// kernel has that instead.
#[inline(always)]
fn interval_callback(l: &KernelLayout, notifier: u64) -> u64 {
    let ops = read_word(notifier, l.interval_notifier_ops);
    match read_word(ops, l.interval_ops_invalidate) {
        0 => read_word(ops, l.interval_ops_invalidate_start),
        callback => callback,
    }
}

/// Most steps up or down an rb-tree between two nodes in [`rb_next`]: an rb-tree of n nodes
/// is at most 2·log2(n + 1) deep, so 10 covers any lock's waiter tree of up to 30 tasks.
const MAX_RB_DEPTH: u32 = 10;

/// The in-order successor of an rb-tree node (lib/rbtree.c `rb_next`), or 0.
#[inline(always)]
fn rb_next(l: &KernelLayout, node: u64) -> u64 {
    let right = read::<u64>(node, l.rb_right).unwrap_or(0);
    if right != 0 {
        // Down to the leftmost node of the right subtree.
        let mut next = right;
        for _ in 0..MAX_RB_DEPTH {
            match read::<u64>(next, l.rb_left).unwrap_or(0) {
                0 => return next,
                left => next = left,
            }
        }
        return next;
    }
    // Up while we are a right child: the first ancestor we reach from its left is next.
    let mut child = node;
    for _ in 0..MAX_RB_DEPTH {
        let parent = read::<u64>(child, l.rb_parent_color).unwrap_or(0) & !RB_COLOR_MASK;
        if parent == 0 {
            return 0;
        }
        if read::<u64>(parent, l.rb_right).unwrap_or(0) != child {
            return parent;
        }
        child = parent;
    }
    0
}

/// The colour bit in `rb_node::__rb_parent_color` (and a spare one; pointers are aligned).
const RB_COLOR_MASK: u64 = 0x3;

/// Snapshots `mm->mmap_lock`: count, owner, and the first queued waiters.
#[inline(always)]
pub fn lock_state(mm: u64, state: &mut LockState) {
    let l = layout();
    if l.mm_mmap_lock == ABSENT {
        return;
    }
    let sem = mm + u64::from(l.mm_mmap_lock);
    if l.rwsem_count == ABSENT {
        rt_lock_state(l, sem, state);
        return;
    }
    let (Some(count), Some(owner)) = (
        read::<u64>(sem, l.rwsem_count),
        read::<u64>(sem, l.rwsem_owner),
    ) else {
        return;
    };
    state.count = count;
    state.owner_raw = owner;
    state.flags |= lock_flags::READ;
    let owner_task = owner & !RWSEM_OWNER_FLAGS_MASK;
    if let Some((pid, tgid)) = task::ids(owner_task) {
        state.owner_pid = pid;
        state.owner_tgid = tgid;
        task::comm(owner_task, &mut state.owner_comm);
        state.flags |= lock_flags::OWNER_TASK;
    }
    walk_waiters(l, sem, state);
}

/// Whether a new reader of `mm->mmap_lock` would wait now: a writer holds it or tasks queue
/// on it (`RWSEM_WRITER_LOCKED`, `RWSEM_FLAG_WAITERS`); on PREEMPT_RT, a writer owns its
/// rtmutex or has taken the readers' bias away. `None` where the lock cannot be read.
#[inline(always)]
pub fn lock_blocks_readers(mm: u64) -> Option<bool> {
    let l = layout();
    if l.mm_mmap_lock == ABSENT {
        return None;
    }
    let sem = mm + u64::from(l.mm_mmap_lock);
    if l.rwsem_count != ABSENT {
        let count = read::<u64>(sem, l.rwsem_count)?;
        return Some(count & (RWSEM_WRITER_LOCKED | RWSEM_FLAG_WAITERS) != 0);
    }
    if l.rt_readers == ABSENT {
        return None;
    }
    let readers = read::<u32>(sem, l.rt_readers)?;
    let owner = read::<u64>(sem, l.rt_owner)?;
    // READER_BIAS is present while no writer is about: readers take the fast path.
    Some(owner != 0 || u64::from(readers) & RT_READER_BIAS == 0)
}

/// PREEMPT_RT's `rw_semaphore` (a `rwbase_rt`): its reader count, the rtmutex's owner (a
/// writer, holding the lock or waiting for readers to drain) and the tasks blocked on the
/// rtmutex, in its tree's order (the first to get it first).
#[inline(always)]
fn rt_lock_state(l: &KernelLayout, sem: u64, state: &mut LockState) {
    if l.rt_readers == ABSENT {
        return;
    }
    let (Some(readers), Some(owner)) =
        (read::<u32>(sem, l.rt_readers), read::<u64>(sem, l.rt_owner))
    else {
        return;
    };
    state.count = u64::from(readers);
    state.owner_raw = owner;
    state.flags |= lock_flags::READ | lock_flags::RT;
    if let Some((pid, tgid)) = task::ids(owner & !RT_MUTEX_HAS_WAITERS) {
        state.owner_pid = pid;
        state.owner_tgid = tgid;
        task::comm(owner & !RT_MUTEX_HAS_WAITERS, &mut state.owner_comm);
        state.flags |= lock_flags::OWNER_TASK;
    }
    state.flags |= lock_flags::WAITERS;
    let mut node = read::<u64>(sem, l.rt_waiters_leftmost).unwrap_or(0);
    for i in 0..=MAX_WAITERS {
        if node == 0 {
            return;
        }
        let Some(slot) = state.waiters.get_mut(i) else {
            state.waiters_truncated = 1;
            return;
        };
        let waiter = node - u64::from(l.rt_waiter_entry);
        let task = read::<u64>(waiter, l.rt_waiter_task).unwrap_or(0);
        slot.pid = task::ids(task).map_or(0, |(pid, _)| pid);
        // An rtmutex waiter does not say whether it wants to read or write.
        slot.waiter_type = u32::MAX;
        task::comm(task, &mut slot.comm);
        state.waiter_count += 1;
        node = rb_next(l, node);
    }
}

/// `rt_mutex_base::owner`'s flag bit: the rtmutex has waiters.
const RT_MUTEX_HAS_WAITERS: u64 = 1;

/// Lists up to [`MAX_WAITERS`] tasks queued on the rwsem at `sem`.
#[inline(always)]
fn walk_waiters(l: &KernelLayout, sem: u64, state: &mut LockState) {
    if l.waiter_task == ABSENT || l.list_head_next == ABSENT {
        return;
    }
    let list_offset = u64::from(if l.waiter_list == ABSENT {
        0
    } else {
        l.waiter_list
    });
    // Until 7.x the waiters hang off `sem->wait_list`, a list head that ends the walk;
    // since, `sem->first_waiter` points at the first waiter, whose list links the others in
    // a ring that ends back at it.
    let (mut node, end, end_is_head) = if l.rwsem_wait_list != ABSENT {
        let head = sem + u64::from(l.rwsem_wait_list);
        let Some(first) = read::<u64>(head, l.list_head_next) else {
            return;
        };
        (first, head, true)
    } else if l.rwsem_first_waiter != ABSENT {
        let Some(first) = read::<u64>(sem, l.rwsem_first_waiter) else {
            return;
        };
        if first == 0 {
            state.flags |= lock_flags::WAITERS;
            return;
        }
        (first + list_offset, first + list_offset, false)
    } else {
        return;
    };
    state.flags |= lock_flags::WAITERS;
    for i in 0..=MAX_WAITERS {
        if node == 0 || (node == end && (end_is_head || i > 0)) {
            return;
        }
        let Some(slot) = state.waiters.get_mut(i) else {
            state.waiters_truncated = 1;
            return;
        };
        // Branchless reads (0 where one faults): each `Option` a turn carries doubles the
        // paths the verifier checks through the rest of the walk.
        let waiter = node - list_offset;
        let task = read_word(waiter, l.waiter_task);
        slot.pid = read_or_zero(task, l.task_pid);
        slot.waiter_type = read(waiter, l.waiter_type).unwrap_or(u32::MAX);
        task::comm(task, &mut slot.comm);
        state.waiter_count += 1;
        node = read_word(node, l.list_head_next);
    }
}
