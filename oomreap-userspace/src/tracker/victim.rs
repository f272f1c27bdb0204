//! One OOM victim and its path through the reaper.
use crate::wire::{
    LockSnapshot, MarkVictim, MreleaseTarget, NotifierRefused, Notifiers, OomDomain, ReapCall,
    RetryKind, Rss, SkipCause, Task, VictimMemory,
};

/// Most notifier refusals kept per victim (all are counted in the totals).
pub const REFUSALS_KEPT: usize = 16;

/// Identifies a victim within one tracker; pids are reused, ids never are.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VictimId(pub u64);

/// Where a victim's story ended, or stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Killed; the reaper's 2 s timer has not fired yet.
    Pending,
    /// The reaper woke for it and is making attempts.
    Reaping,
    /// Its memory was freed (exit_mmap) before the reaper woke: it exited on its own.
    ExitedBeforeWake,
    /// The reaper reaped its memory.
    Reaped,
    /// The reaper found `MMF_OOM_SKIP` set: the victim's memory was already being torn down.
    AlreadyGone,
    /// Ten attempts failed; the kernel logged "oom_reaper: unable to reap". Never traced:
    /// always inferred from the attempts.
    GaveUp,
    /// process_mrelease(2) released its memory before the reaper did.
    Released,
    /// Events stopped without an outcome (e.g. hooks missing, or oomreap started late).
    Unknown,
}

impl Outcome {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Reaping,
        Self::ExitedBeforeWake,
        Self::Reaped,
        Self::AlreadyGone,
        Self::GaveUp,
        Self::Released,
        Self::Unknown,
    ];

    /// Returns true if and only if nothing more is expected for the victim.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Reaping)
    }

    /// A short lowercase name, as used in output and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reaping => "reaping",
            Self::ExitedBeforeWake => "exited",
            Self::Reaped => "reaped",
            Self::AlreadyGone => "already_gone",
            Self::GaveUp => "gave_up",
            Self::Released => "released",
            Self::Unknown => "unknown",
        }
    }
}

/// What made the reaper give up: what failed its ten attempts.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GiveUpCause {
    /// Every failed attempt was a partial pass: an mmu notifier refused a non-blocking
    /// invalidation each time (RDMA ODP, HMM, a GPU driver), whatever the lock did.
    Notifier,
    /// Every failed attempt found the mmap_lock contended.
    Lock,
    /// Some of each.
    Mixed,
}

impl GiveUpCause {
    pub const ALL: [Self; 3] = [Self::Notifier, Self::Lock, Self::Mixed];

    /// A short lowercase name, as used in output and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Notifier => "notifier",
            Self::Lock => "lock",
            Self::Mixed => "mixed",
        }
    }
}

/// What one reaper attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// `start_task_reaping` seen, `finish_task_reaping` not yet.
    InProgress,
    /// `skip_task_reaping`.
    Skipped {
        reason: SkipCause,
        /// The reason was deduced from what followed rather than seen.
        inferred: bool,
        /// The mmap_lock's state, for a contended lock.
        lock: Option<std::sync::Arc<LockSnapshot>>,
        /// `mm->flags` at the skip, when the kernel could read them.
        mm_flags: Option<u64>,
    },
    /// A reap pass ran from `start` to `finish`.
    Reaped {
        finished_ns: u64,
        rss_after: Option<Rss>,
        /// Whether every VMA was reaped: `Some(false)` when another attempt followed (an mmu
        /// notifier refused), `Some(true)` once nothing followed.
        complete: Option<bool>,
        /// `complete` is `__oom_reap_task_mm`'s own return value (fentry or kprobe modes),
        /// not deduced from what followed.
        complete_traced: bool,
    },
}

/// One pass of the oom_reaper's retry loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub started_ns: u64,
    pub result: AttemptResult,
}

impl Attempt {
    /// Returns true if and only if the attempt failed and the kernel will retry.
    pub fn failed(&self) -> bool {
        match &self.result {
            AttemptResult::Skipped { reason, .. } => *reason == SkipCause::LockContended,
            AttemptResult::Reaped { complete, .. } => *complete == Some(false),
            AttemptResult::InProgress => false,
        }
    }
}

/// One process_mrelease(2) call on a victim's mm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MreleaseCall {
    pub entered_ns: u64,
    pub returned_ns: u64,
    pub ret: i64,
    pub caller: Task,
    /// Whose memory it released, and how much.
    pub target: MreleaseTarget,
}

/// A task the OOM killer chose, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub id: VictimId,
    /// The thread the OOM killer picked.
    pub pid: u32,
    /// The kill as decoded (`None`: first seen at a later step, its kill unseen).
    pub kill: Option<MarkVictim>,
    /// Kernel address of its `mm_struct`: the kill's, or, for an unseen kill, the first
    /// skip's (the tracker's lookup key).
    pub mm: Option<u64>,
    /// How many times `mark_victim` named it (more than once is rare but possible).
    pub times_marked: u32,
    pub woken_at_ns: Option<u64>,
    pub attempts: Vec<Attempt>,
    /// The reaper's trylock results not yet matched to an attempt: (ns, success).
    pub(super) pending_trylock: Option<(u64, bool)>,
    pub mm_freed_at_ns: Option<u64>,
    /// The task that dropped the mm's last user.
    pub mm_freed_by: Option<Task>,
    pub mreleases: Vec<MreleaseCall>,
    /// Every `__oom_reap_task_mm` call on its mm, by the reaper or process_mrelease (only
    /// with the fentry or kprobe attach modes).
    pub reap_calls: Vec<ReapCall>,
    /// The result of the reaper's call inside the attempt in progress.
    pub(super) pending_reap: Option<bool>,
    /// The earliest settle deadline queued for it in the tracker's heap, if any: a later
    /// one need not be queued too (the tick re-queues what is still ahead).
    pub(super) settle_queued_ns: Option<u64>,
    /// mmu notifier refusals during reaps of its mm (the first [`REFUSALS_KEPT`]).
    pub notifier_refusals: Vec<NotifierRefused>,
    pub outcome: Outcome,
    /// The outcome was deduced, not traced.
    pub outcome_inferred: bool,
    /// When the outcome became final.
    pub finished_at_ns: Option<u64>,
    /// Reclaim and compaction retries counted between the previous victim and this one.
    pub retries_before: Vec<(crate::wire::RetryCounter, u64)>,
    /// Its OOM domain's memory as the kill arrived, and once its memory was gone (boxed, as
    /// the recovery: ten thousand victims are kept, most never read).
    pub domain_at_kill: Option<Box<super::DomainMemory>>,
    /// Its mappings by class, read from /proc/PID/smaps right after its kill.
    pub vmas: Option<Box<super::VictimVmas>>,
    /// The OOM killer's candidates for its kill, or why they are unknown.
    pub candidates: Option<Box<Result<super::Candidates, String>>>,
    /// The OOM killer's evaluation for its kill was followed, and `oom_badness` never fired
    /// in it: this kernel's build calls it inline there.
    pub badness_unseen: bool,
    pub domain_after: Option<Box<super::DomainMemory>>,
    /// Whether the kill gave the domain memory back; judged once it is final and read.
    pub recovery: Option<Box<super::Recovery>>,
}

impl Victim {
    pub(super) fn marked(
        id: VictimId,
        e: &MarkVictim,
        retries_before: Vec<(crate::wire::RetryCounter, u64)>,
    ) -> Self {
        Self {
            pid: e.victim.pid,
            mm: e.mm,
            kill: Some(e.clone()),
            times_marked: 1,
            retries_before,
            ..Self::unseen(id, e.victim.pid)
        }
    }

    /// The reaper is at work on it, unless its story already ended (a late pass leaves the
    /// outcome as it was).
    pub(super) fn reaping(&mut self) {
        if !self.outcome.is_final() {
            self.outcome = Outcome::Reaping;
        }
    }

    /// Returns true if and only if something at `at_ns` came after the victim's outcome.
    pub fn after_outcome(&self, at_ns: u64) -> bool {
        self.finished_at_ns.is_some_and(|f| at_ns > f)
    }

    /// A victim first seen at a reaper step (its kill happened before oomreap attached).
    pub(super) fn unseen(id: VictimId, pid: u32) -> Self {
        Self {
            id,
            pid,
            kill: None,
            mm: None,
            times_marked: 0,
            woken_at_ns: None,
            attempts: Vec::new(),
            pending_trylock: None,
            mm_freed_at_ns: None,
            mm_freed_by: None,
            mreleases: Vec::new(),
            reap_calls: Vec::new(),
            pending_reap: None,
            settle_queued_ns: None,
            notifier_refusals: Vec::new(),
            outcome: Outcome::Pending,
            outcome_inferred: false,
            finished_at_ns: None,
            retries_before: Vec::new(),
            domain_at_kill: None,
            vmas: None,
            candidates: None,
            badness_unseen: false,
            domain_after: None,
            recovery: None,
        }
    }

    /// CLOCK_MONOTONIC ns of `oom:mark_victim`; `None` if first seen at a later step.
    pub fn killed_at_ns(&self) -> Option<u64> {
        self.kill.as_ref().map(|k| k.timestamp_ns)
    }

    /// When its domain was read for its recovery (CLOCK_MONOTONIC ns).
    pub fn recovery_read_at_ns(&self) -> Option<u64> {
        let took = self.recovery.as_ref()?.took_ns?;
        Some(self.killed_at_ns()?.saturating_add(took))
    }

    /// Its process id, when the kernel told us.
    pub fn tgid(&self) -> Option<u32> {
        self.kill.as_ref().and_then(|k| k.victim.tgid)
    }

    pub fn comm(&self) -> Option<&str> {
        self.kill.as_ref().and_then(|k| k.victim.comm.as_deref())
    }

    /// Its memory cgroup at the kill.
    pub fn memcg_id(&self) -> Option<u64> {
        self.kill.as_ref().and_then(|k| k.memcg_id)
    }

    /// Its memory at the kill.
    pub fn memory_at_kill(&self) -> Option<VictimMemory> {
        self.kill.as_ref().and_then(|k| k.memory)
    }

    /// Its mm's mmu notifiers at the kill.
    pub fn notifiers(&self) -> Option<&Notifiers> {
        self.kill.as_ref().and_then(|k| k.notifiers.as_ref())
    }

    /// Which limit the kill was for.
    pub fn oom_domain(&self) -> Option<&OomDomain> {
        self.kill.as_ref().and_then(|k| k.domain.as_ref())
    }

    /// The lock holders of attempt `index` when they are worth a stack: it was skipped on a
    /// contended lock whose holders differ from the previous attempt's (the same jam repeats
    /// for every attempt).
    pub fn new_lock_holders(&self, index: usize) -> Option<Vec<u32>> {
        let holders = |i: usize| match self.attempts.get(i).map(|a| &a.result) {
            Some(AttemptResult::Skipped {
                lock: Some(lock), ..
            }) => Some(lock_pids(lock)),
            _ => None,
        };
        let now = holders(index)?;
        let before = index.checked_sub(1).and_then(holders);
        (before.as_ref() != Some(&now)).then_some(now)
    }

    /// Kill to the reaper's wake-up.
    pub fn kill_to_wake_ns(&self) -> Option<u64> {
        self.woken_at_ns?.checked_sub(self.killed_at_ns()?)
    }

    /// Kill to the end of the last reap pass, once the victim was reaped.
    pub fn kill_to_reaped_ns(&self) -> Option<u64> {
        if self.outcome != Outcome::Reaped {
            return None;
        }
        self.last_reap_end_ns()?.checked_sub(self.killed_at_ns()?)
    }

    /// Total time spent in reap passes.
    pub fn reap_duration_ns(&self) -> Option<u64> {
        let durations: Vec<u64> = self
            .attempts
            .iter()
            .filter_map(|a| match a.result {
                AttemptResult::Reaped { finished_ns, .. } => finished_ns.checked_sub(a.started_ns),
                _ => None,
            })
            .collect();
        (!durations.is_empty()).then(|| durations.iter().sum())
    }

    /// Kill to exit_mmap: when the memory was really gone.
    pub fn kill_to_mm_freed_ns(&self) -> Option<u64> {
        self.mm_freed_at_ns?.checked_sub(self.killed_at_ns()?)
    }

    /// RSS after the last reap pass.
    pub fn rss_after_reap(&self) -> Option<Rss> {
        self.attempts.iter().rev().find_map(|a| match &a.result {
            AttemptResult::Reaped { rss_after, .. } => *rss_after,
            _ => None,
        })
    }

    /// Memory freed by the reaper: anon+file+shmem RSS at kill minus after the last reap.
    pub fn freed_by_reaper_kib(&self) -> Option<u64> {
        let before = self.kill.as_ref()?.memory?;
        let after = self.rss_after_reap()?;
        let total = |a: u64, f: u64, s: u64| a + f + s;
        Some(
            total(
                before.anon_rss_kib,
                before.file_rss_kib,
                before.shmem_rss_kib,
            )
            .saturating_sub(total(after.anon_kib, after.file_kib, after.shmem_kib)),
        )
    }

    /// Failed attempts (contended locks, partial reaps).
    pub fn failed_attempts(&self) -> usize {
        self.attempts.iter().filter(|a| a.failed()).count()
    }

    /// The reaper's passes that an mmu notifier made partial (traced, or deduced from the
    /// attempt that followed).
    pub fn partial_reaper_passes(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| {
                matches!(
                    a.result,
                    AttemptResult::Reaped {
                        complete: Some(false),
                        ..
                    }
                )
            })
            .count()
    }

    /// process_mrelease's partial reaps: its own `__oom_reap_task_mm` calls that returned
    /// false (function hooks), or, with tracepoints only, its calls that returned -EAGAIN,
    /// which since 5.15 means exactly that. Each call is one pass, so where both are seen
    /// they count the same passes once.
    pub fn partial_mrelease_passes(&self) -> usize {
        let traced = self
            .reap_calls
            .iter()
            .filter(|c| c.by_mrelease() && !c.complete)
            .count();
        let eagain = self
            .mreleases
            .iter()
            .filter(|c| c.ret == -i64::from(libc::EAGAIN))
            .count();
        traced.max(eagain)
    }

    /// Every partial pass, by the reaper or by process_mrelease.
    pub fn partial_passes(&self) -> usize {
        self.partial_reaper_passes() + self.partial_mrelease_passes()
    }

    /// Attempts that found the mmap_lock contended.
    pub fn lock_contended_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| {
                matches!(
                    a.result,
                    AttemptResult::Skipped {
                        reason: SkipCause::LockContended,
                        ..
                    }
                )
            })
            .count()
    }

    /// Why the reaper gave up, for a victim it gave up on: the kernel says only "unable to
    /// reap", but each failed attempt was either a contended lock or a partial pass.
    pub fn give_up_cause(&self) -> Option<GiveUpCause> {
        if self.outcome != Outcome::GaveUp {
            return None;
        }
        match (self.partial_reaper_passes() > 0, self.lock_contended()) {
            (true, false) => Some(GiveUpCause::Notifier),
            (false, true) => Some(GiveUpCause::Lock),
            (true, true) => Some(GiveUpCause::Mixed),
            (false, false) => None,
        }
    }

    /// Returns true if and only if any attempt met a contended mmap_lock.
    pub fn lock_contended(&self) -> bool {
        self.lock_contended_attempts() > 0
    }

    /// Reclaim and compaction retries counted before this victim's OOM.
    pub fn retries_by_kind(&self) -> (u64, u64) {
        self.retries_before
            .iter()
            .fold((0, 0), |(r, c), (counter, n)| match counter.what {
                RetryKind::Reclaim => (r + n, c),
                RetryKind::Compaction => (r, c + n),
            })
    }

    /// The victim's badness as `oom_badness` computes it — RSS, swap and page tables in pages,
    /// plus `oom_score_adj` thousandths of the pages the OOM killer considered — and those
    /// pages: `(points, total_pages)`. The OOM killer's own where it was read; else derived,
    /// so inferred, and only for a cgroup's OOM, whose pages considered are its limit (a swap
    /// limit, if any, is not added).
    pub fn badness(&self) -> Option<(i64, u64)> {
        const PAGE_KIB: u64 = 4;
        let kill = self.kill.as_ref()?;
        if let Some(record) = kill.domain.as_ref().and_then(|d| d.exact) {
            return Some((record.points, record.total_pages));
        }
        let memory = kill.memory?;
        let total_pages = kill.domain.as_ref()?.memcg?.limit_kib / PAGE_KIB;
        let own_kib = memory.anon_rss_kib
            + memory.file_rss_kib
            + memory.shmem_rss_kib
            + kill.swap_kib.unwrap_or(0)
            + memory.pgtables_kib;
        let adj = i64::from(kill.oom_score_adj?) * (total_pages / 1000) as i64;
        Some(((own_kib / PAGE_KIB) as i64 + adj, total_pages))
    }

    /// Returns true if and only if the mm has mmu notifiers, which can make reaps partial.
    pub fn has_notifiers(&self) -> bool {
        self.notifiers().is_some_and(|n| n.count > 0)
    }

    fn last_reap_end_ns(&self) -> Option<u64> {
        self.attempts.iter().rev().find_map(|a| match a.result {
            AttemptResult::Reaped { finished_ns, .. } => Some(finished_ns),
            _ => None,
        })
    }
}

/// The owner (if a task is named) and the waiters.
fn lock_pids(lock: &LockSnapshot) -> Vec<u32> {
    let mut pids: Vec<u32> = lock.owner.iter().map(|o| o.pid).collect();
    pids.extend(
        lock.waiters
            .iter()
            .flatten()
            .map(|w| w.pid)
            .filter(|&p| p != 0),
    );
    pids.dedup();
    pids
}
