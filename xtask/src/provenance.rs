//! The run a generated doc describes (its date, commit and machine) and the opening every such
//! doc shares.
//!
//! docs/performance.md (`cargo xtask bench`) and docs/kernels.md (`cargo xtask vm-test`) are
//! written by the runs that measure them, never by hand, so each says which run it comes from;
//! git keeps the runs before it.
use std::{
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::command::output;

/// The docs the runs write, relative to the workspace. They are left out of the dirty check:
/// a run rewriting one of them changes nothing the next run measures.
pub const GENERATED: [&str; 2] = ["docs/kernels.md", "docs/performance.md"];

/// Where and when a run happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The UTC day the run began, `YYYY-MM-DD`.
    pub date: String,
    /// `git rev-parse --short=12 HEAD`, with `+dirty` when the work tree differs from it, or
    /// `unknown` outside a git checkout.
    pub commit: String,
    /// The machine: kernel release, CPUs and memory.
    pub machine: String,
}

impl Provenance {
    /// This run's, read as it begins: the commit is the one built and measured, even if HEAD
    /// moves during a long run.
    pub fn now(workspace: &Path) -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |r| r.trim().to_owned());
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total_kib(&m))
            .unwrap_or(0);
        Self {
            date: utc_date(seconds),
            commit: commit(workspace),
            machine: machine(&release, cpus, memory_kib),
        }
    }
}

/// HEAD's short hash, `+dirty` when a file other than the generated docs differs from it.
fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        // `cargo xtask bench` runs as root, often in a clone someone else owns: git refuses
        // such a repository unless told it is safe. Without optional locks, `git status` does
        // not rewrite the index (it would be root's afterwards).
        cmd.arg("-c")
            .arg(format!("safe.directory={}", workspace.display()))
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(workspace)
            .args(args);
        output(&mut cmd)
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let mut status = vec!["status", "--porcelain", "--", "."];
    let excluded: Vec<String> = GENERATED
        .iter()
        .map(|path| format!(":(exclude){path}"))
        .collect();
    status.extend(excluded.iter().map(String::as_str));
    // A status that cannot be read counts as dirty: the claim of a clean tree must be earned.
    let dirty = git(&status).is_none_or(|changes| !changes.is_empty());
    commit_label(&head, dirty)
}

/// `head`, or `head+dirty`.
fn commit_label(head: &str, dirty: bool) -> String {
    if dirty {
        format!("{head}+dirty")
    } else {
        head.to_owned()
    }
}

/// `MemTotal` of /proc/meminfo, in KiB.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        line.strip_prefix("MemTotal:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The machine line: `Linux 6.18.44, 2 CPUs, 24 GiB of memory` (memory to the nearest GiB).
fn machine(release: &str, cpus: usize, memory_kib: u64) -> String {
    let gib = (memory_kib as f64 / (1024.0 * 1024.0)).round();
    let cpus = if cpus == 1 {
        "1 CPU".to_owned()
    } else {
        format!("{cpus} CPUs")
    };
    format!("Linux {release}, {cpus}, {gib:.0} GiB of memory")
}

/// The UTC day of a Unix time, `YYYY-MM-DD` (the proleptic Gregorian calendar, as in Howard
/// Hinnant's `civil_from_days`, <https://howardhinnant.github.io/date_algorithms.html>).
fn utc_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The opening of a generated doc: its title, the command that writes it, and the run it
/// describes, then `facts` of the caller's own as further list items.
pub fn header(title: &str, command: &str, provenance: &Provenance, facts: &[String]) -> String {
    let mut out = format!(
        "# {title}\n\n\
         Generated by {command}: do not edit this file by hand; run the command again to \
         replace it.\n\n\
         - Date: {} (UTC)\n\
         - Commit: `{}`\n\
         - Machine: {}\n",
        provenance.date, provenance.commit, provenance.machine
    );
    for fact in facts {
        out.push_str(&format!("- {fact}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_utc_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        // 2026-12-04T01:06:01Z; a leap day; a year's last second and the next year's first.
        assert_eq!(utc_date(1_796_346_361), "2026-12-04");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600), "2027-01-01");
    }

    #[test]
    fn the_machine_line_names_kernel_cpus_and_memory() {
        let meminfo = "MemTotal:       24683772 kB\nMemFree:        1234 kB\n";
        let kib = mem_total_kib(meminfo).unwrap();
        assert_eq!(kib, 24_683_772);
        assert_eq!(
            machine("6.18.44-fc-v1300", 2, kib),
            "Linux 6.18.44-fc-v1300, 2 CPUs, 24 GiB of memory"
        );
        assert_eq!(
            machine("5.10.0", 1, 1 << 20),
            "Linux 5.10.0, 1 CPU, 1 GiB of memory"
        );
    }

    #[test]
    fn a_dirty_tree_is_marked() {
        assert_eq!(commit_label("4cedc6744fff", false), "4cedc6744fff");
        assert_eq!(commit_label("4cedc6744fff", true), "4cedc6744fff+dirty");
    }

    #[test]
    fn the_header_says_who_writes_it_and_which_run_it_shows() {
        let provenance = Provenance {
            date: "2026-12-04".into(),
            commit: "4cedc6744fff".into(),
            machine: "Linux 6.18, 2 CPUs, 24 GiB of memory".into(),
        };
        assert_eq!(
            header(
                "Performance",
                "`cargo xtask bench`",
                &provenance,
                &["Rounds: 5".to_owned()]
            ),
            "# Performance\n\n\
             Generated by `cargo xtask bench`: do not edit this file by hand; run the command \
             again to replace it.\n\n\
             - Date: 2026-12-04 (UTC)\n\
             - Commit: `4cedc6744fff`\n\
             - Machine: Linux 6.18, 2 CPUs, 24 GiB of memory\n\
             - Rounds: 5\n"
        );
    }
}
