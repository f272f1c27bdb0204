//! Command-line flags (what the user typed) and their conversion to configuration.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use oomreap::{
    capture::{AttachPreference, CaptureOptions, FunctionPreference, KernelPaths},
    inject::{InjectOptions, Scenario},
    kernel::btf::DEFAULT_BTF_PATH,
};

/// See what the Linux kernel's OOM reaper does, and why it fails.
///
/// Tracing needs root (CAP_BPF and CAP_PERFMON): run it as `sudo oomreap trace`.
#[derive(Debug, Parser)]
#[command(
    name = "oomreap",
    version = oomreap::LONG_VERSION,
    override_usage = "sudo oomreap [OPTIONS] <COMMAND>"
)]
pub struct Cli {
    /// More log output: -v for info, -vv for debug (including the kernel programs' own log).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live dashboard of OOM victims and what the reaper does with them.
    Top(TopArgs),
    /// Print each OOM victim's path through the reaper as it happens, until Ctrl-C.
    Trace(TraceArgs),
    /// Write the raw event stream to FILE until Ctrl-C, for `trace --replay FILE`.
    Record(RecordArgs),
    /// Report what this kernel offers oomreap: BTF, privileges, each hook and attach mode.
    Doctor(DoctorArgs),
    /// Serve Prometheus metrics about OOM victims and the reaper.
    Serve(ServeArgs),
    /// Attach, run a command (e.g. a fault-injection test), detach, and judge what the reaper did.
    Run(RunArgs),
    /// Drive the OOM reaper into one of its outcomes, inside a throwaway memory cgroup.
    Inject(InjectArgs),
    /// A process of an inject scenario (not for general use).
    #[command(hide = true)]
    Helper(HelperArgs),
    /// Touch memory until killed (a test victim; not for general use).
    #[command(hide = true)]
    Hog(HogArgs),
    /// Write man pages or shell completions into a folder (for packagers).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// The folder to write into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// What `oomreap generate` writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateWhat {
    /// A man page per subcommand (`oomreap.1`, `oomreap-top.1`, …).
    Man,
    /// bash, zsh and fish completions (`oomreap.bash`, `_oomreap`, `oomreap.fish`).
    Completions,
}

/// Which kind of tracepoint to attach.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachArg {
    /// BTF tracepoints when the kernel has BTF, classic tracepoints otherwise.
    Auto,
    /// BTF tracepoints only.
    Btf,
    /// Classic tracepoints only (less detail; needs tracefs).
    Classic,
}

/// How to hook the reaper's kernel functions, beyond the tracepoints.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FunctionsArg {
    /// fentry/fexit where the kernel allows them, else kprobes, else none.
    Auto,
    /// fentry/fexit only.
    Fentry,
    /// kprobe/kretprobe only.
    Kprobe,
    /// None: tracepoints only.
    Off,
}

/// How to attach to the kernel (shared by trace, record and doctor).
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Kind of tracepoint to attach.
    #[arg(long, value_enum, default_value_t = AttachArg::Auto)]
    pub attach: AttachArg,

    /// How to hook kernel functions: `__oom_reap_task_mm` and mmu notifier invalidations
    /// (exact reap results, notifier refusals), the OOM killer's choice, and process_mrelease
    /// (without a function hook, its syscall tracepoints slow every syscall a little).
    #[arg(long, value_enum, env = "OOMREAP_FUNCTIONS", default_value_t = FunctionsArg::Auto)]
    pub functions: FunctionsArg,

    /// The running kernel's BTF.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_BTF_PATH)]
    pub btf: PathBuf,

    /// Size of the kernel-to-user event ring buffer in KiB: a power of two of at least 4.
    #[arg(long, value_name = "KIB", hide = true, value_parser = parse_ring_kib,
          default_value_t = oomreap_common::maps::EVENTS_DEFAULT_BYTES / 1024)]
    pub ring_buffer_kib: u32,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Print JSON Lines (schema: docs/events.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write the raw event stream to FILE (as `oomreap record` does).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    pub record: Option<PathBuf>,

    /// Replay a recording instead of tracing the kernel (no root needed).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Play a recording instead of watching the kernel (no root needed).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Write log lines to FILE (the dashboard owns the terminal, so they are dropped otherwise).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Replay speed: 2 plays twice as fast, 0.5 half as fast.
    #[arg(long, value_name = "N", default_value_t = 1.0, requires = "replay", value_parser = parse_speed)]
    pub speed: f64,
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed > 0.0 && speed <= 10_000.0 => Ok(speed),
        _ => Err(format!(
            "{text:?} is not a speed between 0 and 10000; try 1 or 10"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = oomreap::exporter::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,

    /// Allow --listen on an address other than loopback, exposing the metrics to the network.
    #[arg(long)]
    pub allow_remote: bool,

    /// Memory cgroups that get labels of their own (the most recently active); the rest are
    /// counted as "other".
    #[arg(long, value_name = "N", default_value_t = oomreap::exporter::DEFAULT_MAX_CGROUPS)]
    pub max_cgroups: usize,

    /// TLS and basic auth, in the Prometheus exporter-toolkit's web configuration format
    /// (tls_server_config: cert_file, key_file, client_ca_file, client_auth_type, min_version;
    /// basic_auth_users: user: bcrypt hash).
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
}

impl ServeArgs {
    /// Checks the combination of flags (a non-loopback address needs --allow-remote) and
    /// reads --web-config.
    pub fn options(&self) -> Result<oomreap::exporter::ServeOptions, String> {
        if !oomreap::exporter::is_loopback(&self.listen) && !self.allow_remote {
            return Err(format!(
                "refusing to listen on {}, which is not loopback; add --allow-remote to expose the metrics",
                self.listen
            ));
        }
        let (tls, auth) = match &self.web_config {
            Some(path) => {
                let config =
                    oomreap::exporter::WebConfig::load(path).map_err(|e| format!("{e:#}"))?;
                let tls = config.rustls(path).map_err(|e| e.to_string())?;
                let auth = oomreap::exporter::BasicAuth::new(config.users).map(std::sync::Arc::new);
                (tls, auth)
            }
            None => (None, None),
        };
        if !oomreap::exporter::is_loopback(&self.listen) && tls.is_none() {
            log::warn!(
                "serving metrics on {} in clear text; --web-config adds TLS and basic auth",
                self.listen
            );
        }
        Ok(oomreap::exporter::ServeOptions {
            listen: self.listen,
            max_cgroups: self.max_cgroups,
            tls,
            auth,
        })
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Only victims in this memory cgroup (a path in the memory hierarchy, or below its root).
    #[arg(long, value_name = "PATH", conflicts_with = "descendants")]
    pub cgroup: Option<PathBuf>,

    /// Only victims in the command's process tree.
    #[arg(long)]
    pub descendants: bool,

    /// After the command, wait at most this many seconds for victims to reach an outcome.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub settle: f64,

    /// Write the report as JSON (schema: docs/run-report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write a JUnit XML file with one test case per expectation.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write the raw event stream, replayable with `trace --replay` and `top --replay`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Every victim must be reaped or free its memory otherwise.
    #[arg(long)]
    pub expect_reaped: bool,

    /// Every kill must give its OOM domain memory back (its recovery judged recovered).
    #[arg(long)]
    pub expect_recovered: bool,

    /// Every victim's memory must be gone within N ms of its kill.
    #[arg(long, value_name = "N")]
    pub max_reap_ms: Option<u64>,

    /// Fail if this happens (repeatable).
    #[arg(long, value_enum, value_name = "WHAT")]
    pub fail_on: Vec<oomreap::session::FailOn>,

    /// Exactly N victims.
    #[arg(long, value_name = "N")]
    pub expect_victims: Option<u64>,

    /// At least N victims.
    #[arg(long, value_name = "N")]
    pub min_victims: Option<u64>,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

impl RunArgs {
    /// The expectations, in flag order.
    pub fn expectations(&self) -> Vec<oomreap::session::Expectation> {
        use oomreap::session::Expectation;
        let mut list = Vec::new();
        if self.expect_reaped {
            list.push(Expectation::Reaped);
        }
        if self.expect_recovered {
            list.push(Expectation::Recovered);
        }
        if let Some(ms) = self.max_reap_ms {
            list.push(Expectation::MaxReapMs(ms));
        }
        for what in &self.fail_on {
            list.push(Expectation::FailOn(*what));
        }
        if let Some(n) = self.expect_victims {
            list.push(Expectation::Victims(n));
        }
        if let Some(n) = self.min_victims {
            list.push(Expectation::MinVictims(n));
        }
        list
    }
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Where to write the recording; an existing file is not overwritten.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub attach: AttachArgs,

    /// Instead of the kernel report: attach, count what oomreap's own kernel programs cost
    /// for SECONDS (runs and run time, from BPF_ENABLE_STATS), and print it.
    #[arg(long = "self", value_name = "SECONDS", num_args = 0..=1, default_missing_value = "5")]
    pub self_seconds: Option<u64>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses a scenario name; the names and their help come from the scenarios themselves.
fn scenario_parser() -> impl clap::builder::TypedValueParser<Value = Scenario> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new(
        Scenario::ALL.map(|s| PossibleValue::new(s.name()).help(s.description())),
    )
    .try_map(|name| Scenario::from_name(&name).ok_or_else(|| format!("no scenario {name:?}")))
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The scenario to run.
    #[arg(value_parser = scenario_parser(), required_unless_present = "list")]
    pub scenario: Option<Scenario>,

    /// Describe every scenario and what it needs, then exit.
    #[arg(long)]
    pub list: bool,

    /// Hard memory limit of the scenario's cgroup, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub limit: u64,

    /// lock-contended: free the lock after N failed reaper attempts (1-9), so the reap succeeds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub release_after: Option<u32>,

    /// storm: how many victims.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,

    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl From<&InjectArgs> for InjectOptions {
    fn from(args: &InjectArgs) -> Self {
        Self {
            limit_mib: args.limit,
            release_after: args.release_after,
            count: args.count,
        }
    }
}

#[derive(Debug, Args)]
pub struct HelperArgs {
    #[command(subcommand)]
    pub role: HelperRole,
}

#[derive(Debug, Subcommand)]
pub enum HelperRole {
    /// A victim with one thread stuck reading the stalling file.
    StuckVictim {
        #[arg(long)]
        mib: u64,
        #[arg(long)]
        stall: PathBuf,
        #[arg(long)]
        kvm: bool,
        /// Register an ODP memory region on this RDMA device first (odp-victim).
        #[arg(long)]
        odp_device: Option<String>,
        /// The ODP region's size.
        #[arg(long, default_value_t = 64)]
        odp_mib: u64,
        /// Fork a releaser that deregisters the region on a byte from stdin.
        #[arg(long)]
        odp_releaser: bool,
        /// Once the memory fits, print `ready` and wait to be killed (userspace-kill).
        #[arg(long)]
        hold: bool,
    },
    /// Holds a network namespace of its own until stdin closes (the soft-RoCE device's).
    HoldNetns,
    /// The victim of lock-contended.
    LockVictim {
        #[arg(long)]
        mib: u64,
        #[arg(long)]
        stall: PathBuf,
    },
    /// Holds a process's mmap_lock for reading.
    JamRead {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        address: u64,
    },
    /// Queues for a process's mmap_lock for writing.
    JamWrite {
        #[arg(long)]
        pid: u32,
    },
    /// Keeps a memfd region of N MiB charged until a second byte on stdin (shmem-victim).
    ShmemHolder {
        #[arg(long)]
        mib: u64,
    },
    /// Maps the holder's region shared, touches it, then hogs N MiB (shmem-victim).
    ShmemVictim {
        #[arg(long)]
        region: PathBuf,
        #[arg(long)]
        mib: u64,
    },
    /// Touches N MiB and holds it until a second byte on stdin (adj-choice).
    MemoryHolder {
        #[arg(long)]
        mib: u64,
    },
    /// Writes a file of N MiB (a tmpfs one, in tmpfs-fill).
    TmpfsWriter {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        mib: u64,
    },
    /// Benchmark load: mmap, fault and munmap 1 MiB, N times.
    MmChurn {
        #[arg(long)]
        iterations: u64,
    },
    /// Benchmark load: run /bin/true N times.
    ForkChurn {
        #[arg(long)]
        iterations: u64,
    },
}

#[derive(Debug, Args)]
pub struct HogArgs {
    /// MiB of anonymous memory to touch.
    #[arg(long, default_value_t = 256)]
    pub mib: u64,
    /// Wait for one byte on stdin before touching memory.
    #[arg(long)]
    pub wait_for_go: bool,
}

/// A ring buffer size in KiB must make a byte size that is a power of two and a multiple of
/// the page size; the kernel refuses anything else when the map is created.
fn parse_ring_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of KiB"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        return Err(format!(
            "{kib} KiB is not a power of two between 4 and 1048576; try 256"
        ));
    }
    Ok(kib)
}

impl From<&AttachArgs> for CaptureOptions {
    fn from(args: &AttachArgs) -> Self {
        Self {
            attach: match args.attach {
                AttachArg::Auto => AttachPreference::Auto,
                AttachArg::Btf => AttachPreference::Btf,
                AttachArg::Classic => AttachPreference::Classic,
            },
            paths: KernelPaths {
                btf: args.btf.clone(),
                ..KernelPaths::default()
            },
            events_bytes: args.ring_buffer_kib * 1024,
            functions: match args.functions {
                FunctionsArg::Auto => FunctionPreference::Auto,
                FunctionsArg::Fentry => FunctionPreference::Fentry,
                FunctionsArg::Kprobe => FunctionPreference::Kprobe,
                FunctionsArg::Off => FunctionPreference::Off,
            },
        }
    }
}

#[cfg(test)]
mod tests;
