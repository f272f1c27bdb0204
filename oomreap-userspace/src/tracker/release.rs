//! The other ways a victim's memory goes: exit_mmap, process_mrelease(2), and (with function
//! hooks) `__oom_reap_task_mm`'s return and the mmu notifiers that refused it.
use super::{
    Attempt, AttemptResult, Change, MreleaseCall, Outcome, REFUSALS_KEPT, Tracker, VictimId,
    settle::{settled_reap, ten_partial_passes},
};
use crate::wire::{ExitMmap, Mrelease, NotifierRefused, ReapCall};

impl Tracker {
    pub(super) fn exit_mmap(&mut self, e: &ExitMmap, changes: &mut Vec<Change>) {
        // The reaper often settles a victim before its memory is finally freed (a stuck
        // thread keeps the mm alive), so finished victims are matched too.
        let Some(id) = self
            .active_by(Some(e.victim_pid), Some(e.mm))
            .or_else(|| self.finished_awaiting_exit(e.mm))
        else {
            return;
        };
        let Some(v) = self.victim_mut(id) else { return };
        v.mm_freed_at_ns = Some(e.timestamp_ns);
        v.mm_freed_by = Some(e.by.clone());
        let never_woken = v.woken_at_ns.is_none() && v.attempts.is_empty();
        let reaped = settled_reap(v);
        // The tenth pass of a victim whose every pass was partial was partial too: the
        // reaper gave up, and the victim's own exit freed its memory.
        let gave_up = reaped && ten_partial_passes(v);
        changes.push(Change::MmFreed(id));
        if never_woken {
            self.finalize(
                id,
                Outcome::ExitedBeforeWake,
                false,
                e.timestamp_ns,
                changes,
            );
        } else if gave_up {
            self.finalize(id, Outcome::GaveUp, true, e.timestamp_ns, changes);
        } else if reaped {
            self.finalize(id, Outcome::Reaped, true, e.timestamp_ns, changes);
        }
    }

    /// The newest finished victim with this mm whose memory was not yet seen freed.
    pub(super) fn finished_awaiting_exit(&self, mm: u64) -> Option<VictimId> {
        self.victims
            .iter()
            .rev()
            .find(|v| v.mm == Some(mm) && v.mm_freed_at_ns.is_none())
            .map(|v| v.id)
    }

    pub(super) fn mrelease(&mut self, e: &Mrelease, changes: &mut Vec<Change>) {
        *self.totals.mreleases.entry(e.ret).or_default() += 1;
        let call = MreleaseCall {
            entered_ns: e.entered_ns,
            returned_ns: e.timestamp_ns,
            ret: e.ret,
            caller: e.caller.clone(),
            target: e.target.clone(),
        };
        let target_pid = e.target.task.as_ref().and_then(|t| t.tgid);
        let id = self
            .active_by(e.victim_pid, e.mm)
            // The call's own reap (fentry/kprobe modes) may have settled the victim already.
            .or_else(|| e.mm.and_then(|mm| self.released_by(mm, e.caller.pid)))
            // A later call on a victim whose story already ended is still that victim's.
            .or_else(|| self.recent_by(e.victim_pid.or(target_pid), e.mm, e.timestamp_ns));
        let Some(id) = id else {
            changes.push(Change::Mrelease { victim: None, call });
            return;
        };
        let Some(v) = self.victim_mut(id) else { return };
        v.mreleases.push(call.clone());
        changes.push(Change::Mrelease {
            victim: Some(id),
            call,
        });
        if e.ret == 0 {
            // No-op when the call's reap already settled it.
            self.finalize(id, Outcome::Released, false, e.timestamp_ns, changes);
        }
    }

    pub(super) fn reap_call(&mut self, e: &ReapCall, changes: &mut Vec<Change>) {
        if e.complete {
            self.totals.reap_calls_complete += 1;
        } else {
            self.totals.reap_calls_partial += 1;
        }
        let id = self
            .active_by(e.victim_pid, Some(e.mm))
            .or_else(|| self.recent_by(e.victim_pid, Some(e.mm), e.timestamp_ns));
        let Some(v) = id.and_then(|id| self.victim_mut(id)) else {
            changes.push(Change::ReapCall {
                victim: None,
                call: e.clone(),
            });
            return;
        };
        v.reap_calls.push(e.clone());
        if e.by_reaper {
            // The call runs between start_task_reaping and finish_task_reaping: `finish`
            // takes the result. A finish already seen (events out of order) takes it now.
            match v.attempts.last_mut() {
                Some(Attempt {
                    result:
                        AttemptResult::Reaped {
                            complete,
                            complete_traced,
                            ..
                        },
                    ..
                }) => {
                    *complete = Some(e.complete);
                    *complete_traced = true;
                }
                _ => v.pending_reap = Some(e.complete),
            }
        }
        let id = v.id;
        changes.push(Change::ReapCall {
            victim: Some(id),
            call: e.clone(),
        });
        // process_mrelease's reap freed everything: the victim was released, whether or not
        // its syscall return is seen (that needs tracefs). An exiting victim's own reap
        // (before 6.0) is its exit, which the reaper or exit_mmap settles.
        if e.by_mrelease() && e.complete {
            self.finalize(id, Outcome::Released, false, e.timestamp_ns, changes);
        }
    }

    pub(super) fn notifier_refused(&mut self, e: &NotifierRefused, changes: &mut Vec<Change>) {
        self.totals.notifier_refusals += 1;
        let id = self
            .active_by(e.victim_pid, Some(e.mm))
            .or_else(|| self.recent_by(e.victim_pid, Some(e.mm), e.timestamp_ns));
        if let Some(v) = id.and_then(|id| self.victim_mut(id))
            && v.notifier_refusals.len() < REFUSALS_KEPT
        {
            v.notifier_refusals.push(e.clone());
        }
        changes.push(Change::NotifierRefused {
            victim: id,
            refusal: e.clone(),
        });
    }

    /// A recent victim with this mm that a process_mrelease call by `caller_pid` released.
    pub(super) fn released_by(&self, mm: u64, caller_pid: u32) -> Option<VictimId> {
        self.victims
            .iter()
            .rev()
            .take(64)
            .find(|v| {
                v.mm == Some(mm)
                    && v.outcome == Outcome::Released
                    && v.mreleases.is_empty()
                    && v.reap_calls
                        .last()
                        .is_some_and(|c| c.by_mrelease() && c.caller.pid == caller_pid)
            })
            .map(|v| v.id)
    }
}
