//! The fleet case for `cargo xtask bench`: `oomreap serve` inside the DaemonSet's limits
//! (deploy/: 200m CPU, 128 MiB) through a storm of victims, as a node where pods OOM one after
//! another sees it. It reports the events lost (from serve's own metrics), serve's CPU as a
//! share of its limit, and its peak RSS.
use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{bench::Guard, command::run as run_cmd};

/// The DaemonSet's limits (deploy/kubernetes/daemonset.yaml).
const CPU_MILLICORES: u64 = 200;
const MEMORY_MIB: u64 = 128;

/// Victims in the storm, one after another, each exiting at once.
const VICTIMS: u64 = 300;

/// What serve did through the storm.
pub fn storm_in_limits(oomreap: &Path) -> anyhow::Result<Value> {
    let cgroup = LimitedCgroup::create()?;
    let (serve, address) = serve_in(oomreap, &cgroup)?;
    let pid = serve.0.id();
    let ticks_before = crate::bench::cpu_ticks(pid).context("serve's CPU time")?;
    let start = Instant::now();
    run_cmd(
        Command::new(oomreap)
            .args(["inject", "storm", "--count", &VICTIMS.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let storm_seconds = start.elapsed().as_secs_f64();
    // Long enough for serve to take the last victims' events in; its CPU share is over both.
    std::thread::sleep(Duration::from_secs(2));
    let seconds = start.elapsed().as_secs_f64();
    let ticks = crate::bench::cpu_ticks(pid).context("serve's CPU time")? - ticks_before;
    let peak_kib = crate::bench::status_kib(pid, "VmHWM:").context("serve's peak RSS")?;
    let metrics = http_get(&address, "/metrics")?;
    drop(serve);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_share = ticks as f64 / hz / seconds;
    Ok(json!({
        "victims": VICTIMS,
        "seconds": storm_seconds,
        "victims_per_second": VICTIMS as f64 / storm_seconds,
        "victims_seen": metric_sum(&metrics, "oomreap_victims_total"),
        "events_lost": metric_sum(&metrics, "oomreap_dropped_events_total"),
        "cpu_share_of_limit": cpu_share * 1000.0 / CPU_MILLICORES as f64,
        "peak_rss_kib": peak_kib,
        "limits": {"cpu_millicores": CPU_MILLICORES, "memory_mib": MEMORY_MIB},
    }))
}

/// Starts `oomreap serve` inside `cgroup` (it joins before it execs, so all of it is
/// limited) and returns it with its address once it listens.
fn serve_in(oomreap: &Path, cgroup: &LimitedCgroup) -> anyhow::Result<(Guard, String)> {
    let procs: Vec<CString> = cgroup
        .dirs
        .iter()
        .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes()))
        .collect::<Result<_, _>>()?;
    let mut command = Command::new(oomreap);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on
    // paths made before the fork.
    unsafe {
        command.pre_exec(move || {
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let marker = "serving http://";
    let (child, line) = crate::bench::spawn_until(&mut command, marker, "oomreap serve")?;
    let address = line
        .split_once(marker)
        .and_then(|(_, rest)| rest.split(['/', ' ']).next())
        .unwrap_or_default()
        .to_owned();
    Ok((child, address))
}

/// A memory and CPU limited cgroup of our own (v2, or v1's memory and cpu hierarchies),
/// removed on drop.
struct LimitedCgroup {
    dirs: Vec<PathBuf>,
}

impl LimitedCgroup {
    fn create() -> anyhow::Result<Self> {
        let name = format!("oomreap-bench-serve-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let memory = MEMORY_MIB << 20;
        let quota = CPU_MILLICORES * 100; // µs per 100 ms period
        let mut cgroup = Self { dirs: Vec::new() };
        if root.join("cgroup.controllers").exists() {
            // Enabling a controller for the root's children is the machine's business.
            let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control"))?;
            for controller in ["cpu", "memory"] {
                if !enabled.split_whitespace().any(|c| c == controller) {
                    bail!("the {controller} controller is not enabled for the root's children");
                }
            }
            let dir = root.join(&name);
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            cgroup.dirs.push(dir.clone());
            write(&dir.join("memory.max"), &memory.to_string())?;
            write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
        } else {
            let memory_dir = root.join("memory").join(&name);
            std::fs::create_dir(&memory_dir)
                .with_context(|| format!("mkdir {}", memory_dir.display()))?;
            cgroup.dirs.push(memory_dir.clone());
            write(
                &memory_dir.join("memory.limit_in_bytes"),
                &memory.to_string(),
            )?;
            let cpu_dir = root.join("cpu").join(&name);
            std::fs::create_dir(&cpu_dir)
                .with_context(|| format!("mkdir {}", cpu_dir.display()))?;
            cgroup.dirs.push(cpu_dir.clone());
            write(&cpu_dir.join("cpu.cfs_period_us"), "100000")?;
            write(&cpu_dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(cgroup)
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        // Its one process (serve) has been stopped and reaped by now.
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value} to {}", path.display()))
}

/// The body of `GET path` from `address` (plain HTTP/1.0).
fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_owned())
}

/// The sum of every series of metric `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_every_series_and_no_other_metric() {
        let text = "# HELP oomreap_dropped_events_total x\n\
                    oomreap_dropped_events_total{reason=\"ring_buffer_full\"} 2\n\
                    oomreap_dropped_events_total{reason=\"decode\"} 1\n\
                    oomreap_dropped_events_totally 9\n\
                    oomreap_victims_total 300\n";
        assert_eq!(metric_sum(text, "oomreap_dropped_events_total"), 3.0);
        assert_eq!(metric_sum(text, "oomreap_victims_total"), 300.0);
    }
}
