//! The tracker: folds decoded events into victim lifecycles.
//!
//! Pure and deterministic: it never touches the kernel, the terminal or a clock of its own.
//! Time enters only as event timestamps and through [`Tracker::tick`], which front ends call
//! with the current CLOCK_MONOTONIC time (replays pass the recording's timestamps), so tests
//! drive it with recorded event streams.
//!
//! A victim's path: killed → (exited before the reaper woke | woken → attempts, each skipped
//! with a cause or a reap pass → reaped | gave up after 10 failed attempts | already gone),
//! plus exit_mmap and process_mrelease calls. The kernel does not trace the give-up or whether
//! a reap pass was complete; those are inferred from the attempt pattern and marked inferred.

mod victim;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap, VecDeque},
};

pub use victim::{Attempt, AttemptResult, MreleaseCall, Outcome, REFUSALS_KEPT, Victim, VictimId};

use crate::wire::{
    Event, ExitMmap, FinishReaping, LockAttempt, MarkVictim, Mrelease, NotifierRefused, ReapCall,
    ReaperStep, RetryCounter, RetryCounts, ScoreAdj, SkipCause, SkipReaping, has_mmf_oom_skip,
};

/// How many finished victims are kept by default before the oldest are forgotten.
pub const DEFAULT_VICTIM_CAPACITY: usize = 10_000;

/// `MAX_OOM_REAP_RETRIES` in mm/oom_kill.c: the reaper gives up after this many failures.
pub const MAX_REAP_ATTEMPTS: usize = 10;

/// `OOM_REAPER_DELAY` (2*HZ): the reaper's timer after a kill.
pub const REAPER_DELAY_NS: u64 = 2_000_000_000;

/// Quiet time after which nothing more is expected from a step: ten times the reaper's
/// HZ/10 retry interval.
pub const SETTLE_NS: u64 = 1_000_000_000;

/// What an event changed, for front ends that react to changes rather than redraw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The OOM killer chose a new victim.
    VictimMarked(VictimId),
    /// The OOM killer named an existing victim again.
    MarkedAgain(VictimId),
    /// The reaper woke for the victim.
    Woken(VictimId),
    /// A reap attempt began (`InProgress`) or ended.
    Attempt { victim: VictimId, index: usize },
    /// The victim's mm was freed (exit_mmap).
    MmFreed(VictimId),
    /// process_mrelease(2) returned; `victim` when its mm was a victim's.
    Mrelease {
        victim: Option<VictimId>,
        call: MreleaseCall,
    },
    /// `__oom_reap_task_mm` returned (fentry/kprobe modes); `victim` when the mm was a
    /// victim's.
    ReapCall {
        victim: Option<VictimId>,
        call: ReapCall,
    },
    /// An mmu notifier refused an invalidation during a reap.
    NotifierRefused {
        victim: Option<VictimId>,
        refusal: NotifierRefused,
    },
    /// The victim's outcome became final.
    Finished(VictimId),
    /// A task's oom_score_adj changed.
    ScoreAdjusted(ScoreAdj),
}

/// Counts over the whole session, which eviction never lowers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub victims: u64,
    /// Final outcomes, by outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    pub attempts: u64,
    /// Skipped attempts by cause.
    pub skips: BTreeMap<SkipCause, u64>,
    /// process_mrelease calls by return value.
    pub mreleases: BTreeMap<i64, u64>,
    /// Reaper lock attempts seen, and how many failed.
    pub reaper_trylocks: u64,
    pub reaper_trylocks_failed: u64,
    /// `__oom_reap_task_mm` calls (fentry/kprobe modes) that reaped everything, and that
    /// skipped a VMA.
    pub reap_calls_complete: u64,
    pub reap_calls_partial: u64,
    /// mmu notifier refusals during reaps.
    pub notifier_refusals: u64,
}

/// All victims seen, newest last, and what else the events told.
#[derive(Debug)]
pub struct Tracker {
    victims: VecDeque<Victim>,
    /// Victims whose outcome is not final, by pid.
    active: HashMap<u32, VictimId>,
    capacity: usize,
    next_id: u64,
    totals: Totals,
    /// When active victims could next be settled by silence, earliest first. Entries go stale
    /// as victims make progress (a deadline only moves later); `tick` re-checks each one it
    /// pops, so a tick costs nothing until some deadline is really due.
    deadlines: BinaryHeap<Reverse<(u64, VictimId)>>,
    retries_seen: BTreeMap<RetryCounter, u64>,
    retries_pending: BTreeMap<RetryCounter, u64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_VICTIM_CAPACITY)
    }
}

impl Tracker {
    /// A tracker that remembers at most `capacity` finished victims (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            victims: VecDeque::new(),
            active: HashMap::new(),
            capacity: capacity.max(1),
            next_id: 1,
            totals: Totals::default(),
            deadlines: BinaryHeap::new(),
            retries_seen: BTreeMap::new(),
            retries_pending: BTreeMap::new(),
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event) -> Vec<Change> {
        let mut changes = Vec::new();
        self.apply_into(event, &mut changes);
        changes
    }

    /// As [`Tracker::apply`], appending the changes to `changes`: a busy intake reuses one
    /// buffer instead of allocating per event.
    pub fn apply_into(&mut self, event: &Event, changes: &mut Vec<Change>) {
        let start = changes.len();
        self.totals.events += 1;
        match event {
            Event::MarkVictim(e) => self.mark_victim(e, changes),
            Event::WakeReaper(e) => self.wake(e, changes),
            Event::StartReaping(e) => self.start(e, changes),
            Event::FinishReaping(e) => self.finish(e, changes),
            Event::SkipReaping(e) => self.skip(e, changes),
            Event::LockAttempt(e) => self.lock_attempt(e),
            Event::ExitMmap(e) => self.exit_mmap(e, changes),
            Event::Mrelease(e) => self.mrelease(e, changes),
            Event::ScoreAdj(e) => changes.push(Change::ScoreAdjusted(e.clone())),
            Event::RetryCounts(e) => self.retry_counts(e),
            Event::ReapCall(e) => self.reap_call(e, changes),
            Event::NotifierRefused(e) => self.notifier_refused(e, changes),
        }
        for change in &changes[start..] {
            if let Change::VictimMarked(id) | Change::Woken(id) | Change::Attempt { victim: id, .. } =
                change
                && let Some(deadline) = self.victim(*id).and_then(settle_deadline)
            {
                self.deadlines.push(Reverse((deadline, *id)));
            }
        }
    }

    /// Settles what can only be decided by silence: a reap pass with no attempt after it was
    /// complete; a victim never woken within the reaper's delay exited on its own. `now_ns`
    /// is CLOCK_MONOTONIC (event time).
    pub fn tick(&mut self, now_ns: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline > now_ns {
                break;
            }
            self.deadlines.pop();
            if self.victim(id).is_none_or(|v| v.outcome.is_final()) {
                continue;
            }
            match self.settle(id, now_ns) {
                Some(decided) => self.finalize(id, decided, true, now_ns, &mut changes),
                // Not quiet yet: it made progress since this entry was pushed.
                None => {
                    if let Some(next) = self
                        .victim(id)
                        .and_then(settle_deadline)
                        .filter(|&d| d > now_ns)
                    {
                        self.deadlines.push(Reverse((next, id)));
                    }
                }
            }
        }
        changes.sort_by_key(|c| match c {
            Change::Finished(id) => *id,
            _ => VictimId(0),
        });
        changes
    }

    /// Settles every victim as if a long silence followed: the end of a replay.
    pub fn finish_all(&mut self) -> Vec<Change> {
        let last = self
            .victims
            .iter()
            .flat_map(|v| [v.killed_at_ns, v.woken_at_ns, v.mm_freed_at_ns])
            .flatten()
            .max()
            .unwrap_or(0);
        self.tick(last.saturating_add(REAPER_DELAY_NS + SETTLE_NS))
    }

    /// The earliest time at which [`Tracker::tick`] may settle something, if any: ticking
    /// before it does nothing. (It may be a stale entry, after which the next comes.)
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Returns true if and only if some victim still awaits an outcome (only then can
    /// [`Tracker::tick`] change anything).
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The victim with this id, unless it was evicted.
    pub fn victim(&self, id: VictimId) -> Option<&Victim> {
        self.victims.get(self.index_of(id)?)
    }

    /// Where victim `id` is in `victims`. Ids are consecutive except where eviction left
    /// holes, so `id - first id` is nearly always the slot; otherwise binary-search the
    /// deque's two contiguous halves (the lookup runs several times per event).
    fn index_of(&self, id: VictimId) -> Option<usize> {
        let first = self.victims.front()?.id.0;
        let guess = usize::try_from(id.0.checked_sub(first)?).ok()?;
        let (front, back) = self.victims.as_slices();
        let at = |i: usize| front.get(i).or_else(|| back.get(i - front.len()));
        if at(guess).is_some_and(|v| v.id == id) {
            return Some(guess);
        }
        let search = |slice: &[Victim]| slice.binary_search_by_key(&id, |v| v.id).ok();
        match front.last() {
            Some(last) if last.id >= id => search(front),
            _ => search(back).map(|i| i + front.len()),
        }
    }

    /// Victims still remembered, oldest first.
    pub fn victims(&self) -> impl DoubleEndedIterator<Item = &Victim> {
        self.victims.iter()
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn mark_victim(&mut self, e: &MarkVictim, changes: &mut Vec<Change>) {
        if let Some(id) = self.active.get(&e.victim.pid).copied()
            && let Some(v) = self.victim(id)
        {
            let same_mm = v.mm.is_none() || e.mm.is_none() || v.mm == e.mm;
            let kill_seen = v.killed_at_ns.is_some();
            if same_mm && kill_seen {
                if let Some(v) = self.victim_mut(id) {
                    v.times_marked += 1;
                }
                changes.push(Change::MarkedAgain(id));
                return;
            }
            if same_mm {
                // A victim first seen at a later step: this is its kill after all.
                let retries = self.take_retries();
                if let Some(v) = self.victim_mut(id) {
                    let earlier = std::mem::replace(v, Victim::marked(id, e, retries));
                    v.woken_at_ns = earlier.woken_at_ns;
                    v.attempts = earlier.attempts;
                    v.outcome = earlier.outcome;
                }
                self.totals.victims += 1;
                changes.push(Change::VictimMarked(id));
                return;
            }
            // The pid now names another process: the old victim's story ended unseen.
            self.finalize(id, Outcome::Unknown, true, e.timestamp_ns, changes);
        }
        let id = self.new_id();
        let retries = self.take_retries();
        self.insert(Victim::marked(id, e, retries));
        self.totals.victims += 1;
        changes.push(Change::VictimMarked(id));
    }

    fn wake(&mut self, e: &ReaperStep, changes: &mut Vec<Change>) {
        let id = self.active_or_unseen(e.victim_pid);
        let Some(v) = self.victim_mut(id) else { return };
        v.woken_at_ns = Some(e.timestamp_ns);
        v.outcome = Outcome::Reaping;
        changes.push(Change::Woken(id));
    }

    fn start(&mut self, e: &ReaperStep, changes: &mut Vec<Change>) {
        let id = self.active_or_unseen(e.victim_pid);
        let Some(v) = self.victim_mut(id) else { return };
        mark_previous_reap_partial(v);
        v.pending_trylock = None;
        v.outcome = Outcome::Reaping;
        v.attempts.push(Attempt {
            started_ns: e.timestamp_ns,
            result: AttemptResult::InProgress,
        });
        let index = v.attempts.len() - 1;
        self.totals.attempts += 1;
        changes.push(Change::Attempt { victim: id, index });
    }

    fn finish(&mut self, e: &FinishReaping, changes: &mut Vec<Change>) {
        let id = self.active_or_unseen(e.victim_pid);
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

    fn skip(&mut self, e: &SkipReaping, changes: &mut Vec<Change>) {
        let id = self.active_or_unseen(e.victim_pid);
        let Some(v) = self.victim_mut(id) else { return };
        mark_previous_reap_partial(v);
        let mut reason = e.cause;
        let mut inferred = false;
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
        v.outcome = Outcome::Reaping;
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

    fn lock_attempt(&mut self, e: &LockAttempt) {
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

    fn exit_mmap(&mut self, e: &ExitMmap, changes: &mut Vec<Change>) {
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
        changes.push(Change::MmFreed(id));
        if never_woken {
            self.finalize(
                id,
                Outcome::ExitedBeforeWake,
                false,
                e.timestamp_ns,
                changes,
            );
        } else if reaped {
            self.finalize(id, Outcome::Reaped, true, e.timestamp_ns, changes);
        }
    }

    /// The newest finished victim with this mm whose memory was not yet seen freed.
    fn finished_awaiting_exit(&self, mm: u64) -> Option<VictimId> {
        self.victims
            .iter()
            .rev()
            .find(|v| v.mm == Some(mm) && v.mm_freed_at_ns.is_none())
            .map(|v| v.id)
    }

    fn mrelease(&mut self, e: &Mrelease, changes: &mut Vec<Change>) {
        *self.totals.mreleases.entry(e.ret).or_default() += 1;
        let call = MreleaseCall {
            entered_ns: e.entered_ns,
            returned_ns: e.timestamp_ns,
            ret: e.ret,
            caller: e.caller.clone(),
        };
        let id = self
            .active_by(e.victim_pid, e.mm)
            // The call's own reap (fentry/kprobe modes) may have settled the victim already.
            .or_else(|| e.mm.and_then(|mm| self.released_by(mm, e.caller.pid)));
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

    fn reap_call(&mut self, e: &ReapCall, changes: &mut Vec<Change>) {
        if e.complete {
            self.totals.reap_calls_complete += 1;
        } else {
            self.totals.reap_calls_partial += 1;
        }
        let id = self.active_by(e.victim_pid, Some(e.mm));
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
        // its syscall return is seen (that needs tracefs).
        if !e.by_reaper && e.complete {
            self.finalize(id, Outcome::Released, false, e.timestamp_ns, changes);
        }
    }

    fn notifier_refused(&mut self, e: &NotifierRefused, changes: &mut Vec<Change>) {
        self.totals.notifier_refusals += 1;
        let id = self.active_by(e.victim_pid, Some(e.mm));
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
    fn released_by(&self, mm: u64, caller_pid: u32) -> Option<VictimId> {
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
                        .is_some_and(|c| !c.by_reaper && c.caller.pid == caller_pid)
            })
            .map(|v| v.id)
    }

    fn retry_counts(&mut self, e: &RetryCounts) {
        for (counter, count) in &e.counts {
            let seen = self.retries_seen.insert(*counter, *count).unwrap_or(0);
            let delta = count.saturating_sub(seen);
            if delta > 0 {
                *self.retries_pending.entry(*counter).or_default() += delta;
            }
        }
    }

    /// What silence until `now_ns` decides for an active victim, if anything.
    fn settle(&mut self, id: VictimId, now_ns: u64) -> Option<Outcome> {
        let v = self.victim_mut(id)?;
        let quiet_since = |t: u64| now_ns.saturating_sub(t) >= SETTLE_NS;
        if v.attempts.is_empty() {
            // Never woken: the reaper's timer found the victim gone (it traces nothing then).
            let (since, wait, outcome) = match v.woken_at_ns {
                Some(woken) => (woken, SETTLE_NS, Outcome::Unknown),
                None => (
                    v.killed_at_ns?,
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
        let last = v.attempts.last_mut()?;
        let last_at = match &last.result {
            AttemptResult::Reaped { finished_ns, .. } => *finished_ns,
            _ => last.started_ns,
        };
        if !quiet_since(last_at) {
            return None;
        }
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
                // The tenth pass of a victim whose every pass was partial: the kernel gave up.
                if count == MAX_REAP_ATTEMPTS && failed_before_last == count - 1 {
                    *complete = Some(false);
                    return Some(Outcome::GaveUp);
                }
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
    fn finalize(
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
        if outcome == Outcome::Reaped
            && let Some(Attempt {
                result: AttemptResult::Reaped { complete, .. },
                ..
            }) = v.attempts.last_mut()
        {
            complete.get_or_insert(true);
        }
        v.outcome = outcome;
        v.outcome_inferred = inferred;
        v.finished_at_ns = Some(at_ns);
        let pid = v.pid;
        if self.active.get(&pid) == Some(&id) {
            self.active.remove(&pid);
        }
        *self.totals.outcomes.entry(outcome).or_default() += 1;
        changes.push(Change::Finished(id));
        self.evict();
    }

    /// Retries counted since the previous victim, for the next one.
    fn take_retries(&mut self) -> Vec<(RetryCounter, u64)> {
        std::mem::take(&mut self.retries_pending)
            .into_iter()
            .collect()
    }

    fn new_id(&mut self) -> VictimId {
        let id = VictimId(self.next_id);
        self.next_id += 1;
        id
    }

    fn insert(&mut self, victim: Victim) {
        self.active.insert(victim.pid, victim.id);
        self.victims.push_back(victim);
        self.evict();
    }

    /// The active victim with this pid, or a new one first seen now.
    fn active_or_unseen(&mut self, pid: u32) -> VictimId {
        if let Some(id) = self.active.get(&pid) {
            return *id;
        }
        let id = self.new_id();
        self.insert(Victim::unseen(id, pid));
        id
    }

    /// The active victim a step names: by its pid, else by its mm (the one victim lookup).
    fn active_by(&self, pid: Option<u32>, mm: Option<u64>) -> Option<VictimId> {
        pid.and_then(|pid| self.active.get(&pid).copied())
            .or_else(|| mm.and_then(|mm| self.active_by_mm(mm)))
    }

    fn active_by_mm(&self, mm: u64) -> Option<VictimId> {
        self.active
            .values()
            .copied()
            .find(|id| self.victim(*id).is_some_and(|v| v.mm == Some(mm)))
    }

    fn victim_mut(&mut self, id: VictimId) -> Option<&mut Victim> {
        let index = self.index_of(id)?;
        self.victims.get_mut(index)
    }

    /// Forgets the oldest finished victims beyond capacity; active ones are always kept.
    fn evict(&mut self) {
        let finished = self.victims.len() - self.active.len();
        let mut excess = finished.saturating_sub(self.capacity);
        while excess > 0 {
            let Some(index) = self.victims.iter().position(|v| v.outcome.is_final()) else {
                return;
            };
            self.victims.remove(index);
            excess -= 1;
        }
    }
}

/// The earliest time silence could settle an active victim (see `Tracker::settle`).
fn settle_deadline(v: &Victim) -> Option<u64> {
    match v.attempts.last() {
        Some(last) => {
            let at = match last.result {
                AttemptResult::Reaped { finished_ns, .. } => finished_ns,
                _ => last.started_ns,
            };
            Some(at.saturating_add(SETTLE_NS))
        }
        None => match v.woken_at_ns {
            Some(woken) => Some(woken.saturating_add(SETTLE_NS)),
            None => v
                .killed_at_ns
                .map(|k| k.saturating_add(REAPER_DELAY_NS + SETTLE_NS)),
        },
    }
}

/// Another attempt after a reap pass means the pass was partial (an mmu notifier refused),
/// unless the kernel's own return value already said.
fn mark_previous_reap_partial(v: &mut Victim) {
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

/// Returns true if and only if the last attempt was a reap pass (so exit_mmap after it means
/// the reap stood).
fn settled_reap(v: &Victim) -> bool {
    matches!(
        v.attempts.last(),
        Some(Attempt {
            result: AttemptResult::Reaped { .. },
            ..
        })
    )
}

#[cfg(test)]
mod tests;
