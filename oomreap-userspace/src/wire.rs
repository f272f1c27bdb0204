//! Decodes the records the kernel programs write into typed [`Event`]s.
//!
//! The record layouts are defined once in `oomreap_common::event`; this module checks each
//! record's length against them before reading, and turns the raw "which fields are valid"
//! bits into `Option`s so nothing downstream can mistake "unknown" for zero.
/// The wire's enums are the types every layer above uses: one skip cause, one retry kind and
/// one attach kind from the kernel to every front end.
pub use oomreap_common::event::{AttachKind, RetryKind, SkipCause};
use oomreap_common::event::{
    COMM_LEN, EventHeader, EventKind, ExitMmapEvent, FinishReapingEvent, LockAttemptEvent,
    LockState as RawLockState, MAX_WAITERS, MarkVictimEvent, MreleaseEvent, NotifierRefusedEvent,
    ReapCallEvent, ReaperEvent, RetryCountsEvent, ScoreAdjEvent, SkipReapingEvent, finish_fields,
    lock_flags, mark_victim_fields as field,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {expected}-byte event header")]
    Truncated { got: usize, expected: usize },
    #[error("record has unknown event kind {0}; is this oomreap older than its kernel programs?")]
    UnknownKind(u32),
    #[error("invalid {kind:?} record size: expected {expected} bytes, got {got}")]
    SizeMismatch {
        kind: EventKind,
        expected: usize,
        got: usize,
    },
    #[error("record has unknown attach kind {0}")]
    UnknownAttach(u32),
    #[error("skip_task_reaping record has unknown cause {0}")]
    UnknownSkipCause(u32),
    #[error("retry_counts record has unknown retry kind {0}")]
    UnknownRetryKind(u32),
    #[error("invalid {kind:?} record: {len} entries")]
    BadLength { kind: EventKind, len: usize },
}

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
}

/// The mmu notifiers registered on a victim's mm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notifiers {
    /// How many there are.
    pub count: u32,
    /// Kernel addresses of the first ones' `invalidate_range_start` callbacks.
    pub callbacks: Vec<u64>,
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

/// `oom:finish_task_reaping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishReaping {
    pub timestamp_ns: u64,
    pub victim_pid: u32,
    /// The mm's RSS after this reap pass.
    pub rss_after: Option<Rss>,
}

/// `MMF_OOM_SKIP` in `mm->flags` (include/linux/mm_types.h): the mm is being torn down and
/// the reaper must leave it alone. A `#define`, so not in BTF.
pub const MMF_OOM_SKIP_BIT: u32 = 21;

/// Whether `mm->flags` has `MMF_OOM_SKIP`.
pub fn has_mmf_oom_skip(mm_flags: u64) -> bool {
    mm_flags & (1 << MMF_OOM_SKIP_BIT) != 0
}

/// Whether a waiter wants the lock for reading or writing (`enum rwsem_waiter_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WaiterKind {
    Write,
    Read,
    Unknown(u32),
}

impl WaiterKind {
    /// `write`, `read`, or `type N` for a kind this oomreap does not know.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Write => "write".into(),
            Self::Read => "read".into(),
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
    /// The lock is held for reading, and this is one reader (the last to take it): a hint,
    /// since readers do not clear the field when they leave.
    pub reader_hint: bool,
}

/// A snapshot of the victim's `mm->mmap_lock` when the reaper's trylock failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSnapshot {
    pub count_raw: u64,
    pub owner_raw: u64,
    /// `count` bit 0.
    pub writer_locked: bool,
    /// `count` bit 1: someone is queued (typically a writer behind readers).
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
    /// The oom_reaper called it; otherwise process_mrelease(2) did.
    pub by_reaper: bool,
    pub attach: AttachKind,
    /// Notifier refusals during the call.
    pub refusals: u32,
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
        }
    }
}

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(record).ok_or(DecodeError::Truncated {
        got: record.len(),
        expected: size_of::<EventHeader>(),
    })?;
    let kind = EventKind::try_from(header.kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        EventKind::MarkVictim => decode_mark_victim(exact(kind, record)?)?,
        EventKind::WakeReaper => Event::WakeReaper(reaper_step(exact(kind, record)?)),
        EventKind::StartReaping => Event::StartReaping(reaper_step(exact(kind, record)?)),
        EventKind::FinishReaping => decode_finish(exact(kind, record)?),
        EventKind::SkipReaping => decode_skip(exact(kind, record)?)?,
        EventKind::LockAttempt => decode_lock_attempt(exact(kind, record)?),
        EventKind::ExitMmap => decode_exit_mmap(exact(kind, record)?),
        EventKind::Mrelease => decode_mrelease(exact(kind, record)?),
        EventKind::ScoreAdjUpdate => decode_score_adj(exact(kind, record)?),
        EventKind::RetryCounts => decode_retry_counts(exact(kind, record)?)?,
        EventKind::ReapCall => decode_reap_call(exact(kind, record)?)?,
        EventKind::NotifierRefused => decode_notifier_refused(exact(kind, record)?)?,
    })
}

fn decode_mark_victim(raw: MarkVictimEvent) -> Result<Event, DecodeError> {
    let has = |bit: u32| raw.fields & bit != 0;
    let attach = AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?;
    let notifiers = has(field::NOTIFIERS).then(|| Notifiers {
        count: raw.notifier_count,
        callbacks: raw.notifiers.iter().copied().filter(|&a| a != 0).collect(),
    });
    Ok(Event::MarkVictim(MarkVictim {
        timestamp_ns: raw.header.timestamp_ns,
        attach,
        victim: Task {
            pid: raw.victim_pid,
            tgid: has(field::TGID).then_some(raw.victim_tgid),
            comm: has(field::COMM).then(|| comm(&raw.victim_comm)),
        },
        uid: has(field::UID).then_some(raw.uid),
        oom_score_adj: has(field::OOM_SCORE_ADJ).then_some(raw.oom_score_adj),
        memory: has(field::MEMORY).then_some(VictimMemory {
            total_vm_kib: raw.total_vm_kib,
            anon_rss_kib: raw.anon_rss_kib,
            file_rss_kib: raw.file_rss_kib,
            shmem_rss_kib: raw.shmem_rss_kib,
            pgtables_kib: raw.pgtables_kib,
        }),
        mm: has(field::MM).then_some(raw.victim_mm),
        memcg_id: has(field::MEMCG).then_some(raw.memcg_id),
        notifiers,
        parent_tgid: has(field::PARENT).then_some(raw.parent_tgid),
        trigger: Task {
            pid: raw.trigger_pid,
            tgid: Some(raw.trigger_tgid),
            comm: Some(comm(&raw.trigger_comm)),
        },
    }))
}

fn reaper_step(raw: ReaperEvent) -> ReaperStep {
    ReaperStep {
        timestamp_ns: raw.header.timestamp_ns,
        victim_pid: raw.victim_pid,
    }
}

fn decode_finish(raw: FinishReapingEvent) -> Event {
    Event::FinishReaping(FinishReaping {
        timestamp_ns: raw.header.timestamp_ns,
        victim_pid: raw.victim_pid,
        rss_after: (raw.fields & finish_fields::RSS != 0).then_some(Rss {
            anon_kib: raw.anon_rss_kib,
            file_kib: raw.file_rss_kib,
            shmem_kib: raw.shmem_rss_kib,
        }),
    })
}

fn decode_skip(raw: SkipReapingEvent) -> Result<Event, DecodeError> {
    let cause = SkipCause::try_from(raw.cause).map_err(DecodeError::UnknownSkipCause)?;
    let mm = (raw.mm != 0).then_some(raw.mm);
    Ok(Event::SkipReaping(SkipReaping {
        timestamp_ns: raw.header.timestamp_ns,
        victim_pid: raw.victim_pid,
        cause,
        mm,
        // A live mm always has its coredump-filter bits set, so 0 means "not read".
        mm_flags: mm.and((raw.mm_flags != 0).then_some(raw.mm_flags)),
        lock: lock_snapshot(&raw.lock).map(std::sync::Arc::new),
    }))
}

fn lock_snapshot(raw: &RawLockState) -> Option<LockSnapshot> {
    if raw.flags & lock_flags::READ == 0 {
        return None;
    }
    let count = raw.count;
    let owner = (raw.flags & lock_flags::OWNER_TASK != 0).then(|| LockOwner {
        pid: raw.owner_pid,
        tgid: raw.owner_tgid,
        comm: comm(&raw.owner_comm),
        reader_hint: raw.owner_raw & 1 != 0,
    });
    let listed = (raw.waiter_count as usize).min(MAX_WAITERS);
    let waiters = (raw.flags & lock_flags::WAITERS != 0).then(|| {
        raw.waiters[..listed]
            .iter()
            .map(|w| LockWaiter {
                pid: w.pid,
                comm: comm(&w.comm),
                kind: match w.waiter_type {
                    0 => WaiterKind::Write,
                    1 => WaiterKind::Read,
                    other => WaiterKind::Unknown(other),
                },
            })
            .collect()
    });
    Some(LockSnapshot {
        count_raw: count,
        owner_raw: raw.owner_raw,
        writer_locked: count & 1 != 0,
        waiters_queued: count & 2 != 0,
        handoff: count & 4 != 0,
        readers: (count >> 8) & ((1 << 55) - 1),
        owner,
        waiters,
        waiters_truncated: raw.waiters_truncated != 0,
    })
}

fn decode_lock_attempt(raw: LockAttemptEvent) -> Event {
    Event::LockAttempt(LockAttempt {
        timestamp_ns: raw.header.timestamp_ns,
        mm: raw.mm,
        caller_pid: raw.caller_pid,
        caller_tgid: raw.caller_tgid,
        write: raw.write != 0,
        success: raw.success != 0,
        by_reaper: raw.by_reaper != 0,
        victim_pid: (raw.victim_pid != 0).then_some(raw.victim_pid),
    })
}

fn decode_exit_mmap(raw: ExitMmapEvent) -> Event {
    Event::ExitMmap(ExitMmap {
        timestamp_ns: raw.header.timestamp_ns,
        mm: raw.mm,
        victim_pid: raw.victim_pid,
        by: Task {
            pid: raw.current_pid,
            tgid: Some(raw.current_tgid),
            comm: Some(comm(&raw.current_comm)),
        },
    })
}

fn decode_reap_call(raw: ReapCallEvent) -> Result<Event, DecodeError> {
    Ok(Event::ReapCall(ReapCall {
        timestamp_ns: raw.header.timestamp_ns,
        entered_ns: raw.entered_ns,
        mm: raw.mm,
        caller: Task {
            pid: raw.caller_pid,
            tgid: Some(raw.caller_tgid),
            comm: Some(comm(&raw.caller_comm)),
        },
        victim_pid: (raw.victim_pid != 0).then_some(raw.victim_pid),
        complete: raw.complete != 0,
        by_reaper: raw.by_reaper != 0,
        attach: AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?,
        refusals: raw.refusals,
    }))
}

fn decode_notifier_refused(raw: NotifierRefusedEvent) -> Result<Event, DecodeError> {
    let listed = (raw.notifier_count as usize).min(raw.notifiers.len());
    Ok(Event::NotifierRefused(NotifierRefused {
        timestamp_ns: raw.header.timestamp_ns,
        mm: raw.mm,
        range: (raw.end != 0).then_some((raw.start, raw.end)),
        caller_pid: raw.caller_pid,
        victim_pid: (raw.victim_pid != 0).then_some(raw.victim_pid),
        ret: raw.ret,
        attach: AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?,
        notifiers: Notifiers {
            count: raw.notifier_count,
            callbacks: raw.notifiers[..listed].to_vec(),
        },
    }))
}

fn decode_mrelease(raw: MreleaseEvent) -> Event {
    Event::Mrelease(Mrelease {
        timestamp_ns: raw.header.timestamp_ns,
        entered_ns: raw.entered_ns,
        ret: raw.ret,
        caller: Task {
            pid: raw.caller_pid,
            tgid: Some(raw.caller_tgid),
            comm: Some(comm(&raw.caller_comm)),
        },
        pidfd: raw.pidfd,
        mm: (raw.mm != 0).then_some(raw.mm),
        victim_pid: (raw.victim_pid != 0).then_some(raw.victim_pid),
    })
}

fn decode_score_adj(raw: ScoreAdjEvent) -> Event {
    Event::ScoreAdj(ScoreAdj {
        timestamp_ns: raw.header.timestamp_ns,
        task: Task {
            pid: raw.pid,
            tgid: None,
            comm: Some(comm(&raw.comm)),
        },
        oom_score_adj: raw.oom_score_adj,
        changer: Task {
            pid: raw.changer_pid,
            tgid: Some(raw.changer_tgid),
            comm: Some(comm(&raw.changer_comm)),
        },
    })
}

fn decode_retry_counts(raw: RetryCountsEvent) -> Result<Event, DecodeError> {
    let len = raw.len as usize;
    let listed = raw.counts.get(..len).ok_or(DecodeError::BadLength {
        kind: EventKind::RetryCounts,
        len,
    })?;
    let counts = listed
        .iter()
        .map(|c| {
            let what = RetryKind::try_from(c.key.kind).map_err(DecodeError::UnknownRetryKind)?;
            let known = |v: i32| u32::try_from(v).ok();
            Ok((
                RetryCounter {
                    what,
                    node: known(c.key.node),
                    zone: known(c.key.zone),
                    order: c.key.order,
                },
                c.count,
            ))
        })
        .collect::<Result<_, _>>()?;
    Ok(Event::RetryCounts(RetryCounts {
        timestamp_ns: raw.header.timestamp_ns,
        counts,
    }))
}

/// A task name up to its first NUL, with invalid UTF-8 replaced.
fn comm(raw: &[u8; COMM_LEN]) -> String {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..len]).into_owned()
}

/// Reads a `T` from a record of exactly `size_of::<T>()` bytes.
fn exact<T: aya::Pod>(kind: EventKind, record: &[u8]) -> Result<T, DecodeError> {
    let mismatch = DecodeError::SizeMismatch {
        kind,
        expected: size_of::<T>(),
        got: record.len(),
    };
    if record.len() != size_of::<T>() {
        return Err(mismatch);
    }
    read(record).ok_or(mismatch)
}

/// Reads a `T` from the start of `bytes`, or `None` when there are too few.
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length was checked above, `read_unaligned` has no alignment requirement and
    // `T: Pod` makes every bit pattern a valid `T`.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// Encodes a wire struct as the bytes the kernel would send; for recorded streams and tests.
pub fn encode<T: aya::Pod>(value: &T) -> Vec<u8> {
    // SAFETY: `T: Pod` has no padding, so all `size_of::<T>()` bytes are initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::fixtures::mark_victim_raw;

    #[test]
    fn mark_victim_round_trips() {
        let raw = mark_victim_raw(4242, "hog", 300 * 1024);
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
            panic!("not a mark_victim")
        };
        assert_eq!(e.victim.pid, 4242);
        assert_eq!(e.victim.tgid, Some(4242));
        assert_eq!(e.victim.comm.as_deref(), Some("hog"));
        assert_eq!(e.memory.unwrap().anon_rss_kib, 300 * 1024);
        assert_eq!(e.attach, AttachKind::BtfTracePoint);
        assert_eq!(e.trigger.comm.as_deref(), Some("hog"));
    }

    #[test]
    fn every_reaper_record_round_trips() {
        use crate::lab::fixtures::{contended_skip_at, exit_at, reaper_at};
        assert_eq!(
            decode(&encode(&reaper_at(EventKind::WakeReaper, 5, 7))).unwrap(),
            Event::WakeReaper(ReaperStep {
                timestamp_ns: 5_000_000,
                victim_pid: 7
            })
        );
        let Event::SkipReaping(skip) = decode(&encode(&contended_skip_at(5, 7))).unwrap() else {
            panic!("not a skip")
        };
        assert_eq!(skip.cause, SkipCause::LockContended);
        let lock = skip.lock.unwrap();
        assert!(lock.writer_locked && lock.waiters_queued && !lock.handoff);
        assert_eq!(lock.readers, 0);
        let owner = lock.owner.clone().unwrap();
        assert_eq!(
            (owner.pid, owner.comm.as_str(), owner.reader_hint),
            (50, "holder", false)
        );
        let waiters = lock.waiters.clone().unwrap();
        assert_eq!(waiters.len(), 1);
        assert_eq!((waiters[0].pid, waiters[0].kind), (51, WaiterKind::Write));
        let Event::ExitMmap(exit) = decode(&encode(&exit_at(9, 7, 0xabc))).unwrap() else {
            panic!("not an exit_mmap")
        };
        assert_eq!(
            (exit.mm, exit.victim_pid, exit.by.comm.as_deref()),
            (0xabc, 7, Some("hog"))
        );
    }

    #[test]
    fn function_hook_records_round_trip() {
        let mut comm = [0u8; COMM_LEN];
        comm[..10].copy_from_slice(b"oom_reaper");
        let call = ReapCallEvent {
            header: crate::lab::fixtures::header_at(EventKind::ReapCall, 7),
            entered_ns: 6_000_000,
            mm: 0xabc,
            caller_pid: 33,
            caller_tgid: 33,
            caller_comm: comm,
            victim_pid: 9,
            complete: 0,
            by_reaper: 1,
            attach: AttachKind::Kprobe as u32,
            refusals: 2,
            _pad: 0,
        };
        let Event::ReapCall(e) = decode(&encode(&call)).unwrap() else {
            panic!("not a reap call")
        };
        assert_eq!(
            (e.entered_ns, e.mm, e.victim_pid, e.complete, e.by_reaper),
            (6_000_000, 0xabc, Some(9), false, true)
        );
        assert_eq!((e.attach, e.refusals), (AttachKind::Kprobe, 2));
        assert_eq!(e.caller.comm.as_deref(), Some("oom_reaper"));
        let bad = ReapCallEvent { attach: 77, ..call };
        assert_eq!(decode(&encode(&bad)), Err(DecodeError::UnknownAttach(77)));

        let refused = NotifierRefusedEvent {
            header: crate::lab::fixtures::header_at(EventKind::NotifierRefused, 7),
            mm: 0xabc,
            start: 0x1000,
            end: 0x2000,
            caller_pid: 33,
            victim_pid: 0,
            ret: -11,
            attach: AttachKind::Fentry as u32,
            // More than are listed: only the listed callbacks come out.
            notifier_count: 6,
            _pad: 0,
            notifiers: [1, 2, 3, 4],
        };
        let Event::NotifierRefused(e) = decode(&encode(&refused)).unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(
            (e.range, e.victim_pid, e.ret),
            (Some((0x1000, 0x2000)), None, -11)
        );
        assert_eq!((e.notifiers.count, e.notifiers.callbacks.len()), (6, 4));
    }

    #[test]
    fn reader_count_and_reader_hint() {
        let mut raw = crate::lab::fixtures::contended_skip_at(5, 7);
        raw.lock.count = (3 << 8) | 0b10;
        raw.lock.owner_raw |= 1;
        let Event::SkipReaping(skip) = decode(&encode(&raw)).unwrap() else {
            panic!("not a skip")
        };
        let lock = skip.lock.unwrap();
        assert_eq!((lock.readers, lock.writer_locked), (3, false));
        assert!(lock.owner.as_ref().unwrap().reader_hint);
    }

    #[test]
    fn an_unknown_skip_cause_is_an_error() {
        let mut raw = crate::lab::fixtures::contended_skip_at(5, 7);
        raw.cause = 9;
        assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownSkipCause(9)));
    }

    fn retry_snapshot(len: u32, kind: u32) -> RetryCountsEvent {
        use oomreap_common::event::{MAX_RETRY_COUNTS, RetryCount, RetryKey};
        RetryCountsEvent {
            header: crate::lab::fixtures::header_at(EventKind::RetryCounts, 1),
            len,
            _pad: 0,
            counts: [RetryCount {
                key: RetryKey {
                    kind,
                    node: 0,
                    zone: 0,
                    order: 0,
                },
                count: 1,
            }; MAX_RETRY_COUNTS],
        }
    }

    #[test]
    fn a_retry_snapshot_with_a_bad_length_is_an_error() {
        let len = oomreap_common::event::MAX_RETRY_COUNTS as u32 + 1;
        assert!(matches!(
            decode(&encode(&retry_snapshot(len, 1))),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn an_unknown_retry_kind_is_named_as_such() {
        let err = decode(&encode(&retry_snapshot(1, 7))).unwrap_err();
        assert_eq!(err, DecodeError::UnknownRetryKind(7));
        assert!(err.to_string().contains("unknown retry kind 7"));
    }

    #[test]
    fn fields_without_their_bit_decode_as_unknown() {
        let mut raw = mark_victim_raw(7, "x", 1);
        raw.fields = 0;
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
            panic!("not a mark_victim")
        };
        assert_eq!((e.victim.tgid, e.victim.comm, e.uid), (None, None, None));
        assert_eq!((e.memory, e.oom_score_adj, e.mm), (None, None, None));
    }

    #[test]
    fn a_full_width_comm_has_no_nul() {
        let raw = mark_victim_raw(7, "exactly16chars!!", 1);
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
            panic!("not a mark_victim")
        };
        assert_eq!(e.victim.comm.as_deref(), Some("exactly16chars!!"));
    }

    #[test]
    fn truncated_header() {
        let err = decode(&[1, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                got: 3,
                expected: 16
            }
        );
        assert!(err.to_string().contains("3 bytes"), "{err}");
    }

    #[test]
    fn truncated_body_reports_both_sizes() {
        let bytes = encode(&mark_victim_raw(1, "x", 1));
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        let expected = format!("expected {} bytes, got {}", bytes.len(), bytes.len() - 1);
        assert!(err.to_string().contains(&expected), "{err}");
    }

    #[test]
    fn trailing_garbage_is_a_size_mismatch() {
        let mut bytes = encode(&mark_victim_raw(1, "x", 1));
        bytes.push(0);
        let got = bytes.len();
        assert!(
            matches!(decode(&bytes), Err(DecodeError::SizeMismatch { got: g, .. }) if g == got),
            "{:?}",
            decode(&bytes)
        );
    }

    #[test]
    fn unknown_kind() {
        let mut raw = mark_victim_raw(1, "x", 1);
        raw.header.kind = 99;
        assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn all_zero_record_is_not_an_event() {
        assert_eq!(
            decode(&[0; size_of::<MarkVictimEvent>()]),
            Err(DecodeError::UnknownKind(0))
        );
    }

    #[test]
    fn unknown_attach_kind() {
        let mut raw = mark_victim_raw(1, "x", 1);
        raw.attach = 0;
        assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownAttach(0)));
    }
}
