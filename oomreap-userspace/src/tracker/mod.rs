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

mod candidates;
mod loops;
mod reaper;
mod recovery;
mod release;
mod settle;
mod unreapable;

use candidates::MAX_EVALUATIONS;
use settle::settle_deadline;
mod victim;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap, VecDeque},
};

pub use candidates::{Candidate, Candidates, CandidatesRead, LISTED, Passed, ProcessRead};
pub use loops::{DomainKey, LOOP_KILLS, LOOP_WINDOW_NS, OomLoop};
pub use recovery::{
    Cause, DomainMemory, GOT_BACK_PERCENT, HEADROOM_PERCENT, PINNED_PERCENT, ReadAt, Recovery,
    Verdict,
};
pub use unreapable::{Unreapable, VictimVmas, VmaClasses};
pub use victim::{
    Attempt, AttemptResult, GiveUpCause, MreleaseCall, Outcome, REFUSALS_KEPT, Victim, VictimId,
};

/// The decoded events a victim's story is told in, as the front ends read them: they import
/// the tracker, not the wire decoder.
pub use crate::wire::{
    AttachKind, KernelFrame, LockSnapshot, MarkVictim, Notifiers, OomDomain, RetryKind, Rss,
    SkipCause, Task, TriggerStacks, has_mmf_oom_skip,
};
use crate::wire::{
    Event, NotifierRefused, OomCandidates, ReapCall, RetryCounter, RetryCounts, ScoreAdj,
};

/// How long after a victim's kill the kernel may still act on it: the reaper's timer (2 s),
/// its ten attempts 100 ms apart, and slack for a loaded machine. A reaper pass or a
/// process_mrelease call that comes after the victim's outcome but within this window is the
/// same victim's, not a new one (process_mrelease does not stop the reaper's timer).
pub const LATE_WINDOW_NS: u64 = 10_000_000_000;

/// Finished victims searched, newest first, for a late step's owner.
const LATE_SCAN: usize = 64;

/// How many finished victims are kept by default before the oldest are forgotten.
pub const DEFAULT_VICTIM_CAPACITY: usize = 10_000;

/// `MAX_OOM_REAP_RETRIES` in mm/oom_kill.c: the reaper gives up after this many failures.
pub const MAX_REAP_ATTEMPTS: usize = 10;

/// `OOM_REAPER_DELAY` (2*HZ): the reaper's timer after a kill.
pub const REAPER_DELAY_NS: u64 = 2_000_000_000;

/// Quiet time after which nothing more is expected from a step: ten times the reaper's
/// HZ/10 retry interval.
pub const SETTLE_NS: u64 = 1_000_000_000;

/// How long a reap pass that started may run before silence decides it. The reaper traces
/// the pass's finish when `__oom_reap_task_mm` returns, and unmapping a large victim, or any
/// victim on a starved CPU, takes longer than [`SETTLE_NS`]: a 64 MiB victim's pass in a
/// niced PREEMPT_RT guest beside CI's build took over a second, and was called unknown.
pub const PASS_WAIT_NS: u64 = crate::wire::REAP_PASS_WAIT.as_nanos() as u64;

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
    /// The victim's recovery was judged (once, after its outcome).
    Recovery(VictimId),
    /// An OOM loop in `domain` started, or ended.
    OomLoop { domain: DomainKey, started: bool },
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
    /// OOM loops started.
    pub oom_loops: u64,
}

/// What [`Tracker::recent_by`] compares of a finished victim.
#[derive(Debug)]
struct RecentTask {
    pid: u32,
    tgid: Option<u32>,
    /// Its kill, or if that was not seen, its outcome.
    anchor_ns: Option<u64>,
}

/// All victims seen, newest last, and what else the events told.
#[derive(Debug)]
pub struct Tracker {
    victims: VecDeque<Victim>,
    /// `finished[i]` is `victims[i].outcome.is_final()`, packed: eviction finds the oldest
    /// finished victim past any stuck ones without touching their records.
    finished: VecDeque<bool>,
    /// The [`LATE_SCAN`] newest finished victims still kept, by id, with what a late
    /// step's search compares (fixed once a victim is finished), so it reads no record but
    /// the one it picks.
    recent_finished: BTreeMap<VictimId, RecentTask>,
    /// Victims whose outcome is not final, by pid.
    active: HashMap<u32, VictimId>,
    capacity: usize,
    next_id: u64,
    totals: Totals,
    /// When active victims could next be settled by silence, earliest first: each victim's
    /// earliest entry is at or before its real deadline (see `queue_settle`). Entries go stale
    /// as victims make progress; `tick` re-checks each one it pops, so a tick costs nothing
    /// until some deadline is really due.
    deadlines: BinaryHeap<Reverse<(u64, VictimId)>>,
    retries_seen: BTreeMap<RetryCounter, u64>,
    retries_pending: BTreeMap<RetryCounter, u64>,
    /// Recent kills by OOM domain, for loops.
    domains: loops::Domains,
    /// Loops that ended, newest last (a bounded few).
    ended_loops: VecDeque<OomLoop>,
    /// The OOM killer's evaluations not yet joined to their kill (each arrives just before
    /// it), newest last (a bounded few).
    evaluations: VecDeque<OomCandidates>,
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
            finished: VecDeque::new(),
            recent_finished: BTreeMap::new(),
            active: HashMap::new(),
            capacity: capacity.max(1),
            next_id: 1,
            totals: Totals::default(),
            deadlines: BinaryHeap::new(),
            retries_seen: BTreeMap::new(),
            retries_pending: BTreeMap::new(),
            domains: loops::Domains::new(),
            ended_loops: VecDeque::new(),
            evaluations: VecDeque::new(),
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
            Event::OomCandidates(e) => {
                if self.evaluations.len() == MAX_EVALUATIONS {
                    self.evaluations.pop_front();
                }
                self.evaluations.push_back(e.clone());
            }
        }
        let mut kills = Vec::new();
        for change in &changes[start..] {
            if let Change::VictimMarked(id)
            | Change::Woken(id)
            | Change::Attempt { victim: id, .. } = *change
            {
                self.queue_settle(id);
            }
            if let Change::VictimMarked(id) = *change {
                kills.push(id);
            }
        }
        for id in kills {
            self.join_evaluation(id);
            if let Some(v) = self.victim(id)
                && let (Some(domain), Some(at)) = (v.oom_domain(), v.killed_at_ns())
            {
                let key = domain.memcg.map(|m| m.id);
                self.loop_on_kill(id, key, at, changes);
            }
        }
    }

    /// Queues victim `id`'s settle deadline, unless an earlier one is queued already: that
    /// one's tick re-queues the deadline then due (deadlines mostly move later as a victim
    /// makes progress; a pass's finish moves its pass wait earlier).
    fn queue_settle(&mut self, id: VictimId) {
        let Some(v) = self.victim_mut(id) else {
            return;
        };
        let Some(deadline) = settle_deadline(v) else {
            return;
        };
        if v.settle_queued_ns.is_none_or(|queued| deadline < queued) {
            v.settle_queued_ns = Some(deadline);
            self.deadlines.push(Reverse((deadline, id)));
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
            let Some(v) = self.victim_mut(id).filter(|v| !v.outcome.is_final()) else {
                continue;
            };
            if v.settle_queued_ns == Some(deadline) {
                v.settle_queued_ns = None;
            }
            match self.settle(id, now_ns) {
                Some(decided) => self.finalize(id, decided, true, now_ns, &mut changes),
                // Not quiet yet: it made progress since this entry was pushed.
                None => {
                    if self
                        .victim(id)
                        .and_then(settle_deadline)
                        .is_some_and(|d| d > now_ns)
                    {
                        self.queue_settle(id);
                    }
                }
            }
        }
        changes.sort_by_key(|c| match c {
            Change::Finished(id) | Change::Recovery(id) => *id,
            _ => VictimId(0),
        });
        self.end_quiet_loops(now_ns, &mut changes);
        changes
    }

    /// Settles every victim as if a long silence followed: the end of a replay. A pass still
    /// in progress then waits [`PASS_WAIT_NS`] from its start, in a second tick.
    pub fn finish_all(&mut self) -> Vec<Change> {
        let last = self
            .victims
            .iter()
            .flat_map(|v| [v.killed_at_ns(), v.woken_at_ns, v.mm_freed_at_ns])
            .flatten()
            .max()
            .unwrap_or(0);
        let mut changes = self.tick(last.saturating_add(REAPER_DELAY_NS + SETTLE_NS));
        let pass_started = self
            .victims
            .iter()
            .filter(|v| !v.outcome.is_final())
            .filter_map(|v| v.attempts.last().map(|a| a.started_ns))
            .max();
        if let Some(started) = pass_started {
            changes.extend(self.tick(started.saturating_add(PASS_WAIT_NS)));
        }
        changes
    }

    /// The earliest time at which [`Tracker::tick`] may settle something, if any: ticking
    /// before it does nothing. (It may be a stale entry, after which the next comes.)
    pub fn next_deadline(&self) -> Option<u64> {
        let settle = self
            .deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline);
        settle.into_iter().chain(self.next_loop_deadline()).min()
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
            let kill_seen = v.killed_at_ns().is_some();
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

    fn retry_counts(&mut self, e: &RetryCounts) {
        for (counter, count) in &e.counts {
            let seen = self.retries_seen.insert(*counter, *count).unwrap_or(0);
            let delta = count.saturating_sub(seen);
            if delta > 0 {
                *self.retries_pending.entry(*counter).or_default() += delta;
            }
        }
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
        self.finished.push_back(victim.outcome.is_final());
        self.victims.push_back(victim);
        self.evict();
    }

    /// The active victim with this pid, or a new one first seen now.
    /// The victim a reaper step for thread `pid` at `at_ns` belongs to: the active one, else
    /// a recent one whose outcome came first, else a new one whose kill oomreap did not see.
    fn reaper_target(&mut self, pid: u32, at_ns: u64) -> VictimId {
        if let Some(id) = self.active.get(&pid) {
            return *id;
        }
        if let Some(id) = self.recent_by(Some(pid), None, at_ns) {
            return id;
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

    /// A finished victim, newest first, with this thread or process id or this mm, killed
    /// (or, if its kill was not seen, settled) at most [`LATE_WINDOW_NS`] before `at_ns`.
    fn recent_by(&self, pid: Option<u32>, mm: Option<u64>, at_ns: u64) -> Option<VictimId> {
        self.recent_finished
            .iter()
            .rev()
            .find(|(id, r)| {
                let recent = r
                    .anchor_ns
                    .is_some_and(|t| at_ns.saturating_sub(t) <= LATE_WINDOW_NS);
                let same_task = pid.is_some_and(|p| r.pid == p || r.tgid == Some(p));
                // A late step may still learn a finished victim's mm: read it live.
                let same_mm = || mm.is_some() && self.victim(**id).is_some_and(|v| v.mm == mm);
                recent && (same_task || same_mm())
            })
            .map(|(id, _)| *id)
    }

    /// Notes a victim that just finished among the [`LATE_SCAN`] newest.
    fn note_finished(&mut self, id: VictimId) {
        let Some(v) = self.victim(id) else {
            return;
        };
        let task = RecentTask {
            pid: v.pid,
            tgid: v.tgid(),
            anchor_ns: v.killed_at_ns().or(v.finished_at_ns),
        };
        self.recent_finished.insert(id, task);
        if self.recent_finished.len() > LATE_SCAN {
            self.recent_finished.pop_first();
        }
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
            let Some(index) = self.finished.iter().position(|f| *f) else {
                return;
            };
            if let Some(evicted) = self.victims.remove(index) {
                // The oldest finished: among the newest only while fewer are kept.
                self.recent_finished.remove(&evicted.id);
            }
            self.finished.remove(index);
            excess -= 1;
        }
    }
}

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
