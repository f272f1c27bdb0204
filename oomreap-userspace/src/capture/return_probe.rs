//! Return probes with room for every call in flight.
//!
//! A kretprobe takes one of its instances for each call in flight; a call that finds none
//! free is missed, and its return program never runs. The kprobe PMU that aya attaches
//! through always gets the kernel's default count, and before 6.2 (commit 3b7ddab8a19a, in
//! 6.1.3) that is one per possible CPU on kernels built without CONFIG_PREEMPTION, such as
//! Debian's 5.10. On a one-CPU machine the reaper's pass then went unseen while an exiting
//! victim's exit_mmap was inside the same function.
//!
//! tracefs's `kprobe_events` takes an explicit count (`r256:`). A return probe made there,
//! with its program attached through a perf event, sees [`INSTANCES`] calls at once. Where
//! tracefs cannot be written (a read-only mount, as the DaemonSet's), the caller attaches
//! through the PMU and the hook's note says so. Each probe made is removed when dropped, and
//! those a killed oomreap left behind are removed at the next start.
use std::{
    fs::OpenOptions,
    io::Write,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// Calls in flight each return probe sees: more than the reaper, exiting victims and
/// process_mrelease callers make at once (the kernel allows up to 4096; each instance is a
/// few dozen bytes of kernel memory).
pub const INSTANCES: u32 = 256;

/// The group of one process's probes in tracefs: `oomreap_<pid>_<start time>`. The start
/// time tells a process from an earlier one of the same pid (reused, or pid 1 of another
/// container), whose probes are leftovers.
const GROUP_PREFIX: &str = "oomreap_";

/// Tells probes of one process apart when the same program is attached more than once
/// (`doctor` tries each mode on a fresh load).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The return probes made in tracefs, each removed when this is dropped or its program
/// detached.
#[derive(Debug, Default)]
pub struct ReturnProbes {
    tracefs: Option<PathBuf>,
    made: Vec<Made>,
    /// Programs attached with the kernel's default count instead, and why.
    defaulted: Vec<(&'static str, String)>,
}

impl ReturnProbes {
    /// Return probes made under `tracefs` (none where it is `None`); removes those left
    /// behind by an oomreap that no longer runs.
    pub fn new(tracefs: Option<PathBuf>) -> Self {
        if let Some(tracefs) = &tracefs {
            remove_leftovers(tracefs);
        }
        Self {
            tracefs,
            made: Vec::new(),
            defaulted: Vec::new(),
        }
    }

    /// Attaches the loaded kretprobe `program` to a return probe on `function` with
    /// [`INSTANCES`] instances; on `Err` (why not) nothing is left behind.
    pub fn attach(
        &mut self,
        program: &'static str,
        program_fd: BorrowedFd<'_>,
        function: &str,
    ) -> Result<(), String> {
        let tracefs = self.tracefs.as_deref().ok_or("tracefs is not mounted")?;
        let made = Made::new(tracefs, program, program_fd, function)?;
        self.made.push(made);
        Ok(())
    }

    /// Notes that `program` was attached with the kernel's default count, and why.
    pub fn defaulted(&mut self, program: &'static str, why: String) {
        self.defaulted.push((program, why));
    }

    /// Why `program` was attached with the kernel's default count; `None` if it was not.
    pub fn defaulted_because(&self, program: &str) -> Option<&str> {
        self.defaulted
            .iter()
            .rev()
            .find(|(p, _)| *p == program)
            .map(|(_, why)| why.as_str())
    }

    /// Detaches `program` and removes its probe, if one was made for it.
    pub fn detach(&mut self, program: &str) {
        self.made.retain(|made| made.program != program);
        self.defaulted.retain(|(p, _)| *p != program);
    }
}

/// One return probe made in tracefs, and the perf event its program is attached through.
#[derive(Debug)]
struct Made {
    program: &'static str,
    kprobe_events: PathBuf,
    /// `group/event`.
    event: String,
    /// Closed before the probe is removed: the kernel refuses to remove one in use.
    perf: Option<OwnedFd>,
}

impl Made {
    fn new(
        tracefs: &Path,
        program: &'static str,
        program_fd: BorrowedFd<'_>,
        function: &str,
    ) -> Result<Self, String> {
        let pid = std::process::id();
        let group = format!("{GROUP_PREFIX}{pid}_{}", start_time(pid).unwrap_or(0));
        let event = format!("{group}/{program}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let kprobe_events = tracefs.join("kprobe_events");
        append(&kprobe_events, &definition(&event, function))?;
        let mut made = Self {
            program,
            kprobe_events,
            event,
            perf: None,
        };
        // Dropping `made` on an error below removes the probe again.
        let id_path = tracefs.join("events").join(&made.event).join("id");
        let id: u64 = std::fs::read_to_string(&id_path)
            .map_err(|e| format!("{}: {e}", id_path.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", id_path.display()))?;
        let perf = open_tracepoint_event(id)?;
        use aya_obj::generated::{PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF};
        for (request, argument, what) in [
            (
                PERF_EVENT_IOC_SET_BPF,
                program_fd.as_raw_fd() as u64,
                "PERF_EVENT_IOC_SET_BPF",
            ),
            (PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE"),
        ] {
            // SAFETY: a perf event fd we own; both requests take an integer argument.
            if unsafe { libc::ioctl(perf.as_fd().as_raw_fd(), request as _, argument) } < 0 {
                return Err(format!("{what}: {}", std::io::Error::last_os_error()));
            }
        }
        made.perf = Some(perf);
        Ok(made)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        drop(self.perf.take());
        // A child forked a moment ago may still hold the perf event until it execs: the
        // kernel refuses to remove the probe until then.
        let mut tries = 0;
        while let Err(why) = append(&self.kprobe_events, &removal(&self.event)) {
            tries += 1;
            if tries == 5 {
                log::warn!("could not remove the return probe {}: {why}", self.event);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The `kprobe_events` line that makes `event` (`group/name`): a return probe on
/// `function` with [`INSTANCES`] instances.
fn definition(event: &str, function: &str) -> String {
    format!("r{INSTANCES}:{event} {function}\n")
}

/// The `kprobe_events` line that removes `event`.
fn removal(event: &str) -> String {
    format!("-:{event}\n")
}

/// Appends `line` to `kprobe_events`. Opened with O_TRUNC, as a shell's `>` does, it would
/// remove every probe on the machine.
fn append(kprobe_events: &Path, line: &str) -> Result<(), String> {
    OpenOptions::new()
        .append(true)
        .open(kprobe_events)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|e| format!("{}: {e}", kprobe_events.display()))
}

/// The probes in `kprobe_events` (its text) that an oomreap made, and the process that made
/// each: `(group/event, pid, start time)`.
fn made_by_oomreap(kprobe_events: &str) -> Vec<(String, u32, u64)> {
    kprobe_events
        .lines()
        .filter_map(|line| {
            // `r256:oomreap_123_4567/oom_reap_task_mm_kretprobe_0 __oom_reap_task_mm`
            let event = line.split_whitespace().next()?.split_once(':')?.1;
            let group = event.split_once('/')?.0.strip_prefix(GROUP_PREFIX)?;
            let (pid, start) = group.split_once('_')?;
            Some((event.to_owned(), pid.parse().ok()?, start.parse().ok()?))
        })
        .collect()
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat`'s 22nd field);
/// `None` if no such process runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command, which may hold spaces and parentheses: state is field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Removes the probes of oomreap processes that no longer run. One made by a live process in
/// another pid namespace may be tried too: the kernel refuses to remove a probe in use, so
/// only an unused one goes.
fn remove_leftovers(tracefs: &Path) {
    let kprobe_events = tracefs.join("kprobe_events");
    let Ok(text) = std::fs::read_to_string(&kprobe_events) else {
        return;
    };
    for (event, pid, start) in made_by_oomreap(&text) {
        if start_time(pid) != Some(start) {
            match append(&kprobe_events, &removal(&event)) {
                Ok(()) => log::info!("removed the return probe {event} left by pid {pid}"),
                Err(why) => log::debug!("leaving the return probe {event}: {why}"),
            }
        }
    }
}

/// Opens the perf event of tracepoint `id` (a kprobe event is one), for a BPF program to be
/// attached to, as aya opens its own.
fn open_tracepoint_event(id: u64) -> Result<OwnedFd, String> {
    use aya_obj::generated::{PERF_FLAG_FD_CLOEXEC, perf_event_attr, perf_event_sample_format};
    // SAFETY: a plain C struct, valid zeroed.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<perf_event_attr>() as u32;
    attr.type_ = aya_obj::generated::perf_type_id::PERF_TYPE_TRACEPOINT as u32;
    attr.config = id;
    attr.sample_type = perf_event_sample_format::PERF_SAMPLE_RAW as u64;
    // Not a sampling event: the program is all that runs (as aya opens its own).
    attr.__bindgen_anon_1.sample_period = 0;
    attr.__bindgen_anon_2.wakeup_events = 1;
    // SAFETY: `attr` outlives the call; pid -1 and cpu 0 as aya passes for tracepoints (the
    // program runs on every CPU).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(format!(
            "perf_event_open: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a new fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_defined_with_its_instances_and_removed_by_name() {
        assert_eq!(
            definition(
                "oomreap_7/oom_reap_task_mm_kretprobe_0",
                "__oom_reap_task_mm"
            ),
            "r256:oomreap_7/oom_reap_task_mm_kretprobe_0 __oom_reap_task_mm\n"
        );
        assert_eq!(removal("oomreap_7/x_1"), "-:oomreap_7/x_1\n");
    }

    #[test]
    fn only_probes_an_oomreap_made_are_leftovers() {
        let text = "r256:oomreap_42_1000/oom_reap_task_mm_kretprobe_0 __oom_reap_task_mm\n\
                    r:kprobes/mine do_exit\n\
                    p:oomreap_x_1/bad do_exit\n\
                    p:oomreap_7/older do_exit\n\
                    r128:oomreap_9_5/oom_badness_kretprobe_3 oom_badness\n";
        assert_eq!(
            made_by_oomreap(text),
            vec![
                (
                    "oomreap_42_1000/oom_reap_task_mm_kretprobe_0".to_owned(),
                    42,
                    1000
                ),
                ("oomreap_9_5/oom_badness_kretprobe_3".to_owned(), 9, 5),
            ]
        );
    }

    #[test]
    fn a_process_start_time_tells_it_from_an_earlier_one_of_its_pid() {
        let me = std::process::id();
        let start = start_time(me).expect("this process's start time");
        assert_eq!(start_time(me), Some(start));
        assert!(start_time(u32::MAX).is_none());
    }
}
