//! What a reap cannot free: the victim's memory by class. `__oom_reap_task_mm` unmaps only
//! anonymous and private mappings; shared mappings (shmem, tmpfs, memfd, SysV) stay, their
//! pages charged while anyone holds them; unmapping file pages frees no page cache; hugetlb
//! and VM_PFNMAP mappings are skipped; an mmu notifier that refuses leaves its range.
//!
//! Derived from the RSS counters the kill and each reap pass carry (`inferred`): at the kill,
//! the victim's shmem and file RSS; after a pass, what the pass left of each. The counters do
//! not see hugetlb or PFN mappings, so those are unknown (`None`) here.
use super::{AttemptResult, Victim};
use crate::wire::Rss;

/// The victim's memory a reap cannot free, by class (KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreapable {
    /// Shared memory mapped (shmem RSS): stays charged while anyone maps or holds it.
    pub shmem_kib: u64,
    /// File pages mapped (file RSS): unmapping them frees no page cache.
    pub shared_file_kib: u64,
    pub hugetlb_kib: Option<u64>,
    pub pfnmap_kib: Option<u64>,
    /// Anonymous memory a pass left (the ranges an mmu notifier refused); `None` at the kill.
    pub left_anon_kib: Option<u64>,
    /// The ranges mmu notifiers refused, `[start, end)`, as traced (fentry/kprobe modes).
    pub refused_ranges: Vec<(u64, u64)>,
    /// Derived from RSS counters rather than read per VMA.
    pub inferred: bool,
}

impl Unreapable {
    fn from_rss(rss: &Rss, left_anon: Option<u64>, v: &Victim) -> Self {
        Self {
            shmem_kib: rss.shmem_kib,
            shared_file_kib: rss.file_kib,
            hugetlb_kib: None,
            pfnmap_kib: None,
            left_anon_kib: left_anon,
            refused_ranges: v.notifier_refusals.iter().filter_map(|r| r.range).collect(),
            inferred: true,
        }
    }
}

impl Victim {
    /// At the kill: its shmem and file RSS.
    pub fn unreapable_at_kill(&self) -> Option<Unreapable> {
        let m = self.memory_at_kill()?;
        let rss = Rss {
            anon_kib: m.anon_rss_kib,
            file_kib: m.file_rss_kib,
            shmem_kib: m.shmem_rss_kib,
        };
        Some(Unreapable::from_rss(&rss, None, self))
    }

    /// After reap pass `index` (an attempt that reaped): what it left of each class.
    pub fn unreapable_after(&self, index: usize) -> Option<Unreapable> {
        let AttemptResult::Reaped {
            rss_after: Some(rss),
            ..
        } = &self.attempts.get(index)?.result
        else {
            return None;
        };
        Some(Unreapable::from_rss(rss, Some(rss.anon_kib), self))
    }

    /// The latest: after the last reap pass, else at the kill.
    pub fn unreapable(&self) -> Option<Unreapable> {
        (0..self.attempts.len())
            .rev()
            .find_map(|i| self.unreapable_after(i))
            .or_else(|| self.unreapable_at_kill())
    }
}
