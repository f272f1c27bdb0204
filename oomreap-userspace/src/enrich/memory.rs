//! What an OOM domain's memory is made of at a kill: a memory cgroup's `memory.stat` (cgroup
//! v1 or v2) or, for a machine-wide OOM, `/proc/meminfo`, with their names normalised to one
//! set of kinds, in KiB.
//!
//! The kernel prints the same table in the OOM report (dmesg); reading it here turns it into
//! data. It is read in user space as soon as the kill arrives: the delay is kept beside it.
use std::{collections::BTreeMap, path::Path};

use crate::cgroup::CgroupVersion;

/// Memory by kind (KiB), under normalised names: `anon`, `file` (page cache, shmem included,
/// as both cgroup versions count it), `shmem`, `file_mapped`, `kernel` (slab, stacks, page
/// tables and the rest the kernel charges), `slab`, `kernel_stack`, `pagetables`, `sock`,
/// `swap`; and the domain's `usage` and `limit` (a memory cgroup's charge counter and limit;
/// the machine's MemTotal less MemAvailable, and MemTotal). A kind the source does not
/// report is absent, as is the limit of a cgroup that has none.
pub type MemoryByKind = BTreeMap<&'static str, u64>;

/// cgroup v2 `memory.stat` keys (bytes) and the kinds they are.
const V2: [(&str, &str); 9] = [
    ("anon", "anon"),
    ("file", "file"),
    ("shmem", "shmem"),
    ("file_mapped", "file_mapped"),
    ("kernel", "kernel"),
    ("slab", "slab"),
    ("kernel_stack", "kernel_stack"),
    ("pagetables", "pagetables"),
    ("sock", "sock"),
];

/// cgroup v1 `memory.stat` keys (bytes; the `total_` ones count the whole subtree, as the
/// limit does) and the kinds they are.
const V1: [(&str, &str); 5] = [
    ("total_rss", "anon"),
    ("total_cache", "file"),
    ("total_shmem", "shmem"),
    ("total_mapped_file", "file_mapped"),
    ("total_swap", "swap"),
];

/// `/proc/meminfo` keys (kB) and the kinds they are; `file` is `Cached` plus `Buffers`.
const MEMINFO: [(&str, &str); 6] = [
    ("AnonPages", "anon"),
    ("Shmem", "shmem"),
    ("Mapped", "file_mapped"),
    ("Slab", "slab"),
    ("KernelStack", "kernel_stack"),
    ("PageTables", "pagetables"),
];

/// A memory cgroup's `memory.stat`, normalised. v2 kernels before 5.18 have no `kernel`
/// line; it is then the sum of what they do report (slab, stacks, page tables).
pub fn from_memory_stat(text: &str, version: CgroupVersion) -> MemoryByKind {
    let table: &[(&str, &str)] = match version {
        CgroupVersion::V1 => &V1,
        CgroupVersion::V2 => &V2,
    };
    let mut kinds = MemoryByKind::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Some(&(_, kind)) = table.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if let Ok(bytes) = value.trim().parse::<u64>() {
            kinds.insert(kind, bytes / 1024);
        }
    }
    if version == CgroupVersion::V2 && !kinds.contains_key("kernel") {
        let parts = ["slab", "kernel_stack", "pagetables"].map(|k| kinds.get(k).copied());
        if parts.iter().any(Option::is_some) {
            kinds.insert("kernel", parts.iter().flatten().sum());
        }
    }
    kinds
}

/// The machine's memory from `/proc/meminfo`, normalised; `kernel` is slab, stacks and page
/// tables.
pub fn from_meminfo(text: &str) -> MemoryByKind {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let mut kinds: MemoryByKind = MEMINFO
        .iter()
        .filter_map(|&(key, kind)| Some((kind, value(key)?)))
        .collect();
    if let (Some(cached), Some(buffers)) = (value("Cached"), value("Buffers")) {
        kinds.insert("file", cached + buffers);
    }
    let kernel: Vec<u64> = ["slab", "kernel_stack", "pagetables"]
        .iter()
        .filter_map(|k| kinds.get(k).copied())
        .collect();
    if !kernel.is_empty() {
        kinds.insert("kernel", kernel.iter().sum());
    }
    if let (Some(total), Some(available)) = (value("MemTotal"), value("MemAvailable")) {
        kinds.insert("usage", total.saturating_sub(available));
        kinds.insert("limit", total);
    }
    kinds
}

/// A cgroup's charge counter or limit file (bytes) in KiB; `None` for "max", v1's
/// unlimited value, or an unreadable file.
fn counter_kib(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let bytes = text.trim().parse::<u64>().ok()?;
    // v1 says "no limit" as PAGE_COUNTER_MAX pages in bytes, rounded: near 2^63.
    (bytes < 1 << 62).then_some(bytes / 1024)
}

/// Reads the memory of the cgroup at `dir` (v1 adds its kernel memory, when accounted).
pub fn read_cgroup(dir: &Path, version: CgroupVersion) -> Result<MemoryByKind, String> {
    let path = dir.join("memory.stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut kinds = from_memory_stat(&text, version);
    if version == CgroupVersion::V1
        && let Ok(kmem) = std::fs::read_to_string(dir.join("memory.kmem.usage_in_bytes"))
        && let Ok(bytes) = kmem.trim().parse::<u64>()
        && bytes > 0
    {
        kinds.insert("kernel", bytes / 1024);
    }
    let (usage, limit) = match version {
        CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        CgroupVersion::V2 => ("memory.current", "memory.max"),
    };
    for (kind, file) in [("usage", usage), ("limit", limit)] {
        if let Some(kib) = counter_kib(&dir.join(file)) {
            kinds.insert(kind, kib);
        }
    }
    Ok(kinds)
}

/// Reads the machine's memory.
pub fn read_machine() -> Result<MemoryByKind, String> {
    std::fs::read_to_string("/proc/meminfo")
        .map(|text| from_meminfo(&text))
        .map_err(|e| format!("/proc/meminfo: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_memory_stat_is_normalised_and_kernel_summed_where_missing() {
        let text = "anon 104857600\nfile 2097152\nkernel_stack 16384\npagetables 81920\n\
                    sock 0\nshmem 1048576\nfile_mapped 524288\nslab 409600\npgfault 12\n";
        let kinds = from_memory_stat(text, CgroupVersion::V2);
        assert_eq!(kinds["anon"], 102_400);
        assert_eq!(kinds["file"], 2_048);
        assert_eq!(kinds["shmem"], 1_024);
        assert_eq!(kinds["file_mapped"], 512);
        assert_eq!(kinds["kernel"], 400 + 16 + 80);
        assert_eq!(kinds["sock"], 0);
        assert!(!kinds.contains_key("pgfault"));
    }

    #[test]
    fn v2_kernel_line_is_taken_as_it_is() {
        let kinds = from_memory_stat("kernel 1048576\nslab 4096\n", CgroupVersion::V2);
        assert_eq!(kinds["kernel"], 1_024);
    }

    #[test]
    fn v1_memory_stat_reads_the_subtree_totals() {
        let text = "cache 8192\nrss 4096\nshmem 0\ntotal_cache 5134929920\ntotal_rss 151478272\n\
                    total_shmem 10637312\ntotal_mapped_file 17121280\ntotal_swap 0\n";
        let kinds = from_memory_stat(text, CgroupVersion::V1);
        assert_eq!(kinds["anon"], 151_478_272 / 1024);
        assert_eq!(kinds["file"], 5_134_929_920 / 1024);
        assert_eq!(kinds["shmem"], 10_388);
        assert_eq!(kinds["file_mapped"], 16_720);
        assert_eq!(kinds["swap"], 0);
        assert!(!kinds.contains_key("kernel"));
    }

    #[test]
    fn meminfo_is_normalised() {
        let text = "MemTotal:       24683772 kB\nMemAvailable:   20000000 kB\n\
                    Buffers:           51752 kB\n\
                    Cached:          4962800 kB\nAnonPages:        147872 kB\n\
                    Mapped:            16784 kB\nShmem:             10388 kB\n\
                    Slab:             412336 kB\nKernelStack:        2012 kB\n\
                    PageTables:         2008 kB\nSecPageTables:         0 kB\n";
        let kinds = from_meminfo(text);
        assert_eq!(kinds["anon"], 147_872);
        assert_eq!(kinds["file"], 4_962_800 + 51_752);
        assert_eq!(kinds["shmem"], 10_388);
        assert_eq!(kinds["file_mapped"], 16_784);
        assert_eq!(kinds["kernel"], 412_336 + 2_012 + 2_008);
        assert_eq!(kinds["pagetables"], 2_008);
        assert_eq!(kinds["usage"], 4_683_772);
        assert_eq!(kinds["limit"], 24_683_772);
    }
}
