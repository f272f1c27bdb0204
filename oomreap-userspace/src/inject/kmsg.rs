//! The kernel log, read from its end: the one place the reaper says it gave up ("oom_reaper:
//! unable to reap pid:N"). A scenario that must hold its jam through all ten attempts waits
//! for that line, not for a clock: in a slow guest the attempts come later than 100 ms apart,
//! and a jam released by the clock before the tenth changes what the tenth sees.
use std::{
    fs::File,
    io::{ErrorKind, Read as _, Seek as _, SeekFrom},
    os::unix::fs::OpenOptionsExt as _,
    time::Duration,
};

use super::{ScenarioError, env::wait_until};

/// /dev/kmsg, opened before the kill and positioned after every record already logged.
pub struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Opens the log at its end; `None` where it cannot be read (no /dev/kmsg, no privilege).
    pub fn open_at_end() -> Option<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        Some(Self { file })
    }

    /// Waits up to `timeout` for the reaper's give-up line for `pid`.
    pub fn wait_for_give_up(&mut self, pid: u32, timeout: Duration) -> Result<(), ScenarioError> {
        let wanted = give_up_line(pid);
        wait_until(timeout, &format!("the kernel to log {wanted:?}"), || {
            self.records().any(|text| text.contains(&wanted))
        })
    }

    /// The records logged since the last call, each as its text after the `PRIO,SEQ,…;`
    /// prefix. One read() is one record; a record overwritten before we read it (EPIPE) is
    /// skipped, and the next read goes on from the oldest one left.
    fn records(&mut self) -> impl Iterator<Item = String> + '_ {
        let mut buffer = vec![0u8; 8192];
        std::iter::from_fn(move || {
            loop {
                match self.file.read(&mut buffer) {
                    Ok(0) => return None,
                    Ok(n) => return Some(record_text(&buffer[..n])),
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
        })
    }
}

/// What mm/oom_kill.c's oom_reap_task() prints after its last failed attempt.
fn give_up_line(pid: u32) -> String {
    format!("oom_reaper: unable to reap pid:{pid} ")
}

fn record_text(record: &[u8]) -> String {
    let record = String::from_utf8_lossy(record);
    record
        .split_once(';')
        .map_or(&*record, |(_, text)| text)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_its_text_without_prefix_or_continuation_lines() {
        let record =
            b"6,1234,5678901,-;oom_reaper: unable to reap pid:42 (oomreap)\n SUBSYSTEM=x\n";
        let text = record_text(record);
        assert_eq!(text, "oom_reaper: unable to reap pid:42 (oomreap)");
        assert!(text.contains(&give_up_line(42)));
        assert!(!text.contains(&give_up_line(4)));
    }
}
