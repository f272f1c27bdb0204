//! What a reap cannot free: the victim's memory by class. `__oom_reap_task_mm` unmaps only
//! anonymous and private mappings; shared mappings (shmem, tmpfs, memfd, SysV) stay, their
//! pages charged while anyone holds them; unmapping file pages frees no page cache; hugetlb
//! and VM_PFNMAP mappings are skipped; an mmu notifier that refuses leaves its range.
//!
//! Before any reap, exact once the victim's mappings were read (/proc/PID/smaps, VMA by VMA,
//! right after its kill: handed over as [`VictimVmas`]); until then derived from the
//! RSS counters the kill carries (`inferred`), which do not see hugetlb or PFN mappings
//! (`None` then). After a pass, what the pass left of each counter, hugetlb and PFN mappings
//! as read (the reaper skips them).
use super::{AttemptResult, Tracker, Victim, VictimId};
use crate::wire::Rss;

/// A victim's memory by class, summed over its mappings (KiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmaClasses {
    /// How many mappings were read.
    pub vmas: u32,
    /// Anonymous memory of private mappings: what a reap frees.
    pub anon_kib: u64,
    /// Shared memory mapped (shmem, tmpfs, memfd, SysV, shared anonymous), beyond anon.
    pub shmem_kib: u64,
    /// File pages mapped, beyond anon.
    pub file_kib: u64,
    /// hugetlb pages mapped.
    pub hugetlb_kib: u64,
    /// The size of VM_PFNMAP mappings (they have no pages to count).
    pub pfnmap_kib: u64,
}

/// A victim's mappings as read right after its kill, or why they could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VictimVmas {
    /// How long after the kill they were read.
    pub read_after_ns: u64,
    pub classes: Result<VmaClasses, String>,
}

impl Tracker {
    /// Hands over victim `id`'s mappings, read right after its kill.
    pub fn vmas_read(&mut self, id: VictimId, vmas: VictimVmas) {
        if let Some(v) = self.victim_mut(id) {
            v.vmas = Some(Box::new(vmas));
        }
    }
}

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
        let read = v.vmas.as_ref().and_then(|m| m.classes.as_ref().ok());
        Self {
            shmem_kib: rss.shmem_kib,
            shared_file_kib: rss.file_kib,
            hugetlb_kib: read.map(|c| c.hugetlb_kib),
            pfnmap_kib: read.map(|c| c.pfnmap_kib),
            left_anon_kib: left_anon,
            refused_ranges: v.notifier_refusals.iter().filter_map(|r| r.range).collect(),
            inferred: true,
        }
    }
}

impl Victim {
    /// Before any reap: by class from its mappings once they were read, else its shmem and
    /// file RSS at the kill.
    pub fn unreapable_at_kill(&self) -> Option<Unreapable> {
        if let Some(read) = self.vmas.as_ref().and_then(|m| m.classes.as_ref().ok()) {
            return Some(Unreapable {
                shmem_kib: read.shmem_kib,
                shared_file_kib: read.file_kib,
                hugetlb_kib: Some(read.hugetlb_kib),
                pfnmap_kib: Some(read.pfnmap_kib),
                left_anon_kib: None,
                refused_ranges: self
                    .notifier_refusals
                    .iter()
                    .filter_map(|r| r.range)
                    .collect(),
                inferred: false,
            });
        }
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
