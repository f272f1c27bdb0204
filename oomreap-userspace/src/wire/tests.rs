use oomreap_common::event::{
    COMM_LEN, EventKind, MarkVictimEvent, NotifierRefusedEvent, ReapCallEvent, RetryCountsEvent,
};

use super::*;
use crate::testing::fixtures::mark_victim_raw;

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
    use crate::testing::fixtures::{contended_skip_at, exit_at, reaper_at};
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
        header: crate::testing::fixtures::header_at(EventKind::ReapCall, 7),
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
        by_exit: 0,
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
        header: crate::testing::fixtures::header_at(EventKind::NotifierRefused, 7),
        mm: 0xabc,
        start: 0x1000,
        end: 0x2000,
        caller_pid: 33,
        victim_pid: 0,
        ret: -11,
        attach: AttachKind::Fentry as u32,
        // More than are listed: only the listed callbacks come out.
        notifier_count: 6,
        interval_notifiers: 5,
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
    // One classic notifier first, then the interval ones.
    assert!(!e.notifiers.is_interval(0));
    assert!(e.notifiers.is_interval(1) && e.notifiers.is_interval(3));
}

#[test]
fn oom_candidates_decode_with_passed_over_ones_and_a_bad_count_refused() {
    use crate::testing::fixtures::oom_candidates_at;
    let raw = oom_candidates_at(
        7,
        20,
        32_768,
        &[
            (20, "hog", 17_000, 64, 500),
            (21, "db", i64::MIN, 100, -1000),
        ],
    );
    let Event::OomCandidates(e) = decode(&encode(&raw)).unwrap() else {
        panic!("not candidates")
    };
    assert_eq!((e.chosen_tgid, e.weighed, e.total_pages), (20, 2, 32_768));
    assert_eq!(e.candidates.len(), 2);
    assert_eq!(e.candidates[0].points, Some(17_000));
    assert_eq!(e.candidates[0].task.comm.as_deref(), Some("hog"));
    assert_eq!(e.candidates[0].memory.map(|m| m.rss_kib), Some(64 << 10));
    assert_eq!(
        (e.candidates[1].points, e.candidates[1].oom_score_adj),
        (None, -1000)
    );
    let bad = oomreap_common::event::OomCandidatesEvent { count: 9, ..raw };
    assert_eq!(
        decode(&encode(&bad)),
        Err(DecodeError::BadLength {
            kind: EventKind::OomCandidates,
            len: 9
        })
    );
}

#[test]
fn reader_count_and_reader_hint() {
    let mut raw = crate::testing::fixtures::contended_skip_at(5, 7);
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
    let mut raw = crate::testing::fixtures::contended_skip_at(5, 7);
    raw.cause = 9;
    assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownSkipCause(9)));
}

fn retry_snapshot(len: u32, kind: u32) -> RetryCountsEvent {
    use oomreap_common::event::{MAX_RETRY_COUNTS, RetryCount, RetryKey};
    RetryCountsEvent {
        header: crate::testing::fixtures::header_at(EventKind::RetryCounts, 1),
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

#[test]
fn the_oom_killers_own_record_is_exact_and_a_derived_domain_is_not() {
    use oomreap_common::event::mark_victim_fields as field;
    let derived = mark_victim_raw(7, "x", 1);
    let Event::MarkVictim(e) = decode(&encode(&derived)).unwrap() else {
        panic!("not a mark_victim")
    };
    let domain = e.domain.expect("walked");
    assert_eq!((domain.exact, domain.constraint()), (None, "memcg"));
    let mut exact = mark_victim_raw(7, "x", 1);
    exact.fields |= field::EXACT;
    (exact.constraint, exact.chosen_points, exact.total_pages) = (3, 1234, 32768);
    let Event::MarkVictim(e) = decode(&encode(&exact)).unwrap() else {
        panic!("not a mark_victim")
    };
    let domain = e.domain.expect("read");
    assert_eq!(domain.constraint(), "memcg");
    let record = domain.exact.expect("exact");
    assert_eq!((record.points, record.total_pages), (1234, 32768));
}

#[test]
fn a_kill_recorded_before_the_domain_existed_decodes_without_one() {
    use oomreap_common::event::mark_victim_fields as field;
    // A record of the older layout: shorter, and none of the newer bits set.
    let mut raw = mark_victim_raw(7, "x", 1);
    raw.fields &= !(field::DOMAIN_WALKED | field::DOMAIN | field::SWAP | field::EXACT);
    let bytes = encode(&raw);
    let older = &bytes[..oomreap_common::event::MARK_VICTIM_EVENT_V1_SIZE];
    let Event::MarkVictim(e) = decode(older).unwrap() else {
        panic!("not a mark_victim")
    };
    assert_eq!((e.victim.pid, e.domain, e.swap_kib), (7, None, None));
}

#[test]
fn the_triggers_stacks_decode_their_valid_frames_and_older_records_have_none() {
    use oomreap_common::event::{MARK_VICTIM_EVENT_V2_SIZE, mark_victim_fields as field};
    let mut raw = crate::testing::fixtures::with_trigger_stacks(mark_victim_raw(7, "x", 1));
    let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
        panic!("not a mark_victim")
    };
    let stacks = e.trigger_stacks.unwrap();
    // The BPF program's own frame is left out: the stack starts in the OOM killer.
    assert_eq!(stacks.kernel.len(), 9);
    assert_eq!(
        stacks.kernel[0].name.as_deref(),
        Some("mark_oom_victim+0xba/0x100")
    );
    assert_eq!(stacks.kernel[0].address, 0xffff_ffff_8120_0100);
    assert_eq!(stacks.user, vec![0x55ee_df8e_431e, 0x55ee_df45_ce97]);
    // A kernel without bpf_snprintf: addresses only, none left out.
    raw.fields &= !field::TRIGGER_STACK_NAMED;
    let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
        panic!("not a mark_victim")
    };
    let stacks = e.trigger_stacks.unwrap();
    assert_eq!(stacks.kernel.len(), 10);
    assert!(stacks.kernel.iter().all(|f| f.name.is_none()));
    // A frame count beyond the array (a corrupt record) reads the array, no more.
    raw.trigger_stack_frames = 1000;
    raw.trigger_user_frames = 1000;
    let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap() else {
        panic!("not a mark_victim")
    };
    let stacks = e.trigger_stacks.unwrap();
    assert_eq!(
        (stacks.kernel.len(), stacks.user.len()),
        (raw.trigger_stack.len(), raw.trigger_user_stack.len())
    );
    // A record from before the stacks: shorter, its bits clear.
    raw.fields &= !(field::TRIGGER_STACK | field::TRIGGER_USER_STACK);
    let bytes = encode(&raw);
    let Event::MarkVictim(e) = decode(&bytes[..MARK_VICTIM_EVENT_V2_SIZE]).unwrap() else {
        panic!("not a mark_victim")
    };
    assert_eq!((e.victim.pid, e.trigger_stacks), (7, None));
    assert!(e.domain.is_some());
}

#[test]
fn a_preempt_rt_lock_reads_as_its_readers_and_rtmutex_say() {
    use oomreap_common::event::lock_flags;
    let decoded = |readers: u64, owner_raw: u64| {
        let mut raw = crate::testing::fixtures::contended_skip_at(5, 7);
        raw.lock.flags |= lock_flags::RT;
        raw.lock.count = readers;
        raw.lock.owner_raw = owner_raw;
        let Event::SkipReaping(skip) = decode(&encode(&raw)).unwrap() else {
            panic!("not a skip")
        };
        skip.lock.expect("a lock")
    };
    // One reader left, a writer waiting for it to drain (READER_BIAS taken away), the
    // rtmutex with waiters: why the reaper's read trylock fails on RT.
    let pending = decoded(1, 0xffff_8880_0000_5001);
    assert!(pending.rt && pending.writer_pending && !pending.writer_locked);
    assert_eq!((pending.readers, pending.waiters_queued), (1, true));
    assert_eq!(pending.owner.as_ref().map(|o| o.reader_hint), Some(false));
    assert_eq!(
        pending.waiters.as_ref().map(|w| w[0].kind),
        Some(WaiterKind::Any)
    );
    // Held by a writer: exactly WRITER_BIAS.
    let held = decoded(1 << 30, 0xffff_8880_0000_5000);
    assert!(held.writer_locked && !held.writer_pending && !held.waiters_queued);
    // No writer: READER_BIAS plus two readers.
    let read = decoded((1 << 31) + 2, 0);
    assert!(!read.writer_locked && !read.writer_pending);
    assert_eq!(read.readers, 2);
}
