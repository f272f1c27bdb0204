//! The oom_reaper's loop as its tracepoints show it: wake, then up to ten attempts, each a
//! skip (with its cause) or a reap pass from start to finish.
use super::{Attempt, AttemptResult, Change, MAX_REAP_ATTEMPTS, Outcome, Tracker, Victim};
use crate::wire::{
    FinishReaping, LockAttempt, ReaperStep, SkipCause, SkipReaping, has_mmf_oom_skip,
};

impl Tracker {
    pub(super) fn wake(&mut self, e: &ReaperStep, changes: &mut Vec<Change>) {
        let id = self.reaper_target(e.victim_pid, e.timestamp_ns);
        let Some(v) = self.victim_mut(id) else { return };
        v.woken_at_ns = Some(e.timestamp_ns);
        v.reaping();
        changes.push(Change::Woken(id));
    }

    pub(super) fn start(&mut self, e: &ReaperStep, changes: &mut Vec<Change>) {
        let id = self.reaper_target(e.victim_pid, e.timestamp_ns);
        let Some(v) = self.victim_mut(id) else { return };
        mark_previous_reap_partial(v);
        v.pending_trylock = None;
        v.reaping();
        v.attempts.push(Attempt {
            started_ns: e.timestamp_ns,
            result: AttemptResult::InProgress,
        });
        let index = v.attempts.len() - 1;
        self.totals.attempts += 1;
        changes.push(Change::Attempt { victim: id, index });
    }

    pub(super) fn finish(&mut self, e: &FinishReaping, changes: &mut Vec<Change>) {
        let id = self.reaper_target(e.victim_pid, e.timestamp_ns);
        let Some(v) = self.victim_mut(id) else { return };
        let traced = v.pending_reap.take();
        let result = AttemptResult::Reaped {
            finished_ns: e.timestamp_ns,
            rss_after: e.rss_after,
            complete: traced,
            complete_traced: traced.is_some(),
        };
        let missed_start = match v.attempts.last_mut() {
            Some(last) if last.result == AttemptResult::InProgress => {
                last.result = result;
                false
            }
            // The start was missed (attached mid-pass): the pass began at an unknown time.
            _ => {
                v.attempts.push(Attempt {
                    started_ns: e.timestamp_ns,
                    result,
                });
                true
            }
        };
        let index = v.attempts.len() - 1;
        if missed_start {
            self.totals.attempts += 1;
        }
        changes.push(Change::Attempt { victim: id, index });
    }

    pub(super) fn skip(&mut self, e: &SkipReaping, changes: &mut Vec<Change>) {
        let id = self.reaper_target(e.victim_pid, e.timestamp_ns);
        let Some(v) = self.victim_mut(id) else { return };
        mark_previous_reap_partial(v);
        let mut reason = e.cause;
        // Read from the lock, "the reaper holds it" rests on the owner field a reader leaves;
        // after an earlier pass of the reaper's over this mm, that may be the old pass's
        // (5.10 to 6.12 leave it on unlock), so the reason is only likely.
        let mut inferred = e.cause_from_lock
            && reason == SkipCause::AlreadySkipped
            && v.attempts
                .iter()
                .any(|a| matches!(a.result, AttemptResult::Reaped { .. }));
        // Without a cause from the kernel, the reaper's own trylock result decides; failing
        // that, the mm's flags: the kernel skips either for MMF_OOM_SKIP or for the lock.
        if reason == SkipCause::Unknown {
            let skip_flag = e.mm_flags.map(has_mmf_oom_skip);
            let locked = v.pending_trylock.map(|(_, locked)| locked);
            if let Some(already_skipped) = locked.or(skip_flag) {
                reason = if already_skipped {
                    SkipCause::AlreadySkipped
                } else {
                    SkipCause::LockContended
                };
                inferred = true;
            }
        }
        // An unexplained skip after which the reaper tried again was a contended lock:
        // the other cause ends the loop.
        if let Some(Attempt {
            result:
                AttemptResult::Skipped {
                    reason: previous @ SkipCause::Unknown,
                    inferred: previous_inferred,
                    ..
                },
            ..
        }) = v.attempts.last_mut()
        {
            *previous = SkipCause::LockContended;
            *previous_inferred = true;
        }
        v.pending_trylock = None;
        if v.mm.is_none() {
            v.mm = e.mm;
        }
        v.reaping();
        v.attempts.push(Attempt {
            started_ns: e.timestamp_ns,
            result: AttemptResult::Skipped {
                reason,
                inferred,
                lock: e.lock.clone(),
                mm_flags: e.mm_flags,
            },
        });
        let index = v.attempts.len() - 1;
        let failed = v.failed_attempts();
        self.totals.attempts += 1;
        *self.totals.skips.entry(reason).or_default() += 1;
        changes.push(Change::Attempt { victim: id, index });
        if reason == SkipCause::AlreadySkipped {
            self.finalize(id, Outcome::AlreadyGone, inferred, e.timestamp_ns, changes);
        } else if failed >= MAX_REAP_ATTEMPTS {
            self.finalize(id, Outcome::GaveUp, true, e.timestamp_ns, changes);
        }
    }

    pub(super) fn lock_attempt(&mut self, e: &LockAttempt) {
        if !e.by_reaper {
            return;
        }
        self.totals.reaper_trylocks += 1;
        if !e.success {
            self.totals.reaper_trylocks_failed += 1;
        }
        let id = self.active_by(e.victim_pid, Some(e.mm));
        if let Some(v) = id.and_then(|id| self.victim_mut(id)) {
            v.pending_trylock = Some((e.timestamp_ns, e.success));
        }
    }
}

/// Another attempt after a reap pass means the pass was partial (an mmu notifier refused),
/// unless the kernel's own return value already said.
pub(super) fn mark_previous_reap_partial(v: &mut Victim) {
    if let Some(Attempt {
        result:
            AttemptResult::Reaped {
                complete,
                complete_traced: false,
                ..
            },
        ..
    }) = v.attempts.last_mut()
    {
        *complete = Some(false);
    }
}
