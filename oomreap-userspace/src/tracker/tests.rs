//! Tracker tests from event streams: one per outcome, plus the awkward cases.
use oomreap_common::event::{AttachKind, SkipCause};

use super::*;
use crate::wire::{
    ExitMmap, FinishReaping, LockAttempt, MarkVictim, Mrelease, NotifierRefused, Notifiers,
    ReapCall, ReaperStep, RetryCounter, RetryCounts, RetryKind, Rss, SkipReaping, Task,
    VictimMemory,
};

const MS: u64 = 1_000_000;
/// The victims' mm addresses: pid * MM_STRIDE.
const MM_STRIDE: u64 = 0x1000;

/// Builds event streams at millisecond times.
#[derive(Default)]
struct Stream(Vec<Event>);

fn task(pid: u32, comm: &str) -> Task {
    Task {
        pid,
        tgid: Some(pid),
        comm: Some(comm.into()),
    }
}

impl Stream {
    fn kill(mut self, ms: u64, pid: u32) -> Self {
        self.0.push(Event::MarkVictim(MarkVictim {
            timestamp_ns: ms * MS,
            attach: AttachKind::BtfTracePoint,
            victim: task(pid, "hog"),
            uid: Some(0),
            oom_score_adj: Some(0),
            memory: Some(VictimMemory {
                total_vm_kib: 70_000,
                anon_rss_kib: 64_000,
                file_rss_kib: 2_000,
                shmem_rss_kib: 0,
                pgtables_kib: 200,
            }),
            mm: Some(u64::from(pid) * MM_STRIDE),
            memcg_id: Some(42),
            notifiers: Some(Notifiers {
                count: 0,
                interval: 0,
                callbacks: vec![],
            }),
            parent_tgid: Some(1),
            trigger: task(pid, "hog"),
            domain: None,
            swap_kib: None,
            trigger_stacks: None,
            mmap_lock_blocks_readers: None,
        }));
        self
    }
    fn kill_mm(mut self, ms: u64, pid: u32, mm: u64) -> Self {
        self = self.kill(ms, pid);
        if let Some(Event::MarkVictim(e)) = self.0.last_mut() {
            e.mm = Some(mm);
        }
        self
    }
    fn wake(mut self, ms: u64, pid: u32) -> Self {
        self.0.push(Event::WakeReaper(ReaperStep {
            timestamp_ns: ms * MS,
            victim_pid: pid,
        }));
        self
    }
    fn trylock(mut self, ms: u64, pid: u32, success: bool) -> Self {
        self.0.push(Event::LockAttempt(LockAttempt {
            timestamp_ns: ms * MS,
            mm: u64::from(pid) * MM_STRIDE,
            caller_pid: 40,
            caller_tgid: 40,
            write: false,
            success,
            by_reaper: true,
            victim_pid: Some(pid),
        }));
        self
    }
    fn reap(mut self, ms: u64, pid: u32, anon_after_kib: u64) -> Self {
        self.0.push(Event::StartReaping(ReaperStep {
            timestamp_ns: ms * MS,
            victim_pid: pid,
        }));
        self.0.push(Event::FinishReaping(FinishReaping {
            timestamp_ns: (ms + 5) * MS,
            victim_pid: pid,
            rss_after: Some(Rss {
                anon_kib: anon_after_kib,
                file_kib: 0,
                shmem_kib: 0,
            }),
        }));
        self
    }
    fn skip(self, ms: u64, pid: u32, cause: SkipCause) -> Self {
        self.skip_with_flags(ms, pid, cause, None)
    }
    /// A skip whose cause the kernel side read from the lock, not from the trylock hook.
    fn skip_read_from_lock(mut self, ms: u64, pid: u32, cause: SkipCause) -> Self {
        self = self.skip(ms, pid, cause);
        if let Some(Event::SkipReaping(e)) = self.0.last_mut() {
            e.cause_from_lock = true;
        }
        self
    }
    fn skip_with_flags(mut self, ms: u64, pid: u32, cause: SkipCause, flags: Option<u64>) -> Self {
        self.0.push(Event::SkipReaping(SkipReaping {
            timestamp_ns: ms * MS,
            victim_pid: pid,
            cause,
            mm: Some(u64::from(pid) * MM_STRIDE),
            mm_flags: flags,
            lock: None,
            cause_from_lock: false,
        }));
        self
    }
    /// Contended skips every 100 ms, as the reaper retries.
    fn contended(mut self, from_ms: u64, pid: u32, n: u64) -> Self {
        for i in 0..n {
            self = self.skip(from_ms + i * 100, pid, SkipCause::LockContended);
        }
        self
    }
    fn exit(mut self, ms: u64, pid: u32) -> Self {
        self.0.push(Event::ExitMmap(ExitMmap {
            timestamp_ns: ms * MS,
            mm: u64::from(pid) * MM_STRIDE,
            victim_pid: pid,
            by: task(pid, "hog"),
        }));
        self
    }
    fn mrelease(mut self, ms: u64, pid: u32, ret: i64) -> Self {
        self.0.push(Event::Mrelease(Mrelease {
            timestamp_ns: ms * MS,
            entered_ns: (ms - 3) * MS,
            ret,
            caller: task(900, "lmkd"),
            pidfd: 3,
            mm: Some(u64::from(pid) * MM_STRIDE),
            victim_pid: Some(pid),
            target: crate::wire::MreleaseTarget::default(),
        }));
        self
    }
    /// `__oom_reap_task_mm` returning at `ms`, as fexit or kretprobe reports it.
    fn reap_call(mut self, ms: u64, pid: u32, complete: bool, by_reaper: bool) -> Self {
        self.0.push(Event::ReapCall(ReapCall {
            timestamp_ns: ms * MS,
            entered_ns: (ms - 1) * MS,
            mm: u64::from(pid) * MM_STRIDE,
            caller: if by_reaper {
                task(40, "oom_reaper")
            } else {
                task(900, "lmkd")
            },
            victim_pid: Some(pid),
            complete,
            by_reaper,
            by_exit: false,
            attach: AttachKind::Fentry,
            refusals: u32::from(!complete),
        }));
        self
    }
    /// The victim's own reap as it exits (5.10's exit_mmap reaps an OOM victim itself).
    fn exit_reap(mut self, ms: u64, pid: u32) -> Self {
        self.0.push(Event::ReapCall(ReapCall {
            timestamp_ns: ms * MS,
            entered_ns: (ms - 1) * MS,
            mm: u64::from(pid) * MM_STRIDE,
            caller: task(pid, "hog"),
            victim_pid: Some(pid),
            complete: true,
            by_reaper: false,
            by_exit: true,
            attach: AttachKind::Fentry,
            refusals: 0,
        }));
        self
    }
    /// A reaper pass with its traced result, as the tracepoints and fexit report it.
    fn traced_reap(mut self, ms: u64, pid: u32, complete: bool) -> Self {
        self.0.push(Event::StartReaping(ReaperStep {
            timestamp_ns: ms * MS,
            victim_pid: pid,
        }));
        self = self.reap_call(ms + 4, pid, complete, true);
        self.0.push(Event::FinishReaping(FinishReaping {
            timestamp_ns: (ms + 5) * MS,
            victim_pid: pid,
            rss_after: None,
        }));
        self
    }
    fn refusal(mut self, ms: u64, pid: u32) -> Self {
        self.0.push(Event::NotifierRefused(NotifierRefused {
            timestamp_ns: ms * MS,
            mm: u64::from(pid) * MM_STRIDE,
            range: Some((0x7f00_0000_0000, 0x7f00_0010_0000)),
            caller_pid: 40,
            victim_pid: Some(pid),
            ret: -11,
            attach: AttachKind::Fentry,
            notifiers: Notifiers {
                count: 1,
                interval: 1,
                callbacks: vec![0xffff_ffff_c0de_0000],
            },
        }));
        self
    }
    fn retries(mut self, ms: u64, reclaim: u64) -> Self {
        self.0.push(Event::RetryCounts(RetryCounts {
            timestamp_ns: ms * MS,
            counts: vec![(
                RetryCounter {
                    what: RetryKind::Reclaim,
                    node: Some(0),
                    zone: Some(1),
                    order: 0,
                },
                reclaim,
            )],
        }));
        self
    }

    /// Runs the stream, ticking at each event's time, then `settle_ms` later.
    fn run(self, settle_ms: u64) -> (Tracker, Vec<Change>) {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        let mut last = 0;
        for event in &self.0 {
            last = event.timestamp_ns();
            changes.extend(tracker.tick(last));
            changes.extend(tracker.apply(event));
        }
        changes.extend(tracker.tick(last + settle_ms * MS));
        (tracker, changes)
    }
}

fn only_victim(tracker: &Tracker) -> &Victim {
    let victims: Vec<&Victim> = tracker.victims().collect();
    assert_eq!(victims.len(), 1, "victims: {victims:#?}");
    victims[0]
}

fn outcome(v: &Victim) -> (Outcome, bool) {
    (v.outcome, v.outcome_inferred)
}

#[test]
fn quick_exit_before_the_reaper_woke() {
    let (tracker, changes) = Stream::default().kill(0, 10).exit(12, 10).run(5_000);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::ExitedBeforeWake, false));
    assert_eq!(v.kill_to_mm_freed_ns(), Some(12 * MS));
    assert_eq!(v.kill_to_wake_ns(), None);
    assert_eq!(
        changes,
        [
            Change::VictimMarked(v.id),
            Change::MmFreed(v.id),
            Change::Finished(v.id)
        ]
    );
}

#[test]
fn reaped_is_settled_by_silence() {
    let stream = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .trylock(2_001, 10, true)
        .reap(2_001, 10, 1_000);
    let (tracker, _) = stream.run(300);
    assert_eq!(
        only_victim(&tracker).outcome,
        Outcome::Reaping,
        "not settled after 300 ms"
    );
    let stream = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .trylock(2_001, 10, true)
        .reap(2_001, 10, 1_000);
    let (tracker, _) = stream.run(1_500);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::Reaped, true));
    assert_eq!(v.kill_to_wake_ns(), Some(2_000 * MS));
    assert_eq!(v.kill_to_reaped_ns(), Some(2_006 * MS));
    assert_eq!(v.reap_duration_ns(), Some(5 * MS));
    assert_eq!(v.freed_by_reaper_kib(), Some(66_000 - 1_000));
    assert!(matches!(
        v.attempts[0].result,
        AttemptResult::Reaped {
            complete: Some(true),
            ..
        }
    ));
}

#[test]
fn a_long_pass_waits_for_its_finish() {
    // The start at 2,001 ms; the finish 5 s later: a big victim, or a starved CPU.
    let started = || {
        let mut stream = Stream::default().kill(0, 10).wake(2_000, 10);
        stream.0.push(Event::StartReaping(ReaperStep {
            timestamp_ns: 2_001 * MS,
            victim_pid: 10,
        }));
        stream
    };
    let (tracker, _) = started().run(PASS_WAIT_NS / MS - 1);
    assert_eq!(only_victim(&tracker).outcome, Outcome::Reaping);
    let mut stream = started();
    stream.0.push(Event::FinishReaping(FinishReaping {
        timestamp_ns: 7_001 * MS,
        victim_pid: 10,
        rss_after: None,
    }));
    let (tracker, _) = stream.run(1_500);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::Reaped, true));
    assert_eq!(v.reap_duration_ns(), Some(5_000 * MS));
    // A finish that never comes (lost): unknown, once the pass has had its time.
    let (tracker, _) = started().run(PASS_WAIT_NS / MS);
    assert_eq!(outcome(only_victim(&tracker)), (Outcome::Unknown, true));
}

#[test]
fn exit_mmap_after_a_reap_settles_it_at_once() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .reap(2_001, 10, 0)
        .exit(2_010, 10)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.kill_to_mm_freed_ns(), Some(2_010 * MS));
}

#[test]
fn ten_contended_attempts_give_up() {
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .contended(2_000, 10, 10)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::GaveUp, true));
    assert_eq!(v.failed_attempts(), 10);
    assert!(v.lock_contended());
    assert_eq!(changes.last(), Some(&Change::Finished(v.id)));
    assert_eq!(
        tracker.totals().skips.get(&SkipCause::LockContended),
        Some(&10)
    );
    assert_eq!(tracker.totals().outcomes.get(&Outcome::GaveUp), Some(&1));
}

#[test]
fn contention_that_clears_ends_in_a_reap() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .contended(2_000, 10, 3)
        .reap(2_300, 10, 0)
        .run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!((v.attempts.len(), v.failed_attempts()), (4, 3));
}

#[test]
fn mmf_oom_skip_means_already_gone() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .skip(2_001, 10, SkipCause::AlreadySkipped)
        .run(0);
    assert_eq!(
        outcome(only_victim(&tracker)),
        (Outcome::AlreadyGone, false)
    );
}

#[test]
fn mmf_oom_skip_read_from_the_lock_is_exact_unless_the_reaper_held_it_before() {
    // First attempt: the reaper holds the lock it just took, the skip is for MMF_OOM_SKIP.
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .skip_read_from_lock(2_001, 10, SkipCause::AlreadySkipped)
        .run(0);
    assert_eq!(
        outcome(only_victim(&tracker)),
        (Outcome::AlreadyGone, false)
    );
    // After a partial pass of its own, the owner field may be that pass's: only likely.
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .reap(2_000, 10, 30_000)
        .skip_read_from_lock(2_100, 10, SkipCause::AlreadySkipped)
        .run(0);
    assert_eq!(outcome(only_victim(&tracker)), (Outcome::AlreadyGone, true));
}

#[test]
fn a_pass_followed_by_another_was_partial() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .reap(2_000, 10, 30_000)
        .reap(2_100, 10, 20_000)
        .reap(2_200, 10, 0)
        .run(2_000);
    let v = only_victim(&tracker);
    let complete: Vec<Option<bool>> = v
        .attempts
        .iter()
        .map(|a| match a.result {
            AttemptResult::Reaped { complete, .. } => complete,
            _ => None,
        })
        .collect();
    assert_eq!(complete, [Some(false), Some(false), Some(true)]);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.reap_duration_ns(), Some(15 * MS));
}

#[test]
fn ten_partial_passes_give_up() {
    let mut stream = Stream::default().kill(0, 10).wake(2_000, 10);
    for i in 0..10 {
        stream = stream.reap(2_000 + i * 100, 10, 30_000);
    }
    let (tracker, _) = stream.run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::GaveUp, true));
    assert_eq!(v.failed_attempts(), 10);
    // Tracepoints only: each pass is partial because another followed, and the tenth
    // because nine before it were; the lock never failed, so the notifier made it give up.
    assert_eq!(v.partial_passes(), 10);
    assert_eq!(v.give_up_cause(), Some(GiveUpCause::Notifier));
}

#[test]
fn an_exit_right_after_ten_partial_passes_is_still_a_give_up() {
    // The victim exits before silence could settle its tenth pass: that pass was partial
    // like the nine before it, so the reaper gave up, and the exit freed the memory.
    let mut stream = Stream::default().kill(0, 10).wake(2_000, 10);
    for i in 0..10 {
        stream = stream.reap(2_000 + i * 100, 10, 30_000);
    }
    let (tracker, _) = stream.exit(3_050, 10).run(0);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::GaveUp, true));
    assert_eq!(v.give_up_cause(), Some(GiveUpCause::Notifier));
    assert_eq!(v.partial_passes(), 10);
    assert!(v.mm_freed_at_ns.is_some());
}

#[test]
fn a_give_up_names_the_lock_or_both_causes() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .contended(2_000, 10, 10)
        .run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.give_up_cause(), Some(GiveUpCause::Lock));
    assert_eq!(v.partial_passes(), 0);

    let mut stream = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .contended(2_000, 10, 4);
    for i in 4..10 {
        stream = stream.reap(2_000 + i * 100, 10, 30_000);
    }
    let (tracker, _) = stream.run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::GaveUp);
    assert_eq!(v.give_up_cause(), Some(GiveUpCause::Mixed));
    assert_eq!(
        (v.lock_contended_attempts(), v.partial_reaper_passes()),
        (4, 6)
    );
}

#[test]
fn unknown_causes_are_inferred_from_the_pattern() {
    // Classic tracepoints without BTF: no cause. Another attempt after a skip means the lock
    // was contended; a last skip with attempts to spare means MMF_OOM_SKIP.
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .skip(2_000, 10, SkipCause::Unknown)
        .skip(2_100, 10, SkipCause::Unknown)
        .run(2_000);
    let v = only_victim(&tracker);
    let reasons: Vec<(SkipCause, bool)> = v
        .attempts
        .iter()
        .map(|a| match a.result {
            AttemptResult::Skipped {
                reason, inferred, ..
            } => (reason, inferred),
            _ => panic!("{a:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (SkipCause::LockContended, true),
            (SkipCause::AlreadySkipped, true)
        ]
    );
    assert_eq!(outcome(v), (Outcome::AlreadyGone, true));
}

#[test]
fn the_mm_flags_explain_an_unknown_skip() {
    // Dumpable and the default coredump filter, with and without MMF_OOM_SKIP (bit 21).
    let plain = 0xcd;
    let skipping = plain | 1 << crate::wire::MMF_OOM_SKIP_BIT;
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .skip_with_flags(2_000, 10, SkipCause::Unknown, Some(plain))
        .skip_with_flags(2_100, 10, SkipCause::Unknown, Some(skipping))
        .run(0);
    let v = only_victim(&tracker);
    let seen: Vec<_> = v
        .attempts
        .iter()
        .map(|a| match a.result {
            AttemptResult::Skipped {
                reason,
                inferred,
                mm_flags,
                ..
            } => (reason, inferred, mm_flags),
            _ => panic!("{a:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            (SkipCause::LockContended, true, Some(plain)),
            (SkipCause::AlreadySkipped, true, Some(skipping))
        ]
    );
    assert_eq!(outcome(v), (Outcome::AlreadyGone, true));
}

#[test]
fn a_trylock_record_explains_an_unknown_skip() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .trylock(2_000, 10, false)
        .skip(2_000, 10, SkipCause::Unknown)
        .run(0);
    let v = only_victim(&tracker);
    assert!(matches!(
        v.attempts[0].result,
        AttemptResult::Skipped {
            reason: SkipCause::LockContended,
            inferred: true,
            ..
        }
    ));
}

#[test]
fn interleaved_victims_keep_their_own_stories() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .kill(1, 11)
        .wake(2_000, 10)
        .wake(2_001, 11)
        .skip(2_002, 11, SkipCause::LockContended)
        .reap(2_003, 10, 0)
        .exit(2_050, 11)
        .skip(2_102, 11, SkipCause::AlreadySkipped)
        .run(2_000);
    let outcomes: Vec<(u32, Outcome)> = tracker.victims().map(|v| (v.pid, v.outcome)).collect();
    assert_eq!(
        outcomes,
        [(10, Outcome::Reaped), (11, Outcome::AlreadyGone)]
    );
}

#[test]
fn a_victim_killed_twice_is_one_victim() {
    let (tracker, changes) = Stream::default().kill(0, 10).kill(5, 10).exit(9, 10).run(0);
    let v = only_victim(&tracker);
    assert_eq!(v.times_marked, 2);
    assert!(changes.contains(&Change::MarkedAgain(v.id)));
    assert_eq!(tracker.totals().victims, 1);
}

#[test]
fn a_reused_pid_is_a_new_victim() {
    let (tracker, _) = Stream::default()
        .kill_mm(0, 10, 0xa000)
        .kill_mm(10_000, 10, 0xb000)
        .run(0);
    let victims: Vec<(VictimId, Option<u64>, Outcome)> =
        tracker.victims().map(|v| (v.id, v.mm, v.outcome)).collect();
    assert_eq!(
        victims,
        [
            // The first victim settled as exited once the reaper's delay passed in silence.
            (VictimId(1), Some(0xa000), Outcome::ExitedBeforeWake),
            (VictimId(2), Some(0xb000), Outcome::Pending),
        ]
    );
}

#[test]
fn events_for_an_unknown_pid_make_an_unseen_victim() {
    let (tracker, _) = Stream::default().wake(100, 77).reap(101, 77, 0).run(2_000);
    let v = only_victim(&tracker);
    assert_eq!((v.pid, v.killed_at_ns(), v.kill.as_ref()), (77, None, None));
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.kill_to_reaped_ns(), None);
}

#[test]
fn a_victim_never_woken_exited_on_its_own() {
    let (tracker, _) = Stream::default().kill(0, 10).run(3_500);
    assert_eq!(
        outcome(only_victim(&tracker)),
        (Outcome::ExitedBeforeWake, true)
    );
}

#[test]
fn process_mrelease_releases_a_victim() {
    let (tracker, changes) = Stream::default().kill(0, 10).mrelease(20, 10, 0).run(0);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    assert_eq!(v.mreleases.len(), 1);
    assert_eq!(
        v.mreleases[0].returned_ns - v.mreleases[0].entered_ns,
        3 * MS
    );
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::Mrelease {
            victim: Some(_),
            ..
        }
    )));
    assert_eq!(tracker.totals().mreleases.get(&0), Some(&1));
}

#[test]
fn a_failed_mrelease_on_a_stranger_is_counted() {
    let (tracker, changes) = Stream::default().mrelease(20, 55, -22).run(0);
    assert_eq!(tracker.victims().count(), 0);
    assert!(matches!(
        changes[..],
        [Change::Mrelease { victim: None, .. }]
    ));
    assert_eq!(tracker.totals().mreleases.get(&-22), Some(&1));
}

#[test]
fn retries_are_attributed_to_the_next_victim() {
    let (tracker, _) = Stream::default()
        .retries(0, 5)
        .kill(0, 10)
        .retries(100, 12)
        .kill(100, 11)
        .run(0);
    let deltas: Vec<u64> = tracker
        .victims()
        .map(|v| v.retries_before.iter().map(|(_, n)| n).sum())
        .collect();
    assert_eq!(deltas, [5, 7]);
}

#[test]
fn finished_victims_are_evicted_active_ones_kept() {
    let mut tracker = Tracker::with_capacity(2);
    let stream = Stream::default()
        .kill(0, 1)
        .exit(1, 1)
        .kill(2, 2)
        .exit(3, 2)
        .kill(4, 3)
        .exit(5, 3)
        .kill(6, 4);
    for event in &stream.0 {
        tracker.apply(event);
    }
    let pids: Vec<u32> = tracker.victims().map(|v| v.pid).collect();
    assert_eq!(pids, [2, 3, 4]);
    assert_eq!(tracker.totals().victims, 4);
}

#[test]
fn same_stream_same_state() {
    let stream = || {
        Stream::default()
            .kill(0, 10)
            .wake(2_000, 10)
            .contended(2_000, 10, 4)
            .reap(2_400, 10, 0)
    };
    let (a, _) = stream().run(2_000);
    let (b, _) = stream().run(2_000);
    assert_eq!(
        a.victims().collect::<Vec<_>>(),
        b.victims().collect::<Vec<_>>()
    );
    assert_eq!(a.totals(), b.totals());
}

#[test]
fn exit_mmap_after_the_outcome_still_counts() {
    // A stuck thread keeps the mm alive after the reap: exit_mmap comes after the outcome.
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .reap(2_001, 10, 0)
        .exit(3_600, 10)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.kill_to_mm_freed_ns(), Some(3_600 * MS));
    let finished = changes
        .iter()
        .position(|c| *c == Change::Finished(v.id))
        .unwrap();
    let freed = changes
        .iter()
        .position(|c| *c == Change::MmFreed(v.id))
        .unwrap();
    assert!(finished < freed, "{changes:?}");
}

/// (complete, traced) of each reap pass.
fn pass_results(v: &Victim) -> Vec<(Option<bool>, bool)> {
    v.attempts
        .iter()
        .filter_map(|a| match a.result {
            AttemptResult::Reaped {
                complete,
                complete_traced,
                ..
            } => Some((complete, complete_traced)),
            _ => None,
        })
        .collect()
}

#[test]
fn traced_reap_results_are_exact() {
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .traced_reap(2_000, 10, false)
        .refusal(2_003, 10)
        .traced_reap(2_100, 10, true)
        .run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(pass_results(v), [(Some(false), true), (Some(true), true)]);
    // The last pass said itself it was complete: the outcome is a fact.
    assert_eq!(outcome(v), (Outcome::Reaped, false));
    assert_eq!(v.reap_calls.len(), 2);
    assert_eq!(v.notifier_refusals.len(), 1);
    let totals = tracker.totals();
    assert_eq!(
        (
            totals.reap_calls_complete,
            totals.reap_calls_partial,
            totals.notifier_refusals
        ),
        (1, 1, 1)
    );
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::NotifierRefused {
            victim: Some(_),
            ..
        }
    )));
}

#[test]
fn ten_traced_partial_passes_give_up() {
    let mut stream = Stream::default().kill(0, 10).wake(2_000, 10);
    for i in 0..10 {
        stream = stream.traced_reap(2_000 + i * 100, 10, false);
    }
    let (tracker, _) = stream.run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::GaveUp);
    assert!(pass_results(v).iter().all(|r| *r == (Some(false), true)));
}

#[test]
fn a_traced_partial_last_pass_is_not_called_reaped() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .traced_reap(2_000, 10, false)
        .run(2_000);
    assert_eq!(only_victim(&tracker).outcome, Outcome::Unknown);
}

#[test]
fn process_mrelease_is_seen_through_its_reap_call() {
    // Without syscall tracepoints the reap call alone settles it ...
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .reap_call(20, 10, true, false)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    assert_eq!(v.reap_calls.len(), 1);
    // ... and the syscall's return, when traced, joins the same victim.
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .reap_call(19, 10, true, false)
        .mrelease(20, 10, 0)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    assert_eq!(v.mreleases.len(), 1);
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::Mrelease {
            victim: Some(_),
            ..
        }
    )));
    assert_eq!(tracker.totals().outcomes.get(&Outcome::Released), Some(&1));
}

#[test]
fn a_partial_mrelease_reap_does_not_release() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .reap_call(19, 10, false, false)
        .mrelease(20, 10, -11)
        .wake(2_000, 10)
        .traced_reap(2_000, 10, true)
        .run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.reap_calls.len(), 2);
    // The call's own partial reap and its -EAGAIN are one pass.
    assert_eq!(v.partial_mrelease_passes(), 1);
    assert_eq!(v.give_up_cause(), None);
}

#[test]
fn an_exiting_victims_own_reap_is_not_a_release() {
    // 5.10: the victim's exit_mmap reaps it before the reaper's attempt finds MMF_OOM_SKIP.
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .exit_reap(5, 10)
        .wake(6, 10)
        .skip(7, 10, SkipCause::AlreadySkipped)
        .run(2_000);
    let v = only_victim(&tracker);
    assert_eq!(v.outcome, Outcome::AlreadyGone);
    assert_eq!(v.reap_calls[0].caller_name(), "exit_mmap");
    assert_eq!(v.partial_mrelease_passes(), 0);
}

#[test]
fn with_tracepoints_only_process_mrelease_eagain_is_a_partial_pass() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .mrelease(20, 10, -11)
        .mrelease(40, 10, -11)
        .run(0);
    let v = only_victim(&tracker);
    assert_eq!(v.partial_mrelease_passes(), 2);
    assert_eq!(v.partial_passes(), 2);
    // -EAGAIN released nothing: the victim waits for the reaper.
    assert_ne!(v.outcome, Outcome::Released);
}

/// One kill, one victim, one outcome: whatever came late joined it.
fn counted_once(tracker: &Tracker) -> &Victim {
    let v = only_victim(tracker);
    assert_eq!(tracker.totals().victims, 1);
    assert_eq!(tracker.totals().outcomes.values().sum::<u64>(), 1);
    v
}

#[test]
fn process_mrelease_before_the_wake_keeps_the_reapers_late_pass_on_its_victim() {
    // process_mrelease does not stop the reaper's timer: 2 s after the kill it still wakes
    // and reaps the same task, which the victim, stuck, has not yet left.
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .mrelease(500, 10, 0)
        .wake(2_000, 10)
        .reap(2_000, 10, 0)
        .run(2_000);
    let v = counted_once(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    assert_eq!(v.woken_at_ns, Some(2_000 * MS));
    assert_eq!(v.attempts.len(), 1);
    assert!(v.after_outcome(v.attempts[0].started_ns));
    assert!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Finished(_)))
            .count()
            == 1
    );
}

#[test]
fn process_mrelease_between_the_reapers_attempts_ends_the_story_once() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .contended(2_000, 10, 2)
        .mrelease(2_150, 10, 0)
        .skip(2_200, 10, SkipCause::AlreadySkipped)
        .run(2_000);
    let v = counted_once(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    assert_eq!(v.attempts.len(), 3);
    assert_eq!(v.mreleases.len(), 1);
}

#[test]
fn process_mrelease_after_the_reaper_finished_joins_the_reaped_victim() {
    let (tracker, changes) = Stream::default()
        .kill(0, 10)
        .wake(2_000, 10)
        .reap(2_000, 10, 0)
        .exit(2_500, 10)
        .mrelease(4_000, 10, 0)
        .run(0);
    let v = counted_once(&tracker);
    assert_eq!(v.outcome, Outcome::Reaped);
    assert_eq!(v.mreleases.len(), 1);
    assert!(v.after_outcome(v.mreleases[0].returned_ns));
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::Mrelease {
            victim: Some(_),
            ..
        }
    )));
}

#[test]
fn process_mrelease_twice_is_two_calls_on_one_victim() {
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .mrelease(500, 10, 0)
        .mrelease(600, 10, -22)
        .run(5_000);
    let v = counted_once(&tracker);
    assert_eq!(outcome(v), (Outcome::Released, false));
    let rets: Vec<i64> = v.mreleases.iter().map(|c| c.ret).collect();
    assert_eq!(rets, [0, -22]);
}

#[test]
fn a_reaper_step_past_the_window_is_a_victim_whose_kill_was_not_seen() {
    // The same pid, long after its victim's story ended: a reused pid, not a late pass.
    let late = LATE_WINDOW_NS / MS + 1_000;
    let (tracker, _) = Stream::default()
        .kill(0, 10)
        .exit(12, 10)
        .wake(late, 10)
        .reap(late, 10, 0)
        .run(2_000);
    let victims: Vec<&Victim> = tracker.victims().collect();
    assert_eq!(victims.len(), 2);
    assert!(victims[1].killed_at_ns().is_none() && victims[1].attempts.len() == 1);
}
