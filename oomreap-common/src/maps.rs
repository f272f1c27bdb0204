//! Names, capacities and slot indices of the maps both sides use.

/// Ring buffer carrying every event record to user space.
pub const EVENTS: &str = "EVENTS";

/// Default size of [`EVENTS`] in bytes: a power of two and a multiple of the page size. At about
/// 160 bytes a record it holds over 1,600 records, far more than an OOM storm produces between
/// two reads.
pub const EVENTS_DEFAULT_BYTES: u32 = 256 * 1024;

/// Per-CPU array of counters the kernel side keeps about itself, indexed by [`Counter`].
pub const COUNTERS: &str = "COUNTERS";

/// Slots of [`COUNTERS`].
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Records that could not be reserved in [`EVENTS`] because it was full: events lost.
    RingBufferFull = 0,
    /// Records dropped because a kernel read they depend on failed.
    ReadFailed = 1,
}

/// Number of slots in [`COUNTERS`].
pub const COUNTER_SLOTS: u32 = 2;

/// Name of the read-only global holding the [`crate::layout::KernelLayout`].
pub const LAYOUT_GLOBAL: &str = "LAYOUT";

/// LRU hash: victim pid (the task `mark_victim` named) → [`VictimEntry`]. Lets the reaper's
/// pid-only tracepoints find the victim's mm.
pub const VICTIMS_BY_PID: &str = "VICTIMS_BY_PID";

/// LRU hash: victim mm address → [`VictimEntry`]. Filters `exit_mmap` and mmap_lock events
/// to victims' mms.
pub const VICTIMS_BY_MM: &str = "VICTIMS_BY_MM";

/// Victims remembered by each of the two maps above. LRU eviction keeps them bounded even
/// if an exit is missed.
pub const VICTIM_CAPACITY: u32 = 4096;

/// Array of one [`LastTrylock`]: the oom_reaper's most recent `mmap_read_trylock`.
pub const LAST_TRYLOCK: &str = "LAST_TRYLOCK";

/// Array of one u32: tgid of the oom_reaper kthread, learned from its own tracepoints.
pub const REAPER: &str = "REAPER";

/// Hash: caller `pid_tgid` → [`MreleaseCall`] for process_mrelease calls in progress.
pub const MRELEASE_CALLS: &str = "MRELEASE_CALLS";

/// Ring buffer of `u32` [`crate::event::EventKind`] values: the OOM and reaper events, for
/// the thread that attaches the hot hooks while a victim is in flight. Apart from
/// [`EVENTS`], so a reader busy with a storm never delays the attach.
pub const GATE: &str = "GATE";

/// Size of [`GATE`] in bytes: a page holds 256 events (each 16 bytes with its header), more
/// than the reaper emits in the time the thread takes to wake.
pub const GATE_BYTES: u32 = 4096;

/// Array of one u64: how many process_mrelease calls are in progress (a cheap first filter
/// on the hot mmap_lock hook).
pub const MRELEASE_ACTIVE: &str = "MRELEASE_ACTIVE";

/// Hash: `event::RetryKey` → u64 count of reclaim/compaction retries.
pub const RETRIES: &str = "RETRIES";

/// Distinct retry keys counted.
pub const RETRY_CAPACITY: u32 = 1024;

/// A victim remembered in the kernel.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VictimEntry {
    pub mm: u64,
    pub pid: u32,
    pub tgid: u32,
}

/// The reaper's last trylock: which mm, and whether it succeeded.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LastTrylock {
    pub mm: u64,
    pub success: u32,
    pub _pad: u32,
}

/// What `oom_kill_process` knew about a kill, until `mark_victim` sends it (keyed by the
/// chosen process's tgid).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OomContext {
    /// The cgroup whose limit was hit (0: none, the machine or a cpuset/mempolicy).
    pub domain_memcg_id: u64,
    pub domain_usage_kib: u64,
    pub domain_limit_kib: u64,
    pub chosen_points: i64,
    pub total_pages: u64,
    pub constraint: u32,
    pub _pad: u32,
    /// When `oom_kill_process` ran: a record older than a kill takes is stale.
    pub noted_ns: u64,
}

/// The OOM killer's evaluation in progress (one at a time: `out_of_memory` holds `oom_lock`):
/// the processes `oom_badness` weighed with the most points, until `oom_kill_process` sends
/// them as an [`OomCandidatesEvent`](crate::event::OomCandidatesEvent).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OomEvaluation {
    /// When `out_of_memory` was entered.
    pub started_ns: u64,
    /// kprobe mode: the task `oom_badness` was entered with, until it returns.
    pub entered_task: u64,
    /// The task running the evaluation (a thread id).
    pub pid: u32,
    pub weighed: u32,
    pub count: u32,
    pub spared_count: u32,
    /// Scratch for the kernel side's search of the entry to displace: kept in the map, not
    /// in a register, so that the verifier does not walk each way the search can go.
    pub lowest: u32,
    pub _pad: u32,
    pub candidates: [crate::event::OomCandidate; crate::event::MAX_OOM_CANDIDATES],
    /// Processes with a negative `oom_score_adj` and the most memory.
    pub spared: [crate::event::OomCandidate; crate::event::MAX_OOM_SPARED],
}

/// A process_mrelease call in progress.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MreleaseCall {
    pub entered_ns: u64,
    /// The target's mm, from the pidfd at entry or the mm the call locked (0 until known).
    pub mm: u64,
    pub pidfd: i32,
    /// `event::mrelease_fields` read when the mm became known.
    pub fields: u32,
    pub target_pid: u32,
    pub target_tgid: u32,
    pub target_comm: [u8; crate::event::COMM_LEN],
    pub target_memcg_id: u64,
    pub rss_before_anon_kib: u64,
    pub rss_before_file_kib: u64,
    pub rss_before_shmem_kib: u64,
}

/// Hash: task `pid_tgid` → [`ReapInFlight`] while that task is inside `__oom_reap_task_mm`.
pub const REAPS_IN_FLIGHT: &str = "REAPS_IN_FLIGHT";

/// A `__oom_reap_task_mm` call in progress (fentry/kprobe modes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReapInFlight {
    pub entered_ns: u64,
    pub mm: u64,
    /// Notifier refusals seen so far in this call.
    pub refusals: u32,
    pub _pad: u32,
    /// The `struct mmu_notifier_range *` of an invalidation in progress (kprobe mode keeps
    /// the argument here for its kretprobe).
    pub range: u64,
}

const _: () = {
    assert!(core::mem::size_of::<ReapInFlight>() == 32);
    assert!(core::mem::size_of::<VictimEntry>() == 16);
    assert!(core::mem::size_of::<LastTrylock>() == 16);
    assert!(core::mem::size_of::<MreleaseCall>() == 80);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::VictimEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LastTrylock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MreleaseCall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReapInFlight {}
}
