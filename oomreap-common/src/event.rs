//! Event records the kernel programs send through the [`crate::maps::EVENTS`] ring buffer.

/// Length of a kernel task name (`TASK_COMM_LEN`), NUL-padded.
pub const COMM_LEN: usize = 16;

/// What follows an [`EventHeader`]. Discriminants start at 1 so an all-zero record never
/// decodes as a valid event.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`MarkVictimEvent`]: `oom:mark_victim`, the OOM killer chose a victim.
    MarkVictim = 1,
    /// [`ReaperEvent`]: `oom:wake_reaper`, the reaper's timer queued the victim.
    WakeReaper = 2,
    /// [`ReaperEvent`]: `oom:start_task_reaping`, an attempt got the lock and reaps.
    StartReaping = 3,
    /// [`FinishReapingEvent`]: `oom:finish_task_reaping`, that reap pass ended.
    FinishReaping = 4,
    /// [`SkipReapingEvent`]: `oom:skip_task_reaping`, an attempt did not reap, and why.
    SkipReaping = 5,
    /// [`LockAttemptEvent`]: `mmap_lock:mmap_lock_acquire_returned` by the oom_reaper or a
    /// process_mrelease caller.
    LockAttempt = 6,
    /// [`ExitMmapEvent`]: `mmap:exit_mmap` of a victim's mm: its memory is gone.
    ExitMmap = 7,
    /// [`MreleaseEvent`]: one process_mrelease(2) call, from entry to return.
    Mrelease = 8,
    /// [`ScoreAdjEvent`]: `oom:oom_score_adj_update`.
    ScoreAdjUpdate = 9,
    /// [`RetryCountsEvent`]: reclaim and compaction retries counted in the kernel, read by user
    /// space when a victim is marked (never sent by the kernel programs themselves).
    RetryCounts = 10,
    /// [`ReapCallEvent`]: one call of `__oom_reap_task_mm`, by the oom_reaper or by
    /// process_mrelease, seen by fentry/fexit or kprobe/kretprobe: exact start, end and result.
    ReapCall = 11,
    /// [`NotifierRefusedEvent`]: during a reap, `__mmu_notifier_invalidate_range_start`
    /// failed: an mmu notifier refused the non-blocking invalidation, so a VMA was skipped.
    NotifierRefused = 12,
    /// [`OomCandidatesEvent`]: the processes `oom_badness` weighed in the evaluation that
    /// chose a victim, sent as `oom_kill_process` is entered (function hooks only).
    OomCandidates = 13,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::MarkVictim,
            2 => Self::WakeReaper,
            3 => Self::StartReaping,
            4 => Self::FinishReaping,
            5 => Self::SkipReaping,
            6 => Self::LockAttempt,
            7 => Self::ExitMmap,
            8 => Self::Mrelease,
            9 => Self::ScoreAdjUpdate,
            10 => Self::RetryCounts,
            11 => Self::ReapCall,
            12 => Self::NotifierRefused,
            13 => Self::OomCandidates,
            unknown => return Err(unknown),
        })
    }
}

/// How a hook was attached; recorded in each event so user space knows which fields to trust.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// `tp_btf`: typed arguments, kernel structures read through BTF offsets.
    BtfTracePoint = 1,
    /// Classic tracepoint: only what the tracepoint's record carries.
    TracePoint = 2,
    /// fentry/fexit: a BPF trampoline on a kernel function, with its typed arguments and
    /// return value.
    Fentry = 3,
    /// kprobe/kretprobe on a kernel function: arguments and return value from registers.
    Kprobe = 4,
}

impl AttachKind {
    /// Every kind, in discriminant order.
    pub const ALL: [Self; 4] = [
        Self::BtfTracePoint,
        Self::TracePoint,
        Self::Fentry,
        Self::Kprobe,
    ];

    /// Its machine-readable name, as in JSON output, recordings and metric labels.
    pub const fn id(self) -> &'static str {
        match self {
            Self::BtfTracePoint => "btf_tracepoint",
            Self::TracePoint => "tracepoint",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }

    /// The kind whose [`AttachKind::id`] is `id`.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.id() == id)
    }
}

impl TryFrom<u32> for AttachKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::BtfTracePoint),
            2 => Ok(Self::TracePoint),
            3 => Ok(Self::Fentry),
            4 => Ok(Self::Kprobe),
            unknown => Err(unknown),
        }
    }
}

/// The start of every record.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Zero. Held the emitting CPU until nothing read it; kept so the layout, and recordings
    /// made before, stay as they were.
    pub _reserved: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub timestamp_ns: u64,
}

/// Bits of [`MarkVictimEvent::fields`]: which optional fields hold real values.
pub mod mark_victim_fields {
    pub const TGID: u32 = 1 << 0;
    pub const COMM: u32 = 1 << 1;
    pub const UID: u32 = 1 << 2;
    pub const MEMORY: u32 = 1 << 3;
    pub const OOM_SCORE_ADJ: u32 = 1 << 4;
    pub const MM: u32 = 1 << 5;
    pub const MEMCG: u32 = 1 << 6;
    /// `notifier_count` and `notifiers` were read (the mm may still have none).
    pub const NOTIFIERS: u32 = 1 << 7;
    /// `parent_tgid` was read.
    pub const PARENT: u32 = 1 << 8;
    /// The trigger's memory cgroups were walked up for one at its limit.
    pub const DOMAIN_WALKED: u32 = 1 << 9;
    /// One was: `domain_memcg_id`, `domain_usage_kib` and `domain_limit_kib` are its.
    pub const DOMAIN: u32 = 1 << 10;
    /// `swap_kib` was read.
    pub const SWAP: u32 = 1 << 11;
    /// The domain, `constraint`, `chosen_points` and `total_pages` are the OOM killer's own
    /// (a hook on `oom_kill_process`), not derived.
    pub const EXACT: u32 = 1 << 12;
    /// `trigger_stack_frames` frames of `trigger_stack` were read.
    pub const TRIGGER_STACK: u32 = 1 << 13;
    /// The kernel named them too: `trigger_frame_names` holds one name per frame.
    pub const TRIGGER_STACK_NAMED: u32 = 1 << 14;
    /// `trigger_user_frames` frames of `trigger_user_stack` were read.
    pub const TRIGGER_USER_STACK: u32 = 1 << 15;
    /// The victim's `mmap_lock` was looked at when it was marked: `MMAP_LOCK_BLOCKS_READERS`
    /// is then meaningful.
    pub const MMAP_LOCK_READ: u32 = 1 << 16;
    /// At the kill, a new reader of the victim's `mmap_lock` would have waited: a writer held
    /// it or tasks were queued on it. Reading the victim's smaps then would queue behind them
    /// holding a reference to its mm, so that its teardown would run in the reader.
    pub const MMAP_LOCK_BLOCKS_READERS: u32 = 1 << 17;
}

/// Most notifier callbacks a [`MarkVictimEvent`] names.
pub const MAX_NOTIFIERS: usize = 4;

/// Most kernel stack frames of the trigger a [`MarkVictimEvent`] carries: enough to reach the
/// allocation that hit the limit (a page fault's charge is about 20 frames below the kill).
pub const MAX_STACK_FRAMES: usize = 32;

/// Most user stack frames of the trigger a [`MarkVictimEvent`] carries.
pub const MAX_USER_FRAMES: usize = 16;

/// Bytes of one frame's name (`function+0xoff/0xsize [module]`, NUL-terminated), cut there.
pub const FRAME_NAME_LEN: usize = 64;

/// `oom:mark_victim`: the OOM killer marked `victim_pid` as its victim.
///
/// Fired in the context of the task that hit the OOM (the trigger), which is often, not always,
/// the victim. Memory sizes are KiB, as in the kernel's own OOM report.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MarkVictimEvent {
    pub header: EventHeader,
    /// The victim task's pid (a thread id: the kernel may pick a non-leader thread).
    pub victim_pid: u32,
    /// The victim's thread group id (the "process id"); valid with `fields::TGID`.
    pub victim_tgid: u32,
    /// Valid with `fields::UID`.
    pub uid: u32,
    /// Valid with `fields::OOM_SCORE_ADJ`.
    pub oom_score_adj: i32,
    /// The next five are valid with `fields::MEMORY`.
    pub total_vm_kib: u64,
    pub anon_rss_kib: u64,
    pub file_rss_kib: u64,
    pub shmem_rss_kib: u64,
    pub pgtables_kib: u64,
    /// Kernel address of the victim's `mm_struct`, to correlate later events; valid with
    /// `fields::MM`.
    pub victim_mm: u64,
    /// The task running when the OOM was declared.
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    /// Valid with `fields::COMM`.
    pub victim_comm: [u8; COMM_LEN],
    pub trigger_comm: [u8; COMM_LEN],
    /// An [`AttachKind`] value.
    pub attach: u32,
    /// Bits from [`mark_victim_fields`].
    pub fields: u32,
    /// Kernel id of the victim's memory cgroup (`kernfs_node::id`: the cgroup directory's
    /// inode number); valid with `fields::MEMCG`.
    pub memcg_id: u64,
    /// How many mmu notifiers the victim's mm has (counted up to 255); valid with
    /// `fields::NOTIFIERS`.
    pub notifier_count: u32,
    /// The victim's parent process (`real_parent->tgid`), so `run --descendants` can place a
    /// victim that is gone by the time user space looks; valid with `fields::PARENT`.
    pub parent_tgid: u32,
    /// Kernel addresses of the first notifiers' callbacks (0 when unset): classic ones'
    /// `ops->invalidate_range_start`, then interval ones' `ops->invalidate`.
    pub notifiers: [u64; MAX_NOTIFIERS],
    /// The OOM domain, derived from the trigger: the lowest of its memory cgroups at its
    /// limit (`fields::DOMAIN`), or none of them (`fields::DOMAIN_WALKED` alone: the machine).
    pub domain_memcg_id: u64,
    pub domain_usage_kib: u64,
    pub domain_limit_kib: u64,
    /// The victim's swapped-out memory (`MM_SWAPENTS`), for its badness; with `fields::SWAP`.
    pub swap_kib: u64,
    /// From the OOM killer's own `oom_control` (`fields::EXACT`): an `enum oom_constraint`
    /// value, the victim's badness points and the pages it was measured against.
    pub constraint: u32,
    /// How many of `notifier_count` are interval notifiers (RDMA ODP, HMM mirrors, GPU
    /// userptr): the last ones listed in `notifiers`, after the classic ones. Zero in records
    /// from before oomreap walked them.
    pub interval_notifiers: u32,
    pub chosen_points: i64,
    pub total_pages: u64,
    /// How many frames of `trigger_stack` and `trigger_user_stack` are valid, with
    /// `fields::TRIGGER_STACK` and `fields::TRIGGER_USER_STACK`.
    pub trigger_stack_frames: u32,
    pub trigger_user_frames: u32,
    /// The trigger's kernel stack when the victim was marked (`bpf_get_stack`), innermost
    /// first: return addresses, from the tracepoint's own frames down through the OOM
    /// killer to the allocation that hit the limit.
    pub trigger_stack: [u64; MAX_STACK_FRAMES],
    /// The trigger's user stack (`BPF_F_USER_STACK`): instruction pointers, innermost first,
    /// as far as frame pointers lead.
    pub trigger_user_stack: [u64; MAX_USER_FRAMES],
    /// The kernel's own name for each of `trigger_stack` (`%pB`, as /proc/PID/stack prints
    /// frames), NUL-terminated; with `fields::TRIGGER_STACK_NAMED`.
    pub trigger_frame_names: [[u8; FRAME_NAME_LEN]; MAX_STACK_FRAMES],
}

/// Size of a [`MarkVictimEvent`] before it carried the OOM domain: such records (in older
/// recordings) decode with the domain unknown.
pub const MARK_VICTIM_EVENT_V1_SIZE: usize = 176;

/// Size of a [`MarkVictimEvent`] before it carried the trigger's stacks.
pub const MARK_VICTIM_EVENT_V2_SIZE: usize = MARK_VICTIM_EVENT_V1_SIZE + 7 * 8;

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 16);
    assert!(
        MARK_VICTIM_EVENT_V1_SIZE
            == 16 + 16 + 6 * 8 + 8 + 2 * COMM_LEN + 8 + 16 + 8 * MAX_NOTIFIERS
    );
    assert!(
        core::mem::size_of::<MarkVictimEvent>()
            == MARK_VICTIM_EVENT_V2_SIZE
                + 8
                + 8 * (MAX_STACK_FRAMES + MAX_USER_FRAMES)
                + FRAME_NAME_LEN * MAX_STACK_FRAMES
    );
    assert!(core::mem::align_of::<MarkVictimEvent>() <= 8);
};

/// `oom:wake_reaper` and `oom:start_task_reaping`: a victim's pid and who ran.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReaperEvent {
    pub header: EventHeader,
    /// The victim (the task `mark_victim` named).
    pub victim_pid: u32,
    /// The running task: the oom_reaper kthread for start, whatever was interrupted by the
    /// timer for wake (meaningless there).
    pub current_pid: u32,
}

/// Bits of [`FinishReapingEvent::fields`].
pub mod finish_fields {
    /// The RSS fields hold the mm's counters after the reap pass.
    pub const RSS: u32 = 1 << 0;
}

/// `oom:finish_task_reaping`, with the mm's RSS after the pass.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FinishReapingEvent {
    pub header: EventHeader,
    pub victim_pid: u32,
    pub current_pid: u32,
    pub anon_rss_kib: u64,
    pub file_rss_kib: u64,
    pub shmem_rss_kib: u64,
    /// Bits from [`finish_fields`].
    pub fields: u32,
    pub _pad: u32,
}

/// Why an attempt emitted `oom:skip_task_reaping`. Both causes share the one tracepoint; the
/// kernel programs tell them apart by the reaper's trylock just before.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipCause {
    /// `mmap_read_trylock` failed: someone holds or waits for the victim's mmap_lock.
    LockContended = 1,
    /// The trylock succeeded but the mm already had `MMF_OOM_SKIP`: the victim's memory is
    /// being (or was) torn down by exit_mmap or process_mrelease.
    AlreadySkipped = 2,
    /// No trylock record was seen for this mm (e.g. classic tracepoints without BTF).
    Unknown = 3,
}

impl SkipCause {
    /// Every cause, in the order totals and metrics list them.
    pub const ALL: [Self; 3] = [Self::LockContended, Self::AlreadySkipped, Self::Unknown];

    /// The name used in JSON, metric labels and totals.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LockContended => "lock_contended",
            Self::AlreadySkipped => "mmf_oom_skip",
            Self::Unknown => "unknown",
        }
    }
}

impl TryFrom<u32> for SkipCause {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::LockContended),
            2 => Ok(Self::AlreadySkipped),
            3 => Ok(Self::Unknown),
            unknown => Err(unknown),
        }
    }
}

/// Most waiters a [`LockState`] lists.
pub const MAX_WAITERS: usize = 8;

/// A task queued on an rwsem.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockWaiter {
    pub pid: u32,
    /// `enum rwsem_waiter_type`: 0 write, 1 read.
    pub waiter_type: u32,
    pub comm: [u8; COMM_LEN],
}

/// `sem->owner` flag bits (kernel/locking/rwsem.c): the rest is the task pointer. Two since
/// 5.11 (reader-owned, non-spinnable); three in 5.10 (reader-owned, and read and write
/// non-spinnable), where masking two left the pointer 4 bytes off (a reader's comm read as
/// "eap-reader"). A task_struct is cache-line aligned, so three bits are always flags.
pub const RWSEM_OWNER_FLAGS_MASK: u64 = 0x7;

/// `sem->owner`'s bit for a reader-owned rwsem: the task is the last reader to take it.
pub const RWSEM_READER_OWNED: u64 = 1 << 0;

/// `sem->count` bits (kernel/locking/rwsem.c, 5.3+): a writer holds it, tasks wait on it, a
/// waiter was handed it; the readers are counted from bit 8.
pub const RWSEM_WRITER_LOCKED: u64 = 1 << 0;
pub const RWSEM_FLAG_WAITERS: u64 = 1 << 1;
pub const RWSEM_FLAG_HANDOFF: u64 = 1 << 2;
pub const RWSEM_READER_SHIFT: u32 = 8;

/// PREEMPT_RT's `rwbase_rt` `readers` (include/linux/rwbase_rt.h): `READER_BIAS` is there
/// while no writer is about; a writer takes it away, waits for the readers to drain, then
/// holds the lock at exactly `WRITER_BIAS`.
pub const RT_READER_BIAS: u64 = 1 << 31;
pub const RT_WRITER_BIAS: u64 = 1 << 30;

/// `MMF_OOM_SKIP` in `mm->flags` (include/linux/mm_types.h, a define no BTF carries): the mm
/// is being torn down or was reaped, and the OOM killer and reaper pass it over.
pub const MMF_OOM_SKIP_BIT: u32 = 21;

/// Bits of [`LockState::flags`].
pub mod lock_flags {
    /// `count`, `owner_raw` and the owner fields were read.
    pub const READ: u32 = 1 << 0;
    /// The owner task's pid and comm were read.
    pub const OWNER_TASK: u32 = 1 << 1;
    /// The waiter list was walked.
    pub const WAITERS: u32 = 1 << 2;
    /// A PREEMPT_RT lock (`struct rwbase_rt`): `count` is `readers` (`READER_BIAS` set while
    /// no writer has it; `WRITER_BIAS` while one holds it; below `WRITER_BIAS` while one
    /// waits for the readers to drain), `owner_raw` the rtmutex's owner (that writer; bit 0:
    /// it has waiters), and the waiters are the rtmutex's, of unknown kind.
    pub const RT: u32 = 1 << 3;
}

/// A snapshot of the victim's `mm->mmap_lock` (a `struct rw_semaphore`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// `sem->count`: bit 0 writer-locked, bit 1 waiters, bit 2 handoff, bits 8.. readers.
    pub count: u64,
    /// `sem->owner`: task pointer with flag bits 0 (reader-owned) and 1 (non-spinnable).
    pub owner_raw: u64,
    pub owner_pid: u32,
    pub owner_tgid: u32,
    pub owner_comm: [u8; COMM_LEN],
    /// Bits from [`lock_flags`].
    pub flags: u32,
    /// Waiters listed in `waiters` (at most [`MAX_WAITERS`]).
    pub waiter_count: u32,
    /// 1 if the list had more waiters than could be listed.
    pub waiters_truncated: u32,
    pub _pad: u32,
    pub waiters: [LockWaiter; MAX_WAITERS],
}

/// `oom:skip_task_reaping`, with its cause and, for a contended lock, the lock's state.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SkipReapingEvent {
    pub header: EventHeader,
    pub victim_pid: u32,
    pub current_pid: u32,
    /// A [`SkipCause`] value.
    pub cause: u32,
    /// 1 if `cause` was read from the lock itself (no trylock hook): where the reaper held
    /// this lock in an earlier pass, the owner field it left may still name it.
    pub cause_from_lock: u32,
    /// The victim's mm (0 if unknown).
    pub mm: u64,
    /// `mm->flags` word 0 (0 if unknown).
    pub mm_flags: u64,
    pub lock: LockState,
}

/// `mmap_lock:mmap_lock_acquire_returned` by the oom_reaper or a process_mrelease caller.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockAttemptEvent {
    pub header: EventHeader,
    pub mm: u64,
    pub caller_pid: u32,
    pub caller_tgid: u32,
    /// 1 for a write lock.
    pub write: u32,
    /// 1 if the lock was taken.
    pub success: u32,
    /// 1 if the caller is the oom_reaper kthread, 0 for a process_mrelease caller.
    pub by_reaper: u32,
    /// The victim whose mm this is, if it is one (0 otherwise).
    pub victim_pid: u32,
}

/// `mmap:exit_mmap` of a victim's mm.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExitMmapEvent {
    pub header: EventHeader,
    pub mm: u64,
    pub victim_pid: u32,
    /// The task that dropped the last mm user: often the victim, sometimes another.
    pub current_pid: u32,
    pub current_tgid: u32,
    pub _pad: u32,
    pub current_comm: [u8; COMM_LEN],
}

/// One process_mrelease(2) call: header time is the return.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MreleaseEvent {
    pub header: EventHeader,
    pub entered_ns: u64,
    /// Return value: 0, -EAGAIN (partial), -EINVAL (not dying), -ESRCH, -EINTR, …
    pub ret: i64,
    /// The mm it locked, learned from its mmap_lock attempt (0 if none was seen).
    pub mm: u64,
    pub caller_pid: u32,
    pub caller_tgid: u32,
    pub caller_comm: [u8; COMM_LEN],
    /// The pidfd argument (a descriptor of the caller's).
    pub pidfd: i32,
    /// The victim whose mm it released, when that mm belongs to one (0 otherwise).
    pub victim_pid: u32,
    /// Bits from [`mrelease_fields`]: which of the fields below hold real values.
    pub fields: u32,
    /// The target: the mm's owner task (`mm->owner`), read as the call took its lock.
    pub target_pid: u32,
    pub target_tgid: u32,
    pub target_comm: [u8; COMM_LEN],
    pub _pad: u32,
    /// The target's memory cgroup (as [`MarkVictimEvent::memcg_id`]).
    pub target_memcg_id: u64,
    /// The mm's RSS as the call took its lock, and as it returned.
    pub rss_before_anon_kib: u64,
    pub rss_before_file_kib: u64,
    pub rss_before_shmem_kib: u64,
    pub rss_after_anon_kib: u64,
    pub rss_after_file_kib: u64,
    pub rss_after_shmem_kib: u64,
}

/// Size of a [`MreleaseEvent`] before it named its target: such records (in older
/// recordings) decode with every target field unknown.
pub const MRELEASE_EVENT_V1_SIZE: usize = 72;

/// Bits of [`MreleaseEvent::fields`].
pub mod mrelease_fields {
    /// `target_pid`, `target_tgid` and `target_comm`.
    pub const TARGET: u32 = 1 << 0;
    pub const MEMCG: u32 = 1 << 1;
    pub const RSS_BEFORE: u32 = 1 << 2;
    pub const RSS_AFTER: u32 = 1 << 3;
}

/// One call of `__oom_reap_task_mm`: header time is its return.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReapCallEvent {
    pub header: EventHeader,
    pub entered_ns: u64,
    /// The mm reaped.
    pub mm: u64,
    pub caller_pid: u32,
    pub caller_tgid: u32,
    pub caller_comm: [u8; COMM_LEN],
    /// The victim whose mm this is, if it is one (0 otherwise).
    pub victim_pid: u32,
    /// 1 if the function returned true: every VMA was reaped. 0: some VMA was skipped
    /// because an mmu notifier refused, and the reaper will try again.
    pub complete: u32,
    /// 1 if the caller is the oom_reaper kthread, 0 for process_mrelease.
    pub by_reaper: u32,
    /// An [`AttachKind`]: `Fentry` or `Kprobe`.
    pub attach: u32,
    /// Notifier refusals seen during this call.
    pub refusals: u32,
    /// 1 if the caller (not the reaper) had already left its own mm: an exiting task, whose
    /// exit_mmap reaps an OOM victim itself before 6.0. 0 for process_mrelease, and in
    /// records from before this was read.
    pub by_exit: u32,
}

/// `__mmu_notifier_invalidate_range_start` failed inside a reap.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NotifierRefusedEvent {
    pub header: EventHeader,
    pub mm: u64,
    /// The range whose invalidation was refused (0 if unknown).
    pub start: u64,
    pub end: u64,
    pub caller_pid: u32,
    /// The victim whose mm this is, if it is one (0 otherwise).
    pub victim_pid: u32,
    /// The error returned (-EAGAIN).
    pub ret: i32,
    /// An [`AttachKind`]: `Fentry` or `Kprobe`.
    pub attach: u32,
    /// How many notifiers the mm has (counted up to 255); 0 with `notifiers` unread if the
    /// kernel's layout is unknown.
    pub notifier_count: u32,
    /// How many of them are interval notifiers, listed after the classic ones (as in
    /// [`MarkVictimEvent::interval_notifiers`]).
    pub interval_notifiers: u32,
    /// The mm's first notifiers' callbacks (`ops->invalidate_range_start` of classic ones,
    /// `ops->invalidate` of interval ones): one of them refused.
    pub notifiers: [u64; MAX_NOTIFIERS],
}

/// Most candidates an [`OomCandidatesEvent`] lists: those with the most points.
pub const MAX_OOM_CANDIDATES: usize = 8;

/// Most processes with a negative `oom_score_adj` an [`OomCandidatesEvent`] lists besides:
/// those with the most memory, whatever their points, so that a large process the
/// adjustment spared is named even when it falls out of the first list.
pub const MAX_OOM_SPARED: usize = 4;

/// One process as `oom_badness(p, totalpages)` weighed it, read at its return.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OomCandidate {
    /// What `oom_badness` returned: `i64::MIN` (`LONG_MIN`) for a process it passed over
    /// (`oom_score_adj` -1000, `MMF_OOM_SKIP`, in vfork, or no thread with an mm left).
    pub points: i64,
    pub rss_kib: u64,
    pub swap_kib: u64,
    pub pgtables_kib: u64,
    /// Kernel id of its memory cgroup (0 unknown).
    pub memcg_id: u64,
    /// `mm->flags` (0 without an mm): `MMF_OOM_SKIP` tells an earlier victim.
    pub mm_flags: u64,
    pub pid: u32,
    pub tgid: u32,
    pub oom_score_adj: i32,
    /// 1 if the task had an mm (a leader that exited has none; its threads may).
    pub has_mm: u32,
    pub comm: [u8; COMM_LEN],
}

/// The OOM killer's own evaluation behind one kill: `oom_badness` hooked (fexit or
/// kretprobe) between `out_of_memory`'s entry and `oom_kill_process`, whose entry sends it.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OomCandidatesEvent {
    pub header: EventHeader,
    /// The process chosen (`oc->chosen`'s tgid): the `mark_victim` that follows names it.
    pub chosen_tgid: u32,
    /// How many processes `oom_badness` weighed in all.
    pub weighed: u32,
    /// The pages weighed against (`totalpages`).
    pub total_pages: u64,
    /// Valid entries of `candidates`, in no particular order.
    pub count: u32,
    /// An [`AttachKind`]: `Fentry` or `Kprobe`.
    pub attach: u32,
    pub candidates: [OomCandidate; MAX_OOM_CANDIDATES],
    /// Valid entries of `spared`: processes with `oom_score_adj` below 0 and the most memory
    /// (RSS, swap and page tables), in no particular order; some may be in `candidates` too.
    pub spared_count: u32,
    pub _pad: u32,
    pub spared: [OomCandidate; MAX_OOM_SPARED],
}

/// `oom:oom_score_adj_update`: someone changed a task's `oom_score_adj`.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ScoreAdjEvent {
    pub header: EventHeader,
    pub pid: u32,
    pub oom_score_adj: i32,
    pub comm: [u8; COMM_LEN],
    pub changer_pid: u32,
    pub changer_tgid: u32,
    pub changer_comm: [u8; COMM_LEN],
}

/// Which retry a [`RetryKey`] counts.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetryKind {
    /// `oom:reclaim_retry_zone`.
    Reclaim = 1,
    /// `oom:compact_retry`.
    Compaction = 2,
}

impl TryFrom<u32> for RetryKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::Reclaim),
            2 => Ok(Self::Compaction),
            unknown => Err(unknown),
        }
    }
}

/// Key of the in-kernel retry counters (`maps::RETRIES`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryKey {
    /// A [`RetryKind`] value.
    pub kind: u32,
    /// NUMA node (-1 for compaction, which has none).
    pub node: i32,
    /// Zone index (-1 for compaction).
    pub zone: i32,
    pub order: i32,
}

/// Most retry counters a [`RetryCountsEvent`] carries.
pub const MAX_RETRY_COUNTS: usize = 16;

/// A retry counter and its value.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryCount {
    pub key: RetryKey,
    pub count: u64,
}

/// Totals of the in-kernel retry counters at one moment (cumulative since attach).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryCountsEvent {
    pub header: EventHeader,
    pub len: u32,
    pub _pad: u32,
    pub counts: [RetryCount; MAX_RETRY_COUNTS],
}

const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<ReaperEvent>() == 24);
    assert!(size_of::<FinishReapingEvent>() == 56);
    assert!(size_of::<LockWaiter>() == 24);
    assert!(size_of::<LockState>() == 40 + 16 + MAX_WAITERS * 24);
    assert!(size_of::<SkipReapingEvent>() == 48 + size_of::<LockState>());
    assert!(size_of::<LockAttemptEvent>() == 48);
    assert!(size_of::<ExitMmapEvent>() == 56);
    assert!(size_of::<MreleaseEvent>() == MRELEASE_EVENT_V1_SIZE + 4 + 8 + 16 + 4 + 8 + 48);
    assert!(size_of::<ReapCallEvent>() == 16 + 16 + 8 + 16 + 24);
    assert!(size_of::<NotifierRefusedEvent>() == 16 + 24 + 24 + 8 * MAX_NOTIFIERS);
    assert!(size_of::<ScoreAdjEvent>() == 16 + 8 + 16 + 8 + 16);
    assert!(size_of::<OomCandidate>() == 6 * 8 + 16 + COMM_LEN);
    assert!(
        size_of::<OomCandidatesEvent>()
            == 16 + 24 + MAX_OOM_CANDIDATES * 80 + 8 + MAX_OOM_SPARED * 80
    );
    assert!(size_of::<RetryKey>() == 16);
    assert!(size_of::<RetryCountsEvent>() == 24 + 24 * MAX_RETRY_COUNTS);
    assert!(align_of::<SkipReapingEvent>() <= 8 && align_of::<RetryCountsEvent>() <= 8);
};

/// Implements `aya::Pod` for wire types.
#[cfg(feature = "user")]
macro_rules! pod {
    ($($ty:ty),+ $(,)?) => {
        $(
            // SAFETY: `repr(C)`, only integers and arrays of them, no padding (sizes are
            // asserted above): every bit pattern is a valid value.
            unsafe impl aya::Pod for $ty {}
        )+
    };
}

#[cfg(feature = "user")]
pod!(
    EventHeader,
    MarkVictimEvent,
    ReaperEvent,
    FinishReapingEvent,
    LockWaiter,
    LockState,
    SkipReapingEvent,
    LockAttemptEvent,
    ExitMmapEvent,
    MreleaseEvent,
    ReapCallEvent,
    NotifierRefusedEvent,
    OomCandidate,
    OomCandidatesEvent,
    ScoreAdjEvent,
    RetryKey,
    RetryCount,
    RetryCountsEvent,
);
