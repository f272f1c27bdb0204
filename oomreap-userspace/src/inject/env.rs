//! The scenario's surroundings: its child processes, cancellation by SIGINT/SIGTERM, and
//! waiting for the kernel to do something.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::ScenarioError;

/// Set by SIGINT or SIGTERM: every wait checks it and the scenario unwinds, cleaning up.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// How often waits look at the kernel's state (there is no event for "the task is now in
/// uninterruptible sleep" or "the OOM killer has run"); short against the reaper's 100 ms.
const POLL: Duration = Duration::from_millis(5);

extern "C" fn on_signal(_: libc::c_int) {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to cancellation instead of death, so cleanup runs.
pub fn catch_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// `Err(Interrupted)` once a signal asked us to stop.
pub fn check_cancel() -> Result<(), ScenarioError> {
    if CANCELLED.load(Ordering::SeqCst) {
        Err(ScenarioError::Interrupted)
    } else {
        Ok(())
    }
}

/// Waits until `done` returns true, failing after `timeout` with `what` in the message.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), ScenarioError> {
    let deadline = Instant::now() + timeout;
    loop {
        check_cancel()?;
        if done() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ScenarioError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Sleeps `duration`, cut short by cancellation.
pub fn sleep(duration: Duration) -> Result<(), ScenarioError> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        check_cancel()?;
        std::thread::sleep(POLL.min(deadline - Instant::now()));
    }
    check_cancel()
}

/// The scheduler state letter of a task (`R`, `S`, `D`, …), from /proc/PID/stat.
pub fn task_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// One of the scenario's child processes: `oomreap helper ROLE …`. Killed (by pid) and
/// reaped on drop; it also dies with oomreap (PR_SET_PDEATHSIG), however oomreap ends.
pub struct Helper {
    pub role: &'static str,
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Helper {
    /// Starts `oomreap ARGS` with piped stdin and stdout.
    pub fn spawn(role: &'static str, args: &[String]) -> Result<Self, ScenarioError> {
        let exe =
            std::env::current_exe().map_err(|source| ScenarioError::Spawn { role, source })?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|source| ScenarioError::Spawn { role, source })?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Self {
            role,
            child,
            stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the one byte the helper waits for before it starts.
    pub fn go(&mut self) -> Result<(), ScenarioError> {
        let role = self.role;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or(ScenarioError::HelperFailed {
                role,
                why: "no stdin".into(),
            })?;
        stdin
            .write_all(b"g")
            .and_then(|()| stdin.flush())
            .map_err(|err| ScenarioError::HelperFailed {
                role,
                why: format!("could not tell it to start: {err}"),
            })
    }

    /// Reads one line the helper prints.
    pub fn read_line(&mut self) -> Result<String, ScenarioError> {
        let role = self.role;
        let mut line = String::new();
        let read = self.stdout.as_mut().map(|out| out.read_line(&mut line));
        match read {
            Some(Ok(n)) if n > 0 => Ok(line.trim_end().to_owned()),
            _ => Err(ScenarioError::HelperFailed {
                role,
                why: format!("exited before reporting ({})", self.describe_exit()),
            }),
        }
    }

    /// Waits for the helper to end.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, ScenarioError> {
        let mut status = None;
        let role = self.role;
        wait_until(timeout, &format!("{role} to exit"), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        })?;
        // Its pipes go with it: a storm of thousands of helpers must not run out of fds.
        self.child.stdin = None;
        self.stdout = None;
        status.ok_or(ScenarioError::HelperFailed {
            role,
            why: "vanished".into(),
        })
    }

    /// Returns true if and only if the helper has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the helper by pid.
    pub fn kill(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
    }

    fn describe_exit(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => describe(status),
            _ => "still running".into(),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

/// `killed by SIGKILL`, `exited 0`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(libc::SIGKILL)) => "killed by SIGKILL".into(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}
