//! A soft-RoCE (rdma_rxe) RDMA device of the scenario's own, for its ODP victim.
//!
//! The device sits on a dummy netdev inside a network namespace the scenario makes (a helper
//! that unshares one and waits), so nothing of the machine's own network changes and no traffic
//! leaves it. Both are made with iproute2's `ip` and `rdma`, as people make them. Dropping it
//! deletes the RDMA link, then ends the helper, whose namespace and netdev go with it.
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
};

use super::{
    STEP_TIMEOUT, ScenarioError,
    env::{Helper, wait_until},
};

/// The dummy netdev inside the namespace.
const NETDEV: &str = "oomreap0";

pub struct SoftRoce {
    /// The RDMA device's name, as libibverbs and /sys/class/infiniband show it.
    pub device: String,
    netns: Helper,
}

impl SoftRoce {
    /// Checks that this kernel and machine can make one, then makes it.
    pub fn create(scenario: &'static str) -> Result<Self, ScenarioError> {
        if !Path::new("/sys/module/rdma_rxe").exists() {
            return Err(ScenarioError::MissingRdma {
                scenario,
                why: "the rdma_rxe module (soft-RoCE) is not loaded; `modprobe rdma_rxe` loads \
                      it where the kernel has it (Debian's generic -amd64 kernels do, the \
                      -cloud-amd64 ones do not)"
                    .into(),
            });
        }
        for program in ["ip", "rdma"] {
            if which(program).is_none() {
                return Err(ScenarioError::MissingRdma {
                    scenario,
                    why: format!("no `{program}` on PATH (Debian's iproute2)"),
                });
            }
        }
        super::odp::verbs_available()
            .map_err(|why| ScenarioError::MissingRdma { scenario, why })?;
        let mut netns = Helper::spawn("netns", &["helper".into(), "hold-netns".into()])?;
        let ready = netns.read_line()?;
        if ready != "ready" {
            return Err(ScenarioError::HelperFailed {
                role: "netns",
                why: format!("said {ready:?}, not ready"),
            });
        }
        let device = format!("oomreap-rxe-{}", std::process::id());
        let roce = Self { device, netns };
        roce.inside(&["ip", "link", "add", NETDEV, "type", "dummy"])?;
        roce.inside(&["ip", "link", "set", NETDEV, "up"])?;
        roce.inside(&[
            "rdma",
            "link",
            "add",
            &roce.device,
            "type",
            "rxe",
            "netdev",
            NETDEV,
        ])?;
        let sysfs = format!("/sys/class/infiniband/{}", roce.device);
        wait_until(STEP_TIMEOUT, "the rxe device to appear", || {
            Path::new(&sysfs).exists()
        })?;
        Ok(roce)
    }

    /// Runs `args` inside the namespace; fails with its stderr.
    fn inside(&self, args: &[&str]) -> Result<(), ScenarioError> {
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", self.netns.pid())).map_err(
            |source| ScenarioError::Spawn {
                role: "netns",
                source,
            },
        )?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&netns);
        let mut command = Command::new(args[0]);
        command.args(&args[1..]).stdin(Stdio::null());
        // SAFETY: setns is async-signal-safe; `fd` stays open until the child has exec'd.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = command.output().map_err(|source| ScenarioError::Spawn {
            role: "netns",
            source,
        })?;
        if !out.status.success() {
            return Err(ScenarioError::MissingRdma {
                scenario: "soft-RoCE",
                why: format!(
                    "`{}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

impl Drop for SoftRoce {
    fn drop(&mut self) {
        // Best effort: the netdev's end removes the device anyway when the helper ends.
        let _ = self.inside(&["rdma", "link", "delete", &self.device]);
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// The `hold-netns` helper: a new network namespace, held until stdin closes.
pub fn hold_netns() -> std::io::Result<()> {
    // SAFETY: unshare with a flag; affects only this process.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    println!("ready");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest)?;
    Ok(())
}
