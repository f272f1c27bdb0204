//! What silence decides: the kernel traces neither the give-up nor whether a pass was
//! complete, so an active victim is settled when nothing more can come, and marked inferred.
use super::{
    Attempt, AttemptResult, Change, MAX_REAP_ATTEMPTS, Outcome, PASS_WAIT_NS, REAPER_DELAY_NS,
    SETTLE_NS, Tracker, Victim, VictimId,
};
use crate::wire::SkipCause;

impl Tracker {
    /// What silence until `now_ns` decides for an active victim, if anything.
    pub(super) fn settle(&mut self, id: VictimId, now_ns: u64) -> Option<Outcome> {
        let v = self.victim_mut(id)?;
        if v.attempts.is_empty() {
            // Never woken: the reaper's timer found the victim gone (it traces nothing then).
            let (since, wait, outcome) = match v.woken_at_ns {
                Some(woken) => (woken, SETTLE_NS, Outcome::Unknown),
                None => (
                    v.killed_at_ns()?,
                    REAPER_DELAY_NS + SETTLE_NS,
                    Outcome::ExitedBeforeWake,
                ),
            };
            return (now_ns.saturating_sub(since) >= wait).then_some(outcome);
        }
        let count = v.attempts.len();
        let failed_before_last = v.attempts[..count - 1]
            .iter()
            .filter(|a| a.failed())
            .count();
        if now_ns < settle_deadline(v)? {
            return None;
        }
        if ten_partial_passes(v) {
            return Some(Outcome::GaveUp);
        }
        let last = v.attempts.last_mut()?;
        match &mut last.result {
            AttemptResult::Reaped {
                complete: Some(false),
                complete_traced: true,
                ..
            } => {
                // The kernel said this pass was partial, yet it neither retried nor gave up
                // (ten failures): something was missed.
                Some(if failed_before_last + 1 >= MAX_REAP_ATTEMPTS {
                    Outcome::GaveUp
                } else {
                    Outcome::Unknown
                })
            }
            AttemptResult::Reaped { complete, .. } => {
                *complete = Some(true);
                Some(Outcome::Reaped)
            }
            AttemptResult::Skipped {
                reason: reason @ SkipCause::Unknown,
                inferred,
                ..
            } => {
                // An unexplained last skip with attempts to spare: MMF_OOM_SKIP ended the loop.
                *reason = SkipCause::AlreadySkipped;
                *inferred = true;
                Some(Outcome::AlreadyGone)
            }
            AttemptResult::Skipped { .. } | AttemptResult::InProgress => Some(Outcome::Unknown),
        }
    }

    /// Makes `outcome` final for victim `id` and moves it out of the active set.
    pub(super) fn finalize(
        &mut self,
        id: VictimId,
        outcome: Outcome,
        inferred: bool,
        at_ns: u64,
        changes: &mut Vec<Change>,
    ) {
        let Some(v) = self.victim_mut(id) else { return };
        if v.outcome.is_final() {
            return;
        }
        let mut inferred = inferred;
        if outcome == Outcome::Reaped
            && let Some(Attempt {
                result:
                    AttemptResult::Reaped {
                        complete,
                        complete_traced,
                        ..
                    },
                ..
            }) = v.attempts.last_mut()
        {
            // The pass's own result, when traced, makes the outcome a fact, not a deduction.
            if *complete_traced && *complete == Some(true) {
                inferred = false;
            }
            complete.get_or_insert(true);
        }
        v.outcome = outcome;
        v.outcome_inferred = inferred;
        v.finished_at_ns = Some(at_ns);
        let pid = v.pid;
        if let Some(slot) = self.index_of(id).and_then(|i| self.finished.get_mut(i)) {
            *slot = true;
        }
        if self.active.get(&pid) == Some(&id) {
            self.active.remove(&pid);
        }
        *self.totals.outcomes.entry(outcome).or_default() += 1;
        changes.push(Change::Finished(id));
        self.note_finished(id);
        self.judge_if_final(id, changes);
        self.evict();
    }
}

/// The earliest time silence could settle an active victim (see `Tracker::settle`).
pub(super) fn settle_deadline(v: &Victim) -> Option<u64> {
    match v.attempts.last() {
        Some(last) => Some(match last.result {
            AttemptResult::Reaped { finished_ns, .. } => finished_ns.saturating_add(SETTLE_NS),
            AttemptResult::InProgress => last.started_ns.saturating_add(PASS_WAIT_NS),
            _ => last.started_ns.saturating_add(SETTLE_NS),
        }),
        None => match v.woken_at_ns {
            Some(woken) => Some(woken.saturating_add(SETTLE_NS)),
            None => v
                .killed_at_ns()
                .map(|k| k.saturating_add(REAPER_DELAY_NS + SETTLE_NS)),
        },
    }
}

/// Returns true if and only if the victim's last attempt is its tenth, a pass whose result was
/// not traced, after nine failures: the reaper's last pass, partial as the others were, so it
/// gave up (marks the pass partial).
pub(super) fn ten_partial_passes(v: &mut Victim) -> bool {
    let count = v.attempts.len();
    if count != MAX_REAP_ATTEMPTS || v.attempts[..count - 1].iter().any(|a| !a.failed()) {
        return false;
    }
    match v.attempts.last_mut() {
        Some(Attempt {
            result:
                AttemptResult::Reaped {
                    complete: complete @ (None | Some(false)),
                    ..
                },
            ..
        }) => {
            *complete = Some(false);
            true
        }
        _ => false,
    }
}

/// Returns true if and only if the last attempt was a reap pass (so exit_mmap after it means
/// the reap stood).
pub(super) fn settled_reap(v: &Victim) -> bool {
    matches!(
        v.attempts.last(),
        Some(Attempt {
            result: AttemptResult::Reaped { .. },
            ..
        })
    )
}
