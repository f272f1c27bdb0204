//! Finds the oom_reaper kthread, so the kernel programs can recognise its lock attempts from
//! the very first one.

/// The oom_reaper kthread's pid, from /proc: the task named `oom_reaper` whose parent is
/// kthreadd (pid 2), so a user process that names itself so is not mistaken for it.
pub fn find_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                parse_stat(&stat).is_some_and(|(comm, ppid)| comm == "oom_reaper" && ppid == 2)
            })
        })
}

/// `(comm, ppid)` from a /proc/PID/stat line; comm may contain spaces and parentheses, so it
/// runs from the first `(` to the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        assert_eq!(
            parse_stat("42 (oom_reaper) S 2 0 0"),
            Some(("oom_reaper", 2))
        );
        assert_eq!(parse_stat("7 (a) b (c)) R 1 7 7"), Some(("a) b (c)", 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_this_machines_reaper() {
        // Every kernel with an OOM killer and CONFIG_MMU runs one.
        if !std::path::Path::new("/proc/self/stat").exists() {
            eprintln!("skipped: no /proc");
            return;
        }
        let pid = find_pid().expect("an oom_reaper kthread");
        assert!(pid > 2);
    }
}
