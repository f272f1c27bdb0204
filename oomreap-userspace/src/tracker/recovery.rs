//! Did the kill help? A victim's `recovery`: its OOM domain's usage at the kill and once the
//! victim's memory was gone, what the domain got back, and a verdict with its cause.
//!
//! The kernel gives the usage at the kill (the memory cgroup's page counter, read by the
//! kill's own program); user space reads the domain again once the victim's memory is gone
//! and hands that reading in ([`Tracker::domain_read`]), so the verdict is a pure function of
//! what was recorded: a replay judges as the live run did. The thresholds live here and
//! only here; docs/events.md states them.
use std::collections::BTreeMap;

use super::{Change, Outcome, Tracker, Victim, VictimId};

/// A share of the limit at or above which memory that no kill frees (shmem, kernel) means
/// the domain did not recover, whatever the victim gave back: the next charge fails again.
pub const PINNED_PERCENT: u64 = 50;

/// Free room under the limit, as a share of it, that counts as recovered.
pub const HEADROOM_PERCENT: u64 = 10;

/// The share of the victim's reapable memory (anon and file RSS at the kill) that counts as
/// recovered when less than [`HEADROOM_PERCENT`] of the limit is free.
pub const GOT_BACK_PERCENT: u64 = 50;

/// When a domain reading was taken.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadAt {
    /// As the kill arrived.
    Kill,
    /// When the victim's outcome became final and nothing better came first.
    Settled,
    /// After a reap pass of the reaper's.
    Reap,
    /// After exit_mmap freed the victim's memory: the most complete.
    ExitMmap,
}

impl ReadAt {
    pub const ALL: [Self; 4] = [Self::Kill, Self::Settled, Self::Reap, Self::ExitMmap];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Settled => "settled",
            Self::Reap => "reap",
            Self::ExitMmap => "exit_mmap",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// What a victim's OOM domain held when it was read, by kind (see `enrich::memory`), plus
/// `usage` and `limit` (for the machine: MemTotal less MemAvailable, and MemTotal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainMemory {
    /// The memory cgroup read; `None` for the machine (a machine-wide OOM).
    pub memcg: Option<u64>,
    pub at: ReadAt,
    /// How long after the kill it was read.
    pub read_after_ns: u64,
    /// KiB by kind, or why it could not be read.
    pub kib: Result<BTreeMap<String, u64>, String>,
}

impl DomainMemory {
    fn get(&self, kind: &str) -> Option<u64> {
        self.kib.as_ref().ok()?.get(kind).copied()
    }
}

/// The kill's effect on its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The domain's usage at the kill and when read again (KiB).
    pub usage_at_kill_kib: Option<u64>,
    pub usage_after_kib: Option<u64>,
    pub limit_kib: Option<u64>,
    /// What the domain got back (0 if usage grew).
    pub got_back_kib: Option<u64>,
    /// Kill to the reading after.
    pub took_ns: Option<u64>,
    /// When the reading after was taken.
    pub read_at: Option<ReadAt>,
    /// Memory no kill frees, still charged after: shmem and kernel (KiB).
    pub still_charged: BTreeMap<&'static str, u64>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Recovered,
    NotRecovered(Cause),
    /// Why it cannot be judged.
    Unknown(String),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::NotRecovered(_) => "not_recovered",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// Why a domain did not recover.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// Shared memory (shmem, tmpfs, memfd, SysV) still charged: no kill frees it while it is
    /// mapped or held.
    Shmem,
    /// Page cache mapped by others.
    SharedFile,
    /// Kernel memory (slab, stacks, page tables, sockets).
    Kernel,
    /// The rest of the domain's tasks' anonymous memory filled it again.
    Anon,
    /// The reaper gave up and the victim has not exited.
    ReaperGaveUp,
}

impl Cause {
    pub const ALL: [Self; 5] = [
        Self::Shmem,
        Self::SharedFile,
        Self::Kernel,
        Self::Anon,
        Self::ReaperGaveUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Shmem => "shmem",
            Self::SharedFile => "shared_file",
            Self::Kernel => "kernel",
            Self::Anon => "anon",
            Self::ReaperGaveUp => "reaper_gave_up",
        }
    }

    /// What it means, for a reader.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Shmem => "shared memory no kill frees",
            Self::SharedFile => "page cache others map",
            Self::Kernel => "kernel memory",
            Self::Anon => "other tasks' memory filled it again",
            Self::ReaperGaveUp => "the reaper gave up and the victim has not exited",
        }
    }
}

/// Judges a finished victim's recovery from its readings (see the module's documentation
/// and docs/events.md for the rules).
pub fn judge(v: &Victim) -> Recovery {
    let domain = v.oom_domain();
    let at_kill = v.domain_at_kill.as_deref();
    let after = v.domain_after.as_deref();
    let memcg = domain.and_then(|d| d.memcg);
    // The kernel's own count at the kill, else the reading as the kill arrived.
    let usage_at_kill_kib = memcg.map(|m| m.usage_kib).or_else(|| at_kill?.get("usage"));
    let limit_kib = memcg
        .map(|m| m.limit_kib)
        .or_else(|| after?.get("limit"))
        .or_else(|| at_kill?.get("limit"));
    let usage_after_kib = after.and_then(|a| a.get("usage"));
    let still_charged: BTreeMap<&'static str, u64> = ["shmem", "kernel"]
        .into_iter()
        .filter_map(|k| Some((k, after?.get(k)?)))
        .collect();
    let mut recovery = Recovery {
        usage_at_kill_kib,
        usage_after_kib,
        limit_kib,
        got_back_kib: usage_at_kill_kib
            .zip(usage_after_kib)
            .map(|(at, after)| at.saturating_sub(after)),
        took_ns: after.map(|a| a.read_after_ns),
        read_at: after.map(|a| a.at),
        still_charged,
        verdict: Verdict::Unknown(String::new()),
    };
    recovery.verdict = verdict(v, &recovery, after);
    recovery
}

fn verdict(v: &Victim, r: &Recovery, after: Option<&DomainMemory>) -> Verdict {
    if v.oom_domain().is_none() {
        return Verdict::Unknown("the kill's domain is not known".into());
    }
    let Some(after) = after else {
        return Verdict::Unknown("the domain was not read after the kill".into());
    };
    if let Err(why) = &after.kib {
        return Verdict::Unknown(format!("the domain could not be read: {why}"));
    }
    let (Some(limit), Some(usage)) = (r.limit_kib, r.usage_after_kib) else {
        return Verdict::Unknown("the domain's usage or limit is not known".into());
    };
    let share =
        |kib: u64, percent: u64| u128::from(kib) * 100 >= u128::from(limit) * u128::from(percent);
    let pinned: u64 = r.still_charged.values().sum();
    if limit > 0 && share(pinned, PINNED_PERCENT) {
        let shmem = r.still_charged.get("shmem").copied().unwrap_or(0);
        let kernel = r.still_charged.get("kernel").copied().unwrap_or(0);
        return Verdict::NotRecovered(if shmem >= kernel {
            Cause::Shmem
        } else {
            Cause::Kernel
        });
    }
    if v.outcome == Outcome::GaveUp && v.mm_freed_at_ns.is_none() {
        return Verdict::NotRecovered(Cause::ReaperGaveUp);
    }
    let headroom = limit.saturating_sub(usage);
    let reapable = v.memory_at_kill().map(|m| m.anon_rss_kib + m.file_rss_kib);
    let gave_back = match (r.got_back_kib, reapable) {
        (Some(got), Some(reapable)) if reapable > 0 => {
            u128::from(got) * 100 >= u128::from(reapable) * u128::from(GOT_BACK_PERCENT)
        }
        _ => false,
    };
    if share(headroom, HEADROOM_PERCENT) || gave_back {
        return Verdict::Recovered;
    }
    // Still full: name what fills it.
    let kind = |k: &str| after.get(k).unwrap_or(0);
    let candidates = [
        (Cause::Shmem, kind("shmem")),
        (Cause::Kernel, kind("kernel")),
        (
            Cause::SharedFile,
            kind("file_mapped").saturating_sub(kind("shmem")),
        ),
        (Cause::Anon, kind("anon")),
    ];
    let dominant = candidates
        .into_iter()
        .max_by_key(|(_, kib)| *kib)
        .map_or(Cause::Anon, |(cause, _)| cause);
    Verdict::NotRecovered(dominant)
}

impl Tracker {
    /// Takes a reading of victim `id`'s domain (user space's, live; the recording's, in a
    /// replay). The reading at the kill is kept as it is; of those after it, the most
    /// complete (exit_mmap over a reap pass over the settle), until the verdict is given.
    pub fn domain_read(&mut self, id: VictimId, memory: DomainMemory, changes: &mut Vec<Change>) {
        if memory.at != ReadAt::Kill && !self.wants_reading(id, memory.at) {
            return;
        }
        let Some(v) = self.victim_mut(id) else { return };
        if memory.at == ReadAt::Kill {
            v.domain_at_kill = Some(Box::new(memory));
            return;
        }
        v.domain_after = Some(Box::new(memory));
        self.judge_if_final(id, changes);
    }

    /// Gives victim `id` its recovery once it is final and read after the kill.
    pub(super) fn judge_if_final(&mut self, id: VictimId, changes: &mut Vec<Change>) {
        let Some(v) = self.victim_mut(id) else { return };
        if v.recovery.is_some() || !v.outcome.is_final() || v.domain_after.is_none() {
            return;
        }
        let recovery = judge(v);
        v.recovery = Some(Box::new(recovery));
        changes.push(Change::Recovery(id));
        self.loop_on_recovery(id, changes);
    }

    /// The reading still wanted for victim `id`, if any: what `at` would improve on the one
    /// kept (none once judged). The intake reads the domain only then.
    pub fn wants_reading(&self, id: VictimId, at: ReadAt) -> bool {
        self.victim(id).is_some_and(|v| {
            v.oom_domain().is_some()
                && v.recovery.is_none()
                && v.domain_after.as_ref().is_none_or(|a| a.at <= at)
        })
    }
}
