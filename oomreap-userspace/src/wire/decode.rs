//! Checks each record against its layout and reads it into an [`Event`].
use oomreap_common::event::{
    COMM_LEN, EventHeader, EventKind, ExitMmapEvent, FinishReapingEvent, LockAttemptEvent,
    LockState as RawLockState, MARK_VICTIM_EVENT_V1_SIZE, MARK_VICTIM_EVENT_V2_SIZE, MAX_WAITERS,
    MRELEASE_EVENT_V1_SIZE, MarkVictimEvent, MreleaseEvent, NotifierRefusedEvent,
    OomCandidate as RawOomCandidate, OomCandidatesEvent, RT_READER_BIAS, RT_WRITER_BIAS,
    RWSEM_FLAG_HANDOFF, RWSEM_FLAG_WAITERS, RWSEM_READER_OWNED, RWSEM_READER_SHIFT,
    RWSEM_WRITER_LOCKED, ReapCallEvent, ReaperEvent, RetryCountsEvent, ScoreAdjEvent,
    SkipReapingEvent, finish_fields, lock_flags, mark_victim_fields as field, mrelease_fields,
};

use super::*;

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

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(record).ok_or(DecodeError::Truncated {
        got: record.len(),
        expected: size_of::<EventHeader>(),
    })?;
    let kind = EventKind::try_from(header.kind).map_err(DecodeError::UnknownKind)?;
    Ok(match kind {
        EventKind::MarkVictim => decode_mark_victim(exact_or_older(
            kind,
            record,
            &[MARK_VICTIM_EVENT_V1_SIZE, MARK_VICTIM_EVENT_V2_SIZE],
        )?)?,
        EventKind::WakeReaper => Event::WakeReaper(reaper_step(exact(kind, record)?)),
        EventKind::StartReaping => Event::StartReaping(reaper_step(exact(kind, record)?)),
        EventKind::FinishReaping => decode_finish(exact(kind, record)?),
        EventKind::SkipReaping => decode_skip(exact(kind, record)?)?,
        EventKind::LockAttempt => decode_lock_attempt(exact(kind, record)?),
        EventKind::ExitMmap => decode_exit_mmap(exact(kind, record)?),
        EventKind::Mrelease => {
            decode_mrelease(exact_or_older(kind, record, &[MRELEASE_EVENT_V1_SIZE])?)
        }
        EventKind::ScoreAdjUpdate => decode_score_adj(exact(kind, record)?),
        EventKind::RetryCounts => decode_retry_counts(exact(kind, record)?)?,
        EventKind::ReapCall => decode_reap_call(exact(kind, record)?)?,
        EventKind::NotifierRefused => decode_notifier_refused(exact(kind, record)?)?,
        EventKind::OomCandidates => decode_oom_candidates(exact(kind, record)?)?,
    })
}

fn decode_mark_victim(raw: MarkVictimEvent) -> Result<Event, DecodeError> {
    let has = |bit: u32| raw.fields & bit != 0;
    let attach = AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?;
    let notifiers = has(field::NOTIFIERS)
        .then(|| listed_notifiers(raw.notifier_count, raw.interval_notifiers, &raw.notifiers));
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
        domain: has(field::DOMAIN_WALKED).then(|| OomDomain {
            memcg: has(field::DOMAIN).then_some(MemcgAtLimit {
                id: raw.domain_memcg_id,
                usage_kib: raw.domain_usage_kib,
                limit_kib: raw.domain_limit_kib,
            }),
            exact: has(field::EXACT).then_some(OomKillerRecord {
                constraint: raw.constraint,
                points: raw.chosen_points,
                total_pages: raw.total_pages,
            }),
        }),
        swap_kib: has(field::SWAP).then_some(raw.swap_kib),
        trigger_stacks: (has(field::TRIGGER_STACK) || has(field::TRIGGER_USER_STACK))
            .then(|| trigger_stacks(&raw)),
        mmap_lock_blocks_readers: has(field::MMAP_LOCK_READ)
            .then_some(has(field::MMAP_LOCK_BLOCKS_READERS)),
    }))
}

/// The trigger's valid frames (a count beyond the array, in a corrupt record, reads the
/// array and no more), without the tracing's own innermost frames where they are named.
fn trigger_stacks(raw: &MarkVictimEvent) -> TriggerStacks {
    let has = |bit: u32| raw.fields & bit != 0;
    let named = has(field::TRIGGER_STACK_NAMED);
    let kernel_frames = match has(field::TRIGGER_STACK) {
        true => (raw.trigger_stack_frames as usize).min(raw.trigger_stack.len()),
        false => 0,
    };
    let mut kernel: Vec<KernelFrame> = raw.trigger_stack[..kernel_frames]
        .iter()
        .zip(&raw.trigger_frame_names)
        .map(|(&address, name)| KernelFrame {
            address,
            name: named.then(|| text(name)).filter(|n| !n.is_empty()),
        })
        .collect();
    let tracing = kernel
        .iter()
        .take_while(|f| f.name.as_deref().is_some_and(is_tracing_frame))
        .count();
    kernel.drain(..tracing);
    let user_frames = match has(field::TRIGGER_USER_STACK) {
        true => (raw.trigger_user_frames as usize).min(raw.trigger_user_stack.len()),
        false => 0,
    };
    TriggerStacks {
        kernel,
        user: raw.trigger_user_stack[..user_frames].to_vec(),
    }
}

/// A frame of the tracing that read the stack (the BPF program, its trampoline or the
/// tracepoint's glue), not of the path into the OOM killer.
fn is_tracing_frame(name: &str) -> bool {
    [
        "bpf_",
        "__bpf_",
        "__traceiter_",
        "trace_event_",
        "perf_trace_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
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
        cause_from_lock: raw.cause_from_lock != 0,
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
        reader_hint: raw.owner_raw & RWSEM_READER_OWNED != 0,
    });
    let listed = (raw.waiter_count as usize).min(MAX_WAITERS);
    let rt = raw.flags & lock_flags::RT != 0;
    let waiters = (raw.flags & lock_flags::WAITERS != 0).then(|| {
        raw.waiters[..listed]
            .iter()
            .map(|w| LockWaiter {
                pid: w.pid,
                comm: comm(&w.comm),
                kind: match w.waiter_type {
                    _ if rt => WaiterKind::Any,
                    0 => WaiterKind::Write,
                    1 => WaiterKind::Read,
                    other => WaiterKind::Unknown(other),
                },
            })
            .collect()
    });
    if rt {
        return Some(rt_lock_snapshot(raw, owner, waiters));
    }
    Some(LockSnapshot {
        count_raw: count,
        owner_raw: raw.owner_raw,
        rt: false,
        writer_locked: count & RWSEM_WRITER_LOCKED != 0,
        writer_pending: false,
        waiters_queued: count & RWSEM_FLAG_WAITERS != 0,
        handoff: count & RWSEM_FLAG_HANDOFF != 0,
        readers: (count >> RWSEM_READER_SHIFT) & ((1 << 55) - 1),
        owner,
        waiters,
        waiters_truncated: raw.waiters_truncated != 0,
    })
}

/// A PREEMPT_RT lock (kernel/locking/rwbase_rt.c): `readers` is `READER_BIAS` plus the
/// readers while no writer has the rtmutex; a writer that takes it subtracts `READER_BIAS`
/// and waits for the readers left to drain (`0 <= readers < WRITER_BIAS`; a read trylock
/// then fails), then holds the lock at exactly `WRITER_BIAS`.
fn rt_lock_snapshot(
    raw: &RawLockState,
    owner: Option<LockOwner>,
    waiters: Option<Vec<LockWaiter>>,
) -> LockSnapshot {
    let readers_raw = raw.count & 0xffff_ffff;
    let (writer_locked, writer_pending, readers) = if readers_raw == RT_WRITER_BIAS {
        (true, false, 0)
    } else if readers_raw & RT_READER_BIAS != 0 {
        (false, false, readers_raw - RT_READER_BIAS)
    } else {
        (false, true, readers_raw)
    };
    LockSnapshot {
        count_raw: raw.count,
        owner_raw: raw.owner_raw,
        rt: true,
        writer_locked,
        writer_pending,
        waiters_queued: raw.owner_raw & 1 != 0,
        handoff: false,
        readers,
        // The rtmutex's owner is always a writer: RT readers are not recorded.
        owner: owner.map(|o| LockOwner {
            reader_hint: false,
            ..o
        }),
        waiters,
        waiters_truncated: raw.waiters_truncated != 0,
    }
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
        by_exit: raw.by_exit != 0,
        attach: AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?,
        refusals: raw.refusals,
    }))
}

fn decode_notifier_refused(raw: NotifierRefusedEvent) -> Result<Event, DecodeError> {
    Ok(Event::NotifierRefused(NotifierRefused {
        timestamp_ns: raw.header.timestamp_ns,
        mm: raw.mm,
        range: (raw.end != 0).then_some((raw.start, raw.end)),
        caller_pid: raw.caller_pid,
        victim_pid: (raw.victim_pid != 0).then_some(raw.victim_pid),
        ret: raw.ret,
        attach: AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?,
        notifiers: listed_notifiers(raw.notifier_count, raw.interval_notifiers, &raw.notifiers),
    }))
}

fn decode_oom_candidates(raw: OomCandidatesEvent) -> Result<Event, DecodeError> {
    let listed = |entries: &[RawOomCandidate], count: u32| {
        entries
            .get(..count as usize)
            .map(|valid| valid.iter().map(oom_candidate).collect())
            .ok_or(DecodeError::BadLength {
                kind: EventKind::OomCandidates,
                len: count as usize,
            })
    };
    Ok(Event::OomCandidates(OomCandidates {
        timestamp_ns: raw.header.timestamp_ns,
        attach: AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?,
        chosen_tgid: raw.chosen_tgid,
        weighed: raw.weighed,
        total_pages: raw.total_pages,
        candidates: listed(&raw.candidates, raw.count)?,
        spared: listed(&raw.spared, raw.spared_count)?,
    }))
}

fn oom_candidate(c: &RawOomCandidate) -> OomCandidate {
    OomCandidate {
        task: Task {
            pid: c.pid,
            tgid: Some(c.tgid),
            comm: Some(comm(&c.comm)),
        },
        points: (c.points != i64::MIN).then_some(c.points),
        memory: (c.has_mm != 0).then_some(CandidateMemory {
            rss_kib: c.rss_kib,
            swap_kib: c.swap_kib,
            pgtables_kib: c.pgtables_kib,
            mm_flags: c.mm_flags,
        }),
        oom_score_adj: c.oom_score_adj,
        memcg_id: (c.memcg_id != 0).then_some(c.memcg_id),
    }
}

/// The notifiers a record lists: its first `count` callbacks, kept in place (their position
/// tells a classic notifier from an interval one) even where the kernel could not read one.
fn listed_notifiers(count: u32, interval: u32, callbacks: &[u64]) -> Notifiers {
    let listed = (count as usize).min(callbacks.len());
    Notifiers {
        count,
        interval: interval.min(count),
        callbacks: callbacks[..listed].to_vec(),
    }
}

fn decode_mrelease(raw: MreleaseEvent) -> Event {
    let has = |bit| raw.fields & bit != 0;
    let rss = |has_it: bool, anon_kib, file_kib, shmem_kib| {
        has_it.then_some(Rss {
            anon_kib,
            file_kib,
            shmem_kib,
        })
    };
    let target = MreleaseTarget {
        task: has(mrelease_fields::TARGET).then(|| Task {
            pid: raw.target_pid,
            tgid: Some(raw.target_tgid),
            comm: Some(comm(&raw.target_comm)),
        }),
        memcg_id: has(mrelease_fields::MEMCG).then_some(raw.target_memcg_id),
        rss_before: rss(
            has(mrelease_fields::RSS_BEFORE),
            raw.rss_before_anon_kib,
            raw.rss_before_file_kib,
            raw.rss_before_shmem_kib,
        ),
        rss_after: rss(
            has(mrelease_fields::RSS_AFTER),
            raw.rss_after_anon_kib,
            raw.rss_after_file_kib,
            raw.rss_after_shmem_kib,
        ),
    };
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
        target,
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
    text(raw)
}

/// A NUL-terminated string of a fixed-size field (all of it where there is no NUL).
fn text(raw: &[u8]) -> String {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
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

/// As [`exact`], but a record of an older, shorter layout (one of `olders`, in bytes: the same
/// fields, fewer of them) reads with the newer fields zero, which their `fields` bits then
/// mark unknown.
fn exact_or_older<T: aya::Pod>(
    kind: EventKind,
    record: &[u8],
    olders: &[usize],
) -> Result<T, DecodeError> {
    if olders.contains(&record.len()) && record.len() < size_of::<T>() {
        let mut padded = record.to_vec();
        padded.resize(size_of::<T>(), 0);
        return exact(kind, &padded);
    }
    exact(kind, record)
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
