//! Decodes the records the kernel programs write into typed [`Event`]s.
//!
//! The record layouts are defined once in `oomreap_common::event`; this module checks each
//! record's length against them before reading, and turns the raw "which fields are valid"
//! bits into `Option`s so nothing downstream can mistake "unknown" for zero. The typed events
//! are here; `decode.rs` reads records into them.

/// The wire's enums are the types every layer above uses: one skip cause, one retry kind and
/// one attach kind from the kernel to every front end.
pub use oomreap_common::event::{AttachKind, RetryKind, SkipCause};

/// How long a reap pass that started may run before its finish is taken for lost: unmapping
/// a large victim, or any victim on a starved CPU, takes seconds. The tracker waits this
/// long before it calls such a pass unknown, and capture's gate keeps the hot hooks attached
/// as long, so the two never disagree.
pub const REAP_PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A task, as the kernel names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Kernel `pid`: a thread id.
    pub pid: u32,
    /// Kernel `tgid`: the process id, when known.
    pub tgid: Option<u32>,
    /// `comm`, when known.
    pub comm: Option<String>,
}

/// Memory of the victim at the moment it was chosen, in KiB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VictimMemory {
    pub total_vm_kib: u64,
    pub anon_rss_kib: u64,
    pub file_rss_kib: u64,
    pub shmem_rss_kib: u64,
    pub pgtables_kib: u64,
}

/// `oom:mark_victim`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkVictim {
    pub timestamp_ns: u64,
    pub attach: AttachKind,
    pub victim: Task,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub memory: Option<VictimMemory>,
    /// Kernel address of the victim's `mm_struct`.
    pub mm: Option<u64>,
    /// Kernel id of its memory cgroup.
    pub memcg_id: Option<u64>,
    pub notifiers: Option<Notifiers>,
    /// The victim's parent process.
    pub parent_tgid: Option<u32>,
    /// The task that hit the OOM.
    pub trigger: Task,
    /// Which limit was hit.
    pub domain: Option<OomDomain>,
    /// The victim's swapped-out memory.
    pub swap_kib: Option<u64>,
    /// The trigger's stacks at the kill; `None` in records from before oomreap read them.
    pub trigger_stacks: Option<TriggerStacks>,
    /// At the kill, a new reader of the victim's mmap_lock would have waited (a writer held
    /// it, or tasks queued on it); `None` where the kill's program could not look.
    pub mmap_lock_blocks_readers: Option<bool>,
}

/// The stacks of the task that hit the limit, as the kill's program read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerStacks {
    /// Kernel frames, innermost first, from the OOM killer out to the allocation (the
    /// tracing's own frames left out where the kernel named them).
    pub kernel: Vec<KernelFrame>,
    /// User instruction pointers, innermost first, as far as frame pointers led.
    pub user: Vec<u64>,
}

/// One kernel stack frame: a return address, and the kernel's own name for it where the
/// kernel could give one (`function+0xoffset/0xsize [module]`, 5.13+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFrame {
    pub address: u64,
    pub name: Option<String>,
}

/// Where the OOM happened: the memory cgroup whose limit was hit, or the whole machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomDomain {
    /// `None`: no cgroup of the trigger was at its limit, so the machine's memory (or, which
    /// the trigger alone cannot tell apart, a cpuset or mempolicy) ran out.
    pub memcg: Option<MemcgAtLimit>,
    /// Read from the OOM killer itself rather than derived from the trigger's cgroups: then
    /// its constraint and the victim's badness are known too.
    pub exact: Option<OomKillerRecord>,
}

/// What the OOM killer's `oom_control` said of a kill (function hooks only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomKillerRecord {
    /// `enum oom_constraint`: 0 none (global), 1 cpuset, 2 mempolicy, 3 memcg.
    pub constraint: u32,
    pub points: i64,
    pub total_pages: u64,
}

/// A memory cgroup at its limit, as the kill saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemcgAtLimit {
    pub id: u64,
    pub usage_kib: u64,
    pub limit_kib: u64,
}

impl OomDomain {
    /// The OOM killer's constraint: its own when read (`global`, `cpuset`, `mempolicy`,
    /// `memcg`), else as far as the domain shows it (`memcg` or `global`).
    pub fn constraint(&self) -> &'static str {
        match self.exact.map(|r| r.constraint) {
            Some(1) => "cpuset",
            Some(2) => "mempolicy",
            Some(3) => "memcg",
            Some(_) => "global",
            None if self.memcg.is_some() => "memcg",
            None => "global",
        }
    }
}

/// The mmu notifiers registered on a victim's mm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notifiers {
    /// How many there are, classic and interval.
    pub count: u32,
    /// How many of them are interval notifiers (RDMA ODP, HMM mirrors, GPU userptr): the
    /// kind whose callback refuses a non-blocking invalidation, and so the reaper.
    pub interval: u32,
    /// Kernel addresses of the first ones' callbacks, in the kernel's order: the classic
    /// ones' `invalidate_range_start`, then the interval ones' `invalidate`.
    pub callbacks: Vec<u64>,
}

impl Notifiers {
    /// Returns true if and only if `callbacks[index]` belongs to an interval notifier.
    pub fn is_interval(&self, index: usize) -> bool {
        index as u64 >= u64::from(self.count.saturating_sub(self.interval))
    }
}

/// `oom:wake_reaper` or `oom:start_task_reaping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaperStep {
    pub timestamp_ns: u64,
    pub victim_pid: u32,
}

/// Resident memory in KiB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rss {
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

impl Rss {
    pub fn total_kib(&self) -> u64 {
        self.anon_kib + self.file_kib + self.shmem_kib
    }
}

/// `oom:finish_task_reaping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishReaping {
    pub timestamp_ns: u64,
    pub victim_pid: u32,
    /// The mm's RSS after this reap pass.
    pub rss_after: Option<Rss>,
}

pub use oomreap_common::event::MMF_OOM_SKIP_BIT;

/// Whether `mm->flags` has `MMF_OOM_SKIP`.
pub fn has_mmf_oom_skip(mm_flags: u64) -> bool {
    mm_flags & (1 << MMF_OOM_SKIP_BIT) != 0
}

/// Whether a waiter wants the lock for reading or writing (`enum rwsem_waiter_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WaiterKind {
    Write,
    Read,
    /// A PREEMPT_RT rtmutex waiter: readers and writers block alike.
    Any,
    Unknown(u32),
}

impl WaiterKind {
    /// `write`, `read`, or `type N` for a kind this oomreap does not know.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Write => "write".into(),
            Self::Read => "read".into(),
            Self::Any => "read or write".into(),
            Self::Unknown(n) => format!("type {n}").into(),
        }
    }
}

/// A task queued on the victim's mmap_lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockWaiter {
    pub pid: u32,
    pub comm: String,
    pub kind: WaiterKind,
}

/// The task the rwsem's `owner` field names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOwner {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    /// The lock is held for reading, and this is one reader (the last to take it): a hint.
    /// Readers leave the field as it is when they unlock, except on kernels with
    /// CONFIG_DETECT_HUNG_TASK_BLOCKER or CONFIG_DEBUG_RWSEMS, where the one named clears
    /// it: there a named reader had not left yet.
    pub reader_hint: bool,
}

/// A snapshot of the victim's `mm->mmap_lock` when the reaper's trylock failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSnapshot {
    pub count_raw: u64,
    pub owner_raw: u64,
    /// A PREEMPT_RT lock (`rwbase_rt` on an rtmutex): `count_raw` is its `readers`, the
    /// owner the rtmutex's (a writer), the waiters the rtmutex's.
    pub rt: bool,
    /// `count` bit 0 (RT: `readers` is `WRITER_BIAS`).
    pub writer_locked: bool,
    /// RT only: a writer owns the rtmutex and waits for the readers to drain; read
    /// trylocks fail meanwhile.
    pub writer_pending: bool,
    /// `count` bit 1: someone is queued (typically a writer behind readers); RT: the
    /// rtmutex has waiters.
    pub waiters_queued: bool,
    /// `count` bit 2.
    pub handoff: bool,
    /// `count` bits 8..62.
    pub readers: u64,
    pub owner: Option<LockOwner>,
    /// The queue, when it could be walked.
    pub waiters: Option<Vec<LockWaiter>>,
    /// The queue had more waiters than were listed.
    pub waiters_truncated: bool,
}

impl LockSnapshot {
    /// Held for reading with no reader named: `owner` has only its flag bits, because the
    /// reader it named cleared it when it left (CONFIG_DETECT_HUNG_TASK_BLOCKER or
    /// CONFIG_DEBUG_RWSEMS). Not when it names a task that could not be read.
    pub fn reader_owned_unnamed(&self) -> bool {
        use oomreap_common::event::RWSEM_OWNER_FLAGS_MASK;
        !self.rt
            && self.owner.is_none()
            && self.readers > 0
            && self.owner_raw & 1 != 0
            && self.owner_raw & !RWSEM_OWNER_FLAGS_MASK == 0
    }
}

/// `oom:skip_task_reaping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkipReaping {
    pub timestamp_ns: u64,
    pub victim_pid: u32,
    pub cause: SkipCause,
    pub mm: Option<u64>,
    /// `mm->flags` as the tracepoint fired: proves (or disproves) `MMF_OOM_SKIP`.
    pub mm_flags: Option<u64>,
    /// Shared, not copied, with the tracker's attempt that keeps it.
    pub lock: Option<std::sync::Arc<LockSnapshot>>,
    /// `cause` was read from the lock itself, not told by the trylock hook.
    pub cause_from_lock: bool,
}

/// `mmap_lock_acquire_returned` by the reaper or a process_mrelease caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockAttempt {
    pub timestamp_ns: u64,
    pub mm: u64,
    pub caller_pid: u32,
    pub caller_tgid: u32,
    pub write: bool,
    pub success: bool,
    pub by_reaper: bool,
    /// The victim owning `mm`, when it is one.
    pub victim_pid: Option<u32>,
}

/// `mmap:exit_mmap` of a victim's mm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitMmap {
    pub timestamp_ns: u64,
    pub mm: u64,
    pub victim_pid: u32,
    /// The task that dropped the mm's last user.
    pub by: Task,
}

/// One process_mrelease(2) call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mrelease {
    /// When it returned.
    pub timestamp_ns: u64,
    pub entered_ns: u64,
    pub ret: i64,
    pub caller: Task,
    pub pidfd: i32,
    pub mm: Option<u64>,
    /// The victim whose mm it released, when it is one.
    pub victim_pid: Option<u32>,
    /// Whose memory it released, OOM victim or not (from the mm it locked).
    pub target: MreleaseTarget,
}

/// The process a process_mrelease(2) call released, read from the mm as the call locked it;
/// all unknown when it took no lock (a target not dying, or gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MreleaseTarget {
    /// The mm's owner task.
    pub task: Option<Task>,
    pub memcg_id: Option<u64>,
    pub rss_before: Option<Rss>,
    /// As the call returned.
    pub rss_after: Option<Rss>,
}

impl MreleaseTarget {
    /// KiB the call freed (anonymous, file and shmem RSS before minus after).
    pub fn freed_kib(&self) -> Option<u64> {
        let (before, after) = (self.rss_before?, self.rss_after?);
        Some(before.total_kib().saturating_sub(after.total_kib()))
    }
}

/// One call of `__oom_reap_task_mm` (fentry/fexit or kprobe/kretprobe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapCall {
    /// When it returned.
    pub timestamp_ns: u64,
    pub entered_ns: u64,
    pub mm: u64,
    pub caller: Task,
    /// The victim owning `mm`, when it is one.
    pub victim_pid: Option<u32>,
    /// Every VMA was reaped; false when an mmu notifier refused and a VMA was skipped.
    pub complete: bool,
    /// The oom_reaper called it; otherwise process_mrelease(2) did, or (`by_exit`) an
    /// exiting task's exit_mmap.
    pub by_reaper: bool,
    /// An exiting task called it: before 6.0 exit_mmap reaps an OOM victim itself.
    pub by_exit: bool,
    pub attach: AttachKind,
    /// Notifier refusals during the call.
    pub refusals: u32,
}

impl ReapCall {
    /// Returns true if and only if process_mrelease(2) made this call.
    pub fn by_mrelease(&self) -> bool {
        !self.by_reaper && !self.by_exit
    }

    /// Who called it, as trace and the metrics name it: `oom_reaper`, `process_mrelease`
    /// or `exit_mmap`.
    pub fn caller_name(&self) -> &'static str {
        if self.by_reaper {
            "oom_reaper"
        } else if self.by_exit {
            "exit_mmap"
        } else {
            "process_mrelease"
        }
    }
}

/// An mmu notifier refused a non-blocking invalidation during a reap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierRefused {
    pub timestamp_ns: u64,
    pub mm: u64,
    /// The refused range, `[start, end)`, when known.
    pub range: Option<(u64, u64)>,
    pub caller_pid: u32,
    pub victim_pid: Option<u32>,
    pub ret: i32,
    pub attach: AttachKind,
    /// The mm's notifiers, one of which refused.
    pub notifiers: Notifiers,
}

/// `oom:oom_score_adj_update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreAdj {
    pub timestamp_ns: u64,
    pub task: Task,
    pub oom_score_adj: i32,
    pub changer: Task,
}

/// One retry counter: cumulative since the capture started.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryCounter {
    pub what: RetryKind,
    /// NUMA node, when known.
    pub node: Option<u32>,
    pub zone: Option<u32>,
    pub order: i32,
}

/// Snapshot of the in-kernel retry counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryCounts {
    pub timestamp_ns: u64,
    pub counts: Vec<(RetryCounter, u64)>,
}

/// The OOM killer's own evaluation behind a kill: the processes `oom_badness` weighed with
/// the most points (function hooks only), sent just before the kill's `mark_victim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomCandidates {
    pub timestamp_ns: u64,
    pub attach: AttachKind,
    /// The process chosen.
    pub chosen_tgid: u32,
    /// How many processes were weighed in all.
    pub weighed: u32,
    /// The pages weighed against.
    pub total_pages: u64,
    /// At most `MAX_OOM_CANDIDATES`, those with the most points, in no particular order.
    pub candidates: Vec<OomCandidate>,
    /// At most `MAX_OOM_SPARED` with a negative `oom_score_adj` and the most memory, some of
    /// them in `candidates` too.
    pub spared: Vec<OomCandidate>,
}

/// One process as `oom_badness` weighed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomCandidate {
    /// Its thread group (the process) and the task weighed.
    pub task: Task,
    /// `oom_badness`'s points; `None` where it passed the process over (`LONG_MIN`).
    pub points: Option<i64>,
    /// Its memory as weighed; `None` where the task had no mm of its own (a leader that
    /// exited while its threads live).
    pub memory: Option<CandidateMemory>,
    pub oom_score_adj: i32,
    pub memcg_id: Option<u64>,
}

/// A candidate's memory, in KiB, and its mm's flags.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CandidateMemory {
    pub rss_kib: u64,
    pub swap_kib: u64,
    pub pgtables_kib: u64,
    pub mm_flags: u64,
}

/// Every event the kernel programs send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    MarkVictim(MarkVictim),
    WakeReaper(ReaperStep),
    StartReaping(ReaperStep),
    FinishReaping(FinishReaping),
    SkipReaping(SkipReaping),
    LockAttempt(LockAttempt),
    ExitMmap(ExitMmap),
    Mrelease(Mrelease),
    ScoreAdj(ScoreAdj),
    RetryCounts(RetryCounts),
    ReapCall(ReapCall),
    NotifierRefused(NotifierRefused),
    OomCandidates(OomCandidates),
}

impl Event {
    /// When the kernel emitted it: CLOCK_MONOTONIC nanoseconds.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Self::MarkVictim(e) => e.timestamp_ns,
            Self::WakeReaper(e) | Self::StartReaping(e) => e.timestamp_ns,
            Self::FinishReaping(e) => e.timestamp_ns,
            Self::SkipReaping(e) => e.timestamp_ns,
            Self::LockAttempt(e) => e.timestamp_ns,
            Self::ExitMmap(e) => e.timestamp_ns,
            Self::Mrelease(e) => e.timestamp_ns,
            Self::ScoreAdj(e) => e.timestamp_ns,
            Self::RetryCounts(e) => e.timestamp_ns,
            Self::ReapCall(e) => e.timestamp_ns,
            Self::NotifierRefused(e) => e.timestamp_ns,
            Self::OomCandidates(e) => e.timestamp_ns,
        }
    }
}

mod decode;
pub use decode::{DecodeError, decode, encode};

#[cfg(test)]
mod tests;
