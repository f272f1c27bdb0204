//! Wire-record builders for tests (unit and integration) and for making demo recordings.
//! Not part of oomreap's supported API.
use oomreap_common::event::{
    AttachKind, COMM_LEN, EventHeader, EventKind, MarkVictimEvent, mark_victim_fields as field,
};

/// A `comm` field holding `name` (truncated to 16 bytes).
pub fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut comm = [0; COMM_LEN];
    let len = name.len().min(COMM_LEN);
    comm[..len].copy_from_slice(&name.as_bytes()[..len]);
    comm
}

/// A fully populated `mark_victim` record for victim `pid`, as a BTF tracepoint sends it; the
/// victim hit the OOM itself.
pub fn mark_victim_raw(pid: u32, name: &str, anon_rss_kib: u64) -> MarkVictimEvent {
    MarkVictimEvent {
        header: EventHeader {
            kind: EventKind::MarkVictim as u32,
            _reserved: 0,
            timestamp_ns: 1_000_000_000,
        },
        victim_pid: pid,
        victim_tgid: pid,
        uid: 1000,
        oom_score_adj: 0,
        total_vm_kib: anon_rss_kib + 4096,
        anon_rss_kib,
        file_rss_kib: 1024,
        shmem_rss_kib: 0,
        pgtables_kib: 600,
        victim_mm: 0xffff_8880_0000_1000,
        trigger_pid: pid,
        trigger_tgid: pid,
        victim_comm: comm_bytes(name),
        trigger_comm: comm_bytes(name),
        attach: AttachKind::BtfTracePoint as u32,
        fields: field::TGID
            | field::COMM
            | field::UID
            | field::MEMORY
            | field::OOM_SCORE_ADJ
            | field::MM
            | field::MEMCG
            | field::NOTIFIERS
            | field::DOMAIN_WALKED
            | field::DOMAIN
            | field::SWAP,
        memcg_id: 4026,
        notifier_count: 0,
        parent_tgid: 0,
        notifiers: [0; oomreap_common::event::MAX_NOTIFIERS],
        // Its own cgroup's 128 MiB limit was hit.
        domain_memcg_id: 4026,
        domain_usage_kib: 131_000,
        domain_limit_kib: 131_072,
        swap_kib: 0,
        constraint: 0,
        interval_notifiers: 0,
        chosen_points: 0,
        total_pages: 0,
        trigger_stack_frames: 0,
        trigger_user_frames: 0,
        trigger_stack: [0; oomreap_common::event::MAX_STACK_FRAMES],
        trigger_user_stack: [0; oomreap_common::event::MAX_USER_FRAMES],
        trigger_frame_names: [[0; oomreap_common::event::FRAME_NAME_LEN];
            oomreap_common::event::MAX_STACK_FRAMES],
    }
}

/// `raw` with its trigger's stacks as a 6.18 kernel reads them at a page fault's charge: the
/// BPF program's own frame, then the OOM killer's path, each named; two user frames.
pub fn with_trigger_stacks(mut raw: MarkVictimEvent) -> MarkVictimEvent {
    use oomreap_common::event::FRAME_NAME_LEN;
    const NAMES: [&str; 10] = [
        "bpf_prog_6deef7357e7b4530_mark_victim_btf+0x2e4/0x6c8",
        "mark_oom_victim+0xba/0x100",
        "__oom_kill_process+0x150/0x440",
        "oom_kill_process+0x72/0x190",
        "out_of_memory+0xf3/0x340",
        "mem_cgroup_out_of_memory+0xf1/0x140",
        "try_charge_memcg+0x439/0x700",
        "do_anonymous_page+0x220/0xaa0",
        "handle_mm_fault+0xd3/0x340",
        "asm_exc_page_fault+0x22/0x30",
    ];
    for (i, name) in NAMES.iter().enumerate() {
        raw.trigger_stack[i] = 0xffff_ffff_8120_0000 + 0x100 * i as u64;
        let bytes = &name.as_bytes()[..name.len().min(FRAME_NAME_LEN - 1)];
        raw.trigger_frame_names[i][..bytes.len()].copy_from_slice(bytes);
    }
    raw.trigger_stack_frames = NAMES.len() as u32;
    raw.trigger_user_stack[..2].copy_from_slice(&[0x55ee_df8e_431e, 0x55ee_df45_ce97]);
    raw.trigger_user_frames = 2;
    raw.fields |= field::TRIGGER_STACK | field::TRIGGER_STACK_NAMED | field::TRIGGER_USER_STACK;
    raw
}

/// The OOM killer's evaluation at `ms` as fentry sends it: `(tgid, comm, points, rss MiB,
/// adj)` each (points `i64::MIN`: passed over), `chosen` the one it picked, against
/// `total_pages`.
pub fn oom_candidates_at(
    ms: u64,
    chosen: u32,
    total_pages: u64,
    processes: &[(u32, &str, i64, u64, i32)],
) -> oomreap_common::event::OomCandidatesEvent {
    use oomreap_common::event::{
        MAX_OOM_CANDIDATES, MAX_OOM_SPARED, OomCandidate, OomCandidatesEvent,
    };
    let empty = OomCandidate {
        points: 0,
        rss_kib: 0,
        swap_kib: 0,
        pgtables_kib: 0,
        memcg_id: 0,
        mm_flags: 0,
        pid: 0,
        tgid: 0,
        oom_score_adj: 0,
        has_mm: 0,
        comm: [0; COMM_LEN],
    };
    let mut event = OomCandidatesEvent {
        header: header_at(EventKind::OomCandidates, ms),
        chosen_tgid: chosen,
        weighed: processes.len() as u32,
        total_pages,
        count: processes.len().min(MAX_OOM_CANDIDATES) as u32,
        attach: AttachKind::Fentry as u32,
        candidates: [empty; MAX_OOM_CANDIDATES],
        spared_count: 0,
        _pad: 0,
        spared: [empty; MAX_OOM_SPARED],
    };
    let described = processes
        .iter()
        .map(|&(tgid, name, points, rss_mib, adj)| OomCandidate {
            points,
            rss_kib: rss_mib << 10,
            memcg_id: 4026,
            pid: tgid,
            tgid,
            oom_score_adj: adj,
            has_mm: 1,
            comm: comm_bytes(name),
            ..empty
        });
    for (slot, candidate) in event.candidates.iter_mut().zip(described.clone()) {
        *slot = candidate;
    }
    // As the kernel side keeps them: those adjusted down, the largest first.
    let mut spared: Vec<OomCandidate> = described.filter(|c| c.oom_score_adj < 0).collect();
    spared.sort_by_key(|c| std::cmp::Reverse(c.rss_kib));
    spared.truncate(MAX_OOM_SPARED);
    event.spared_count = spared.len() as u32;
    for (slot, candidate) in event.spared.iter_mut().zip(spared) {
        *slot = candidate;
    }
    event
}

/// A header of `kind` at `ms` milliseconds.
pub fn header_at(kind: EventKind, ms: u64) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        _reserved: 0,
        timestamp_ns: ms * 1_000_000,
    }
}

/// `mark_victim_raw` at `ms` milliseconds.
pub fn kill_at(ms: u64, pid: u32, name: &str) -> MarkVictimEvent {
    let mut raw = mark_victim_raw(pid, name, 64 * 1024);
    raw.header = header_at(EventKind::MarkVictim, ms);
    raw
}

/// A wake or start record.
pub fn reaper_at(kind: EventKind, ms: u64, pid: u32) -> oomreap_common::event::ReaperEvent {
    oomreap_common::event::ReaperEvent {
        header: header_at(kind, ms),
        victim_pid: pid,
        current_pid: 33,
    }
}

/// A `finish_task_reaping` record by the reaper (pid 33), with no RSS read.
pub fn finish_at(ms: u64, pid: u32) -> oomreap_common::event::FinishReapingEvent {
    oomreap_common::event::FinishReapingEvent {
        header: header_at(EventKind::FinishReaping, ms),
        victim_pid: pid,
        current_pid: 33,
        anon_rss_kib: 0,
        file_rss_kib: 0,
        shmem_rss_kib: 0,
        fields: 0,
        _pad: 0,
    }
}

/// A `skip_task_reaping` record for a contended lock: a writer holds it, one writer waits.
pub fn contended_skip_at(ms: u64, pid: u32) -> oomreap_common::event::SkipReapingEvent {
    use oomreap_common::event::{
        LockState, LockWaiter, MAX_WAITERS, SkipCause, SkipReapingEvent, lock_flags,
    };
    let mut waiters = [LockWaiter {
        pid: 0,
        waiter_type: 0,
        comm: [0; COMM_LEN],
    }; MAX_WAITERS];
    waiters[0] = LockWaiter {
        pid: 51,
        waiter_type: 0,
        comm: comm_bytes("waiter"),
    };
    SkipReapingEvent {
        header: header_at(EventKind::SkipReaping, ms),
        victim_pid: pid,
        current_pid: 33,
        cause: SkipCause::LockContended as u32,
        cause_from_lock: 0,
        mm: u64::from(pid) << 12,
        // Dumpable, default coredump filter, no MMF_OOM_SKIP: what a contended skip reads.
        mm_flags: 0xcd,
        lock: LockState {
            // Writer-locked with waiters queued.
            count: 0b11,
            owner_raw: 0xffff_8880_0000_5000,
            owner_pid: 50,
            owner_tgid: 50,
            owner_comm: comm_bytes("holder"),
            flags: lock_flags::READ | lock_flags::OWNER_TASK | lock_flags::WAITERS,
            waiter_count: 1,
            waiters_truncated: 0,
            _pad: 0,
            waiters,
        },
    }
}

/// An `exit_mmap` of victim `pid`'s mm.
pub fn exit_at(ms: u64, pid: u32, mm: u64) -> oomreap_common::event::ExitMmapEvent {
    oomreap_common::event::ExitMmapEvent {
        header: header_at(EventKind::ExitMmap, ms),
        mm,
        victim_pid: pid,
        current_pid: pid,
        current_tgid: pid,
        _pad: 0,
        current_comm: comm_bytes("hog"),
    }
}

/// A process_mrelease(2) by `lmkd` (pid 900) returning `ret` at `ms` on victim `pid`'s mm.
pub fn mrelease_at(ms: u64, pid: u32, mm: u64, ret: i64) -> oomreap_common::event::MreleaseEvent {
    oomreap_common::event::MreleaseEvent {
        header: header_at(EventKind::Mrelease, ms),
        entered_ns: (ms - 1) * 1_000_000,
        ret,
        mm,
        caller_pid: 900,
        caller_tgid: 900,
        caller_comm: comm_bytes("lmkd"),
        pidfd: 3,
        victim_pid: pid,
        fields: 0,
        target_pid: 0,
        target_tgid: 0,
        target_comm: [0; COMM_LEN],
        _pad: 0,
        target_memcg_id: 0,
        rss_before_anon_kib: 0,
        rss_before_file_kib: 0,
        rss_before_shmem_kib: 0,
        rss_after_anon_kib: 0,
        rss_after_file_kib: 0,
        rss_after_shmem_kib: 0,
    }
}

/// Victim 4242 exits at once (killed at 500 ms, its memory freed 7 ms later); victim 7 is
/// killed at 1 s, woken at 3 s and jammed for ten contended attempts, until the reaper gives
/// up. The wire records the dashboard, metrics and golden tests start from.
pub fn quick_and_jammed() -> Vec<Vec<u8>> {
    use crate::wire::encode;
    let quick = kill_at(500, 4242, "quick");
    let mut records = vec![
        encode(&quick),
        encode(&exit_at(507, 4242, quick.victim_mm)),
        encode(&kill_at(1_000, 7, "stuck")),
        encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)),
    ];
    records.extend((0..10).map(|i| encode(&contended_skip_at(3_000 + i * 100, 7))));
    records
}
