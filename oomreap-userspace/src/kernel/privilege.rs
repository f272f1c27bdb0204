//! Checks that we may load and attach tracing programs, before trying to.

/// Capability numbers from include/uapi/linux/capability.h.
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// What a front end still needs once its programs are attached: reading the ring buffer
/// and maps through fds it holds needs no capability at all.
pub mod after_attach {
    use super::*;

    /// `serve` names mmu notifiers from /proc/kallsyms, whose addresses need CAP_SYSLOG.
    pub const SERVE: &[u32] = &[CAP_SYSLOG];
    /// `top` also reads lock holders' /proc/PID/stack, which needs CAP_SYS_ADMIN, and
    /// CAP_SYS_PTRACE for other users' tasks.
    pub const TOP: &[u32] = &[CAP_SYSLOG, CAP_SYS_ADMIN, CAP_SYS_PTRACE];
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("missing capability {0}; run oomreap as root (e.g. `sudo oomreap ...`)")]
    Missing(String),
    #[error("failed to read our capabilities from /proc/thread-self/status")]
    Unreadable(#[source] std::io::Error),
}

/// The effective capability set of a process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Capabilities(u64);

impl Capabilities {
    /// The calling thread's effective set. Capabilities are per thread: /proc/self would
    /// show the main thread's, which a front end may already have dropped while another
    /// thread (the hot hooks' gate) still holds its own.
    pub fn current() -> Result<Self, PrivilegeError> {
        let status = std::fs::read_to_string("/proc/thread-self/status")
            .map_err(PrivilegeError::Unreadable)?;
        Self::from_status(&status)
            .ok_or_else(|| PrivilegeError::Unreadable(std::io::Error::other("no CapEff line")))
    }

    /// Parses the `CapEff:` line of a `/proc/PID/status` text.
    pub fn from_status(status: &str) -> Option<Self> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(Self)
    }

    /// Returns true if and only if capability number `cap` is in the set.
    pub fn has(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }

    /// Tracing programs need CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on its own (which also
    /// covers kernels older than 5.8, where the two finer capabilities do not exist).
    pub fn check_tracing(self) -> Result<(), PrivilegeError> {
        if self.has(CAP_SYS_ADMIN) {
            return Ok(());
        }
        let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(cap, _)| !self.has(*cap))
            .map(|(_, name)| name)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(PrivilegeError::Missing(missing.join(" and ")))
        }
    }
}

/// Keeps only the capabilities in `keep` (those we have), dropping every other one from the
/// effective, permitted and inheritable sets of this process (all its threads must call
/// this before they do privileged work; the runtime's workers do none).
///
/// Without CAP_SETPCAP nothing else changes; the bounding set is left alone, since this
/// process never executes another program afterwards.
pub fn keep_only(keep: &[u32]) -> Result<Capabilities, PrivilegeError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Copy, Clone, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    /// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two halves.
    const VERSION_3: u32 = 0x2008_0522;
    let current = Capabilities::current()?;
    let mask = keep
        .iter()
        .filter(|&&cap| current.has(cap))
        .fold(0u64, |m, &cap| m | (1 << cap));
    let half = |shift: u32| Data {
        effective: (mask >> shift) as u32,
        permitted: (mask >> shift) as u32,
        inheritable: 0,
    };
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: capset reads the header and two data structs, both valid for the call. Lowering
    // our own sets needs no privilege and cannot fail for a subset of the permitted set.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Unreadable(std::io::Error::last_os_error()));
    }
    Capabilities::current()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(bits: &[u32]) -> Capabilities {
        Capabilities(bits.iter().fold(0, |acc, b| acc | 1 << b))
    }

    #[test]
    fn root_passes() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        let caps = Capabilities::from_status(status).unwrap();
        assert!(caps.check_tracing().is_ok());
    }

    #[test]
    fn bpf_and_perfmon_without_sys_admin_pass() {
        assert!(caps(&[CAP_BPF, CAP_PERFMON]).check_tracing().is_ok());
    }

    #[test]
    fn each_missing_capability_is_named() {
        let err = caps(&[]).check_tracing().unwrap_err().to_string();
        assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");
        let err = caps(&[CAP_BPF]).check_tracing().unwrap_err().to_string();
        assert!(
            err.contains("CAP_PERFMON") && !err.contains("CAP_BPF "),
            "{err}"
        );
    }

    #[test]
    fn a_status_without_capeff_is_none() {
        assert_eq!(Capabilities::from_status("Name:\tx\n"), None);
    }
}
