//! The processes of an OOM domain, read from /proc right after a kill: what the OOM killer
//! weighed them by (RSS, swap, page tables, `oom_score_adj`) for the kill's candidates. The
//! reads take no process's mmap_lock (/proc/PID/status reads the mm's counters).
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::exiting;
use crate::tracker::ProcessRead;

/// A domain's processes and how many were left unread, or why none could be read.
pub type Processes = Result<(Vec<ProcessRead>, u32), String>;

/// The error of [`in_cgroup`] when the cgroup is no more.
pub const GONE: &str = "gone";

/// Processes read at most per kill; the rest are counted as unread.
const MAX_PROCESSES: usize = 4096;

/// Cgroup folders visited at most under a domain.
const MAX_DIRS: usize = 10_000;

/// The processes of the memory cgroup at `dir` and its descendants, each with the id of the
/// cgroup it is in, but `victim`; and how many were left unread.
pub fn in_cgroup(dir: &Path, victim: u32) -> Processes {
    let mut pids: Vec<(u32, u64)> = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .map(|pid| (pid, meta.ino())),
            );
        }
        stack.extend(super::subdirectories(&dir));
    }
    if visited == 1 && !dir.exists() {
        return Err(GONE.into());
    }
    Ok(read_all(
        pids.into_iter().map(|(pid, id)| (pid, Some(id))),
        victim,
    ))
}

/// Every process of the machine (a machine-wide OOM) but `victim`.
pub fn on_machine(victim: u32) -> Processes {
    let pids = std::fs::read_dir("/proc")
        .map_err(|err| format!("cannot list /proc: {err}"))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    Ok(read_all(pids.map(|pid| (pid, None)), victim))
}

/// The pages a machine-wide OOM weighs against: RAM and swap (`totalram_pages() +
/// total_swap_pages`).
pub fn machine_pages() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) / 4)
}

/// Reads each process (up to the bound); init and kernel threads, which the OOM killer never
/// weighs, and processes gone meanwhile are left out. So is the victim: its kill's record has
/// its figures, and a read of its /proc files holds its dying mm for a moment, in which its
/// teardown could fall to this thread.
fn read_all(
    pids: impl Iterator<Item = (u32, Option<u64>)>,
    victim: u32,
) -> (Vec<ProcessRead>, u32) {
    let mut read = Vec::new();
    let mut unread = 0u32;
    for (pid, memcg) in pids {
        if pid == 1 || pid == victim {
            continue;
        }
        if read.len() >= MAX_PROCESSES {
            unread += 1;
            continue;
        }
        if let Some(process) = read_process(pid, memcg) {
            read.push(process);
        }
    }
    (read, unread)
}

/// One process from /proc/PID/status and oom_score_adj; `None` for a kernel thread (no
/// memory of its own) or one that is gone.
fn read_process(pid: u32, memcg: Option<u64>) -> Option<ProcessRead> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let kib = |key: &str| {
        field(key)
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Kernel threads have no VmRSS line.
    field("VmRSS:")?;
    let oom_score_adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessRead {
        pid,
        comm: field("Name:").unwrap_or_default().to_owned(),
        rss_kib: kib("VmRSS:"),
        swap_kib: kib("VmSwap:"),
        pgtables_kib: kib("VmPTE:"),
        oom_score_adj,
        memcg,
        exiting: exiting(pid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_reads_as_status_says_and_a_kernel_thread_not_at_all() {
        let me = read_process(std::process::id(), Some(7)).unwrap();
        assert!(me.rss_kib > 0, "{me:?}");
        assert_eq!(me.memcg, Some(7));
        assert!(!me.exiting);
        let adj: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(me.oom_score_adj, adj);
        // kthreadd, pid 2, the parent of every kernel thread.
        assert_eq!(read_process(2, None), None);
    }

    #[test]
    fn the_machine_has_pages_and_processes() {
        assert!(machine_pages().is_some_and(|p| p > 0));
        let (processes, unread) = on_machine(1).unwrap();
        assert!(processes.iter().any(|p| p.pid == std::process::id()));
        assert!(processes.iter().all(|p| p.pid != 1));
        assert_eq!(unread, 0);
    }
}
