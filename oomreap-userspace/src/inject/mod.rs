//! `oomreap inject`: fault-injection scenarios that drive the OOM reaper into each of its
//! outcomes on demand, with the processes they start (the hidden `hog` and `helper`
//! subcommands) and their throwaway memory cgroups.
//!
//! Every scenario runs inside a fresh memory cgroup with a hard limit, starts only processes
//! of its own (`oomreap helper …`), and removes everything it created when it ends, fails or
//! is interrupted by SIGINT/SIGTERM: the FUSE mount lives in a private mount namespace, the
//! helpers die with oomreap (PR_SET_PDEATHSIG), and the cgroup is removed last (see
//! `Scene`'s `Drop`).

pub mod adj;
pub mod cgroup;
mod env;
mod fuse;
pub mod hog;
mod kmsg;
pub mod load;
mod namespace;
mod odp;
pub mod roles;
pub mod shared;
mod soft_roce;

use std::{path::PathBuf, time::Duration};

pub use env::catch_signals;
use env::{Helper, describe, sleep, task_state, wait_until};
use fuse::StallMount;
use kmsg::KernelLog;
use serde_json::{Value, json};
use soft_roce::SoftRoce;
pub use soft_roce::hold_netns;

use self::cgroup::MemoryCgroup;
use crate::{
    cgroup::{CgroupError, CgroupVersion, MemoryHierarchy},
    tracker::{MAX_REAP_ATTEMPTS, REAPER_DELAY_NS},
};

/// The reaper's retry interval (HZ/10).
const REAPER_RETRY: Duration = Duration::from_millis(100);
/// How long any single step may take before the scenario calls it stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A way to drive the reaper.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scenario {
    QuickExit,
    StuckVictim,
    LockContended,
    MmuNotifier,
    Mrelease,
    MreleaseStuck,
    UserspaceKill,
    ParentLimit,
    OdpVictim,
    OdpMrelease,
    Storm,
    ShmemVictim,
    TmpfsFill,
    AdjChoice,
}

impl Scenario {
    pub const ALL: [Self; 14] = [
        Self::QuickExit,
        Self::StuckVictim,
        Self::LockContended,
        Self::MmuNotifier,
        Self::Mrelease,
        Self::MreleaseStuck,
        Self::UserspaceKill,
        Self::ParentLimit,
        Self::OdpVictim,
        Self::OdpMrelease,
        Self::Storm,
        Self::ShmemVictim,
        Self::TmpfsFill,
        Self::AdjChoice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::QuickExit => "quick-exit",
            Self::StuckVictim => "stuck-victim",
            Self::LockContended => "lock-contended",
            Self::MmuNotifier => "mmu-notifier",
            Self::Mrelease => "mrelease",
            Self::MreleaseStuck => "mrelease-stuck",
            Self::UserspaceKill => "userspace-kill",
            Self::ParentLimit => "parent-limit",
            Self::OdpVictim => "odp-victim",
            Self::OdpMrelease => "odp-mrelease",
            Self::Storm => "storm",
            Self::ShmemVictim => "shmem-victim",
            Self::TmpfsFill => "tmpfs-fill",
            Self::AdjChoice => "adj-choice",
        }
    }

    /// The scenario called `name` (as [`Scenario::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What it does and which outcome it produces.
    pub fn description(self) -> &'static str {
        match self {
            Self::QuickExit => {
                "a victim exceeds its limit and exits at once: freed before the reaper wakes"
            }
            Self::StuckVictim => {
                "a victim thread sleeps uninterruptibly in a FUSE read, so the victim cannot \
                 exit and the oom_reaper reaps it"
            }
            Self::LockContended => {
                "a helper holds the victim's mmap_lock for reading (stalled in a FUSE fault \
                 through /proc/PID/mem) while another queues for writing (clear_refs): every \
                 reaper trylock fails and it gives up after 10 attempts (--release-after N \
                 frees the lock after N failed attempts)"
            }
            Self::MmuNotifier => {
                "like stuck-victim, but the victim's memory is a KVM memslot, so its mm \
                 carries a KVM mmu notifier"
            }
            Self::Mrelease => {
                "a stuck victim is OOM-killed and oomreap releases its memory with \
                 process_mrelease(2) before the reaper wakes"
            }
            Self::MreleaseStuck => {
                "like mrelease, but the victim stays stuck past the reaper's timer: \
                 process_mrelease does not stop it, so the reaper still wakes and reaps the \
                 released victim (one kill, one victim)"
            }
            Self::UserspaceKill => {
                "as a userspace OOM killer (Android's lmkd, earlyoom) does: SIGKILL to a \
                 process that fits its limit, then process_mrelease(2) on it, with no OOM kill"
            }
            Self::ParentLimit => {
                "the limit is on a parent cgroup (a pod), the victim in a child with none (a \
                 container): the OOM domain is the parent, not the victim's cgroup; it exits"
            }
            Self::OdpVictim => {
                "like stuck-victim, but 64 MiB of the victim's memory is an RDMA on-demand-paging \
                 region on a soft-RoCE device: its interval mmu notifier refuses every \
                 non-blocking invalidation, so each reaper pass is partial and the reaper gives \
                 up because of the notifier (--release-after N deregisters the region after N \
                 passes, and the next one reaps)"
            }
            Self::OdpMrelease => {
                "the odp-victim's victim, with process_mrelease(2) right after the kill: its \
                 reap is partial too, so it returns -EAGAIN; then the reaper gives up as in \
                 odp-victim"
            }
            Self::Storm => "--count N victims in a row (default 10), each exiting at once",
            Self::ShmemVictim => {
                "a holder keeps a memfd of three quarters of the limit charged; three victims \
                 in turn map it shared and allocate past the limit: each kill frees only the \
                 private part, so the domain does not recover (cause shmem) and it loops; then \
                 the holder lets the region go"
            }
            Self::TmpfsFill => {
                "a file in a tmpfs of the scenario's own (a private mount namespace) fills nine \
                 tenths of the limit; three allocators are killed in turn, each freeing next \
                 to nothing (cause shmem, an OOM loop); then the file is deleted and a fourth \
                 allocator's kill recovers the domain, ending the loop"
            }
            Self::AdjChoice => {
                "two processes share the limit: the larger holds six tenths of it with \
                 oom_score_adj -900, the smaller allocates past it with +500; the OOM killer \
                 picks the smaller, and the kill's candidates show both with their points"
            }
        }
    }

    /// What it needs besides root and a memory cgroup controller.
    pub fn needs(self) -> &'static str {
        match self {
            Self::QuickExit
            | Self::Storm
            | Self::ParentLimit
            | Self::ShmemVictim
            | Self::TmpfsFill => "nothing more",
            Self::AdjChoice => "CAP_SYS_RESOURCE, to lower a process's oom_score_adj",
            Self::StuckVictim
            | Self::LockContended
            | Self::Mrelease
            | Self::MreleaseStuck
            | Self::UserspaceKill => "/dev/fuse",
            Self::MmuNotifier => "/dev/fuse and /dev/kvm",
            Self::OdpVictim | Self::OdpMrelease => {
                "/dev/fuse, rdma_rxe with on-demand paging (Linux 6.15+; Debian's generic \
                 -amd64 kernels), libibverbs with its rxe provider, and iproute2's ip and rdma"
            }
        }
    }

    fn uses_fuse(self) -> bool {
        !matches!(
            self,
            Self::QuickExit
                | Self::Storm
                | Self::ParentLimit
                | Self::ShmemVictim
                | Self::TmpfsFill
                | Self::AdjChoice
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "no memory cgroup controller: scenarios only run inside a memory cgroup with a hard \
         limit"
    )]
    NoMemoryCgroup(#[source] CgroupError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{scenario} needs {device}, which this machine lacks")]
    MissingDevice {
        scenario: &'static str,
        device: &'static str,
    },
    #[error("failed to enter a private mount namespace for the FUSE mount")]
    Namespace(#[source] std::io::Error),
    #[error("failed to mount the stalling FUSE filesystem")]
    Fuse(#[source] std::io::Error),
    #[error("failed to start the {role} helper")]
    Spawn {
        role: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the {role} helper failed: {why}")]
    HelperFailed { role: &'static str, why: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("this kernel has no process_mrelease(2) (it arrived in Linux 5.15)")]
    NoMrelease,
    #[error("process_mrelease({pid}) failed")]
    Mrelease {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{scenario} cannot make its RDMA memory region here: {why}")]
    MissingRdma { scenario: &'static str, why: String },
    #[error("interrupted; everything the scenario created was removed")]
    Interrupted,
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct InjectOptions {
    /// The cgroup's hard memory limit.
    pub limit_mib: u64,
    /// lock-contended: free the lock after this many failed reaper attempts; odp-victim:
    /// deregister the region after this many partial passes.
    pub release_after: Option<u32>,
    /// storm: how many victims.
    pub count: u32,
}

impl Default for InjectOptions {
    fn default() -> Self {
        Self {
            limit_mib: 128,
            release_after: None,
            count: 10,
        }
    }
}

/// A process the scenario started, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    pub role: &'static str,
    pub pid: u32,
    pub exit: Option<String>,
}

/// What a scenario did.
#[derive(Clone, Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub cgroup_path: PathBuf,
    pub cgroup_id: u64,
    pub cgroup_version: CgroupVersion,
    pub limit_mib: u64,
    /// The intended OOM victims.
    pub victims: Vec<ProcessReport>,
    /// Every other process it started.
    pub helpers: Vec<ProcessReport>,
    /// OOM kills counted by the cgroup.
    pub oom_kills: u64,
    /// process_mrelease: the caller's pid and the return value.
    pub mrelease: Option<(u32, i64)>,
    /// parent-limit: the victim's own cgroup (path, id), inside the limited one.
    pub victim_cgroup: Option<(PathBuf, u64)>,
    /// odp-*: the RDMA device and the ODP region (address, length in bytes).
    pub odp: Option<OdpReport>,
    /// adj-choice: the process `oom_score_adj` protected.
    pub protected: Option<ProtectedReport>,
}

/// The process adj-choice protected, and what the kernel said of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedReport {
    pub pid: u32,
    pub oom_score_adj: i32,
    /// `/proc/PID/oom_score` while it held its memory.
    pub oom_score: Option<i64>,
}

fn protected_report(pid: u32, oom_score_adj: i32, oom_score: Option<i64>) -> ProtectedReport {
    ProtectedReport {
        pid,
        oom_score_adj,
        oom_score,
    }
}

/// The ODP region an odp scenario registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OdpReport {
    pub device: String,
    pub address: u64,
    pub len: u64,
    /// Whether it was deregistered while the victim was dying (`--release-after`).
    pub released: bool,
}

impl Report {
    pub fn json(&self) -> Value {
        let processes = |list: &[ProcessReport]| -> Vec<Value> {
            list.iter()
                .map(|p| json!({"role": p.role, "pid": p.pid, "exit": p.exit}))
                .collect()
        };
        json!({
            "schema": crate::wording::SCHEMA_VERSION,
            "scenario": self.scenario,
            "cgroup": {
                "path": self.cgroup_path,
                "id": self.cgroup_id,
                "version": match self.cgroup_version { CgroupVersion::V1 => 1, CgroupVersion::V2 => 2 },
                "limit_mib": self.limit_mib,
                "oom_kills": self.oom_kills,
            },
            "victims": processes(&self.victims),
            "helpers": processes(&self.helpers),
            "mrelease": self.mrelease.map(|(caller, ret)| json!({"caller": caller, "ret": ret})),
            "victim_cgroup": self.victim_cgroup.as_ref().map(|(path, id)| json!({"path": path, "id": id})),
            "odp": self.odp.as_ref().map(|o| json!({
                "device": o.device, "address": format!("{:#x}", o.address), "len": o.len,
                "released": o.released,
            })),
            "protected": self.protected.as_ref().map(|p| json!({
                "pid": p.pid, "oom_score_adj": p.oom_score_adj, "oom_score": p.oom_score,
            })),
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "scenario {}: cgroup {} (id {}, limit {} MiB), {} OOM kills\n",
            self.scenario,
            self.cgroup_path.display(),
            self.cgroup_id,
            self.limit_mib,
            self.oom_kills
        );
        for p in self.victims.iter().chain(&self.helpers) {
            out.push_str(&format!(
                "  {:<8} pid {:<8} {}\n",
                p.role,
                p.pid,
                p.exit.as_deref().unwrap_or("running")
            ));
        }
        if let Some((caller, ret)) = self.mrelease {
            out.push_str(&format!(
                "  process_mrelease by pid {caller} returned {ret}\n"
            ));
        }
        if let Some(p) = &self.protected {
            out.push_str(&format!(
                "  protected pid {} (oom_score_adj {}, oom_score {})\n",
                p.pid,
                p.oom_score_adj,
                p.oom_score.map_or("unknown".into(), |s| s.to_string())
            ));
        }
        if let Some(o) = &self.odp {
            out.push_str(&format!(
                "  ODP region {:#x}+{} MiB on {}{}\n",
                o.address,
                o.len >> 20,
                o.device,
                if o.released { ", deregistered" } else { "" }
            ));
        }
        out
    }
}

/// What a running scenario owns; dropping it cleans up (see [`Scene::drop`]).
struct Scene {
    fuse: Option<StallMount>,
    helpers: Vec<Helper>,
    /// The soft-RoCE device of the odp scenarios: removed once the helpers are gone.
    roce: Option<SoftRoce>,
    /// tmpfs-fill's tmpfs: unmounted (its pages uncharged) before the cgroup goes.
    tmpfs: Option<shared::TmpfsMount>,
    /// A cgroup inside `cgroup` with no limit of its own (parent-limit); dropped first.
    child: Option<MemoryCgroup>,
    cgroup: MemoryCgroup,
    report: Report,
}

impl Drop for Scene {
    /// Answers the stalled reads first (stuck tasks can only die once they return), then
    /// kills and reaps the helpers; after that the fields drop in order: the FUSE mount
    /// (now unused, so it unmounts), then the cgroup (now empty, so it can be removed).
    fn drop(&mut self) {
        if let Some(fuse) = &self.fuse {
            fuse.release();
        }
        self.helpers.clear();
    }
}

impl Scene {
    fn new(scenario: Scenario, options: &InjectOptions) -> Result<Self, ScenarioError> {
        let hierarchy = MemoryHierarchy::detect().map_err(ScenarioError::NoMemoryCgroup)?;
        let cgroup = MemoryCgroup::create_in(
            &hierarchy,
            &format!("oomreap-{}", scenario.name()),
            options.limit_mib << 20,
        )?;
        let report = Report {
            scenario: scenario.name(),
            cgroup_path: cgroup.path().to_owned(),
            cgroup_id: cgroup.id()?,
            cgroup_version: cgroup.version(),
            limit_mib: options.limit_mib,
            victims: Vec::new(),
            helpers: Vec::new(),
            oom_kills: 0,
            mrelease: None,
            victim_cgroup: None,
            odp: None,
            protected: None,
        };
        Ok(Self {
            fuse: None,
            helpers: Vec::new(),
            roce: None,
            tmpfs: None,
            child: None,
            cgroup,
            report,
        })
    }

    /// Starts a helper; `in_cgroup` moves it into the scenario's cgroup before it may start.
    fn spawn(
        &mut self,
        role: &'static str,
        args: &[String],
        in_cgroup: bool,
    ) -> Result<usize, ScenarioError> {
        let helper = Helper::spawn(role, args)?;
        if in_cgroup {
            self.cgroup.add_process(helper.pid())?;
        }
        self.helpers.push(helper);
        Ok(self.helpers.len() - 1)
    }

    fn helper(&mut self, index: usize) -> &mut Helper {
        &mut self.helpers[index]
    }

    /// The stalling file: for mappings, or (`direct`) for read(2).
    fn stall_file(&self, direct: bool) -> String {
        self.fuse
            .as_ref()
            .map(|f| if direct { f.direct_file() } else { f.file() })
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    }

    /// Waits for the cgroup's OOM kill count to exceed `before`.
    fn wait_for_oom_kill(&self, before: u64) -> Result<(), ScenarioError> {
        wait_until(STEP_TIMEOUT, "the OOM kill", || {
            self.cgroup.oom_kills().is_ok_and(|n| n > before)
        })
    }

    /// Records how every helper ended (or that it still runs) and the kill count.
    fn finish(mut self, victims: &[usize]) -> Result<Report, ScenarioError> {
        self.report.oom_kills = self.cgroup.oom_kills()?;
        for (index, helper) in self.helpers.iter_mut().enumerate() {
            let exit = helper.wait(Duration::from_secs(0)).ok().map(describe);
            let entry = ProcessReport {
                role: helper.role,
                pid: helper.pid(),
                exit,
            };
            if victims.contains(&index) {
                self.report.victims.push(entry);
            } else {
                self.report.helpers.push(entry);
            }
        }
        Ok(self.report.clone())
    }
}

/// Runs `scenario`, reporting progress through `say`. Must be called while the process is
/// single-threaded (FUSE scenarios enter a private mount namespace), with `catch_signals`
/// installed so an interruption cleans up.
pub fn run(
    scenario: Scenario,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    if scenario.uses_fuse() && !std::path::Path::new("/dev/fuse").exists() {
        return Err(ScenarioError::MissingDevice {
            scenario: scenario.name(),
            device: "/dev/fuse",
        });
    }
    if scenario == Scenario::MmuNotifier && !std::path::Path::new("/dev/kvm").exists() {
        return Err(ScenarioError::MissingDevice {
            scenario: scenario.name(),
            device: "/dev/kvm (KVM_CREATE_VM gives the victim an mmu notifier)",
        });
    }
    let roce = matches!(scenario, Scenario::OdpVictim | Scenario::OdpMrelease)
        .then(|| SoftRoce::create(scenario.name()))
        .transpose()?;
    let mut scene = Scene::new(scenario, options)?;
    if let Some(roce) = roce {
        say(&format!(
            "created soft-RoCE device {} on a dummy netdev in a network namespace of its own",
            roce.device
        ));
        scene.roce = Some(roce);
    }
    say(&format!(
        "created memory cgroup {} with a {} MiB limit",
        scene.cgroup.path().display(),
        options.limit_mib
    ));
    if scenario.uses_fuse() {
        namespace::enter_private().map_err(ScenarioError::Namespace)?;
        let dir = std::env::temp_dir().join(format!("oomreap-stall-{}", std::process::id()));
        scene.fuse = Some(StallMount::mount(&dir).map_err(ScenarioError::Fuse)?);
        say(&format!(
            "mounted stalling FUSE files at {} (private mount namespace)",
            dir.display()
        ));
    }
    match scenario {
        Scenario::QuickExit => quick_exit(scene, options, say),
        Scenario::Storm => storm(scene, options, say),
        Scenario::ShmemVictim => shared::shmem_victim(scene, options, say),
        Scenario::TmpfsFill => shared::tmpfs_fill(scene, options, say),
        Scenario::AdjChoice => adj::adj_choice(scene, options, say),
        Scenario::StuckVictim => stuck(scene, options, false, say),
        Scenario::MmuNotifier => stuck(scene, options, true, say),
        Scenario::Mrelease => mrelease(scene, options, false, say),
        Scenario::MreleaseStuck => mrelease(scene, options, true, say),
        Scenario::UserspaceKill => userspace_kill(scene, options, say),
        Scenario::ParentLimit => parent_limit(scene, options, say),
        Scenario::LockContended => lock_contended(scene, options, say),
        Scenario::OdpVictim => odp_victim(scene, options, false, say),
        Scenario::OdpMrelease => odp_victim(scene, options, true, say),
    }
}

fn hog_args(mib: u64) -> Vec<String> {
    vec![
        "hog".into(),
        "--wait-for-go".into(),
        "--mib".into(),
        mib.to_string(),
    ]
}

fn quick_exit(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let victim = scene.spawn("victim", &hog_args(options.limit_mib * 2), true)?;
    say(&format!(
        "victim pid {} touches {} MiB",
        scene.helper(victim).pid(),
        options.limit_mib * 2
    ));
    scene.helper(victim).go()?;
    let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
    say(&format!("victim {}", describe(status)));
    scene.finish(&[victim])
}

/// A quick exit whose cgroup has no limit, inside the scenario's limited cgroup.
fn parent_limit(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let child = scene.cgroup.child("container")?;
    let victim = scene.spawn("victim", &hog_args(options.limit_mib * 2), false)?;
    let pid = scene.helper(victim).pid();
    child.add_process(pid)?;
    scene.report.victim_cgroup = Some((child.path().to_owned(), child.id()?));
    say(&format!(
        "victim pid {pid} in {} (no limit), inside the {} MiB limit of {}",
        child.path().display(),
        options.limit_mib,
        scene.cgroup.path().display()
    ));
    scene.child = Some(child);
    scene.helper(victim).go()?;
    let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
    say(&format!("victim {}", describe(status)));
    scene.finish(&[victim])
}

fn storm(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let mut victims = Vec::new();
    for n in 0..options.count {
        let victim = scene.spawn("victim", &hog_args(options.limit_mib * 2), true)?;
        scene.helper(victim).go()?;
        scene.helper(victim).wait(STEP_TIMEOUT)?;
        victims.push(victim);
        if (n + 1) % 50 == 0 {
            say(&format!("{} victims so far", n + 1));
        }
    }
    say(&format!("{} victims done", options.count));
    scene.finish(&victims)
}

/// Starts the stuck-victim helper as `role` (it will touch `mib` MiB once told to go) and
/// waits until its reading thread is stuck in the FUSE file.
fn spawn_stuck(
    scene: &mut Scene,
    role: &'static str,
    mib: u64,
    extra: &[&str],
) -> Result<usize, ScenarioError> {
    let mut args = vec![
        "helper".to_owned(),
        "stuck-victim".to_owned(),
        "--mib".to_owned(),
        mib.to_string(),
        "--stall".to_owned(),
        scene.stall_file(true),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let helper = scene.spawn(role, &args, true)?;
    let fuse = scene.fuse.as_ref().ok_or(ScenarioError::HelperFailed {
        role,
        why: "no FUSE mount".into(),
    })?;
    fuse.wait_for_read(STEP_TIMEOUT)
        .ok_or_else(|| ScenarioError::Timeout {
            what: format!("the {role}'s read to reach the FUSE file"),
            after: STEP_TIMEOUT,
        })?;
    Ok(helper)
}

/// Starts a victim whose reading thread is stuck in the FUSE file, then lets it hog memory.
/// Returns its helper index once the OOM killer has struck.
fn stuck_victim(
    scene: &mut Scene,
    options: &InjectOptions,
    kvm: bool,
    say: &mut dyn FnMut(&str),
) -> Result<usize, ScenarioError> {
    let victim = spawn_stuck(
        scene,
        "victim",
        options.limit_mib * 2,
        if kvm { &["--kvm"] } else { &[] },
    )?;
    let pid = scene.helper(victim).pid();
    say(&format!(
        "victim pid {pid}: one thread stuck in a FUSE read{}",
        if kvm { ", memory in a KVM memslot" } else { "" }
    ));
    let kills = scene.cgroup.oom_kills()?;
    scene.helper(victim).go()?;
    scene.wait_for_oom_kill(kills)?;
    say("OOM killer struck; the victim cannot exit until the FUSE read is answered");
    Ok(victim)
}

fn stuck(
    mut scene: Scene,
    options: &InjectOptions,
    kvm: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let victim = stuck_victim(&mut scene, options, kvm, say)?;
    wait_for_the_reaper(say)?;
    release_and_reap(&mut scene, victim, say)?;
    scene.finish(&[victim])
}

/// The oom_reaper kthread's voluntary context switches since a moment before a kill: it sleeps
/// 100 ms after each attempt that did not reap it all (`schedule_timeout_idle`), so their
/// count follows its attempts without tracing it, however late a loaded machine runs them.
/// Another OOM victim on the machine meanwhile adds sleeps of its own and ends a hold early.
struct ReaperSleeps {
    pid: u32,
    before: u64,
}

impl ReaperSleeps {
    /// Counting from now; `None` where the kthread or its switches cannot be read.
    fn start() -> Option<Self> {
        let pid = crate::kernel::reaper::find_pid()?;
        Some(Self {
            pid,
            before: voluntary_switches(pid)?,
        })
    }

    fn since(&self) -> Option<u64> {
        Some(voluntary_switches(self.pid)?.saturating_sub(self.before))
    }
}

fn voluntary_switches(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:")?
                .trim()
                .parse()
                .ok()
        })
}

/// Holds `what` until the reaper has made `k` attempts that did not reap it all: until it
/// has gone to sleep after the k-th (see [`ReaperSleeps`]), or, where its sleeps cannot be
/// read, for the time k attempts take after the kill on an unhurried machine.
fn hold_for_attempts(
    k: u32,
    sleeps: Option<&ReaperSleeps>,
    what: &str,
    say: &mut dyn FnMut(&str),
) -> Result<(), ScenarioError> {
    let Some(sleeps) = sleeps else {
        let hold = just_after_attempt(k);
        say(&format!(
            "holding {what} for {hold:?}, the time {k} reaper attempts take (the oom_reaper's \
             sleeps are unreadable here)"
        ));
        return sleep(hold);
    };
    say(&format!(
        "holding {what} until the oom_reaper has made {k} attempts"
    ));
    let longest = just_after_attempt(MAX_REAP_ATTEMPTS as u32) + STEP_TIMEOUT;
    wait_until(longest, "the oom_reaper's attempts", || {
        sleeps.since().is_some_and(|n| n >= u64::from(k))
    })
}

/// Half a retry after the reaper's attempt `k` (1-based), counted from the kill: attempt k
/// runs about 2 s + (k-1) × 100 ms after it.
fn just_after_attempt(k: u32) -> Duration {
    Duration::from_nanos(REAPER_DELAY_NS) + REAPER_RETRY * k.saturating_sub(1) + REAPER_RETRY / 2
}

/// Holds `what` until the reaper has given up on `pid`: until the kernel logs so, or where
/// its log cannot be read, for the time its ten attempts take on an unhurried machine.
fn wait_for_the_give_up(
    log: Option<&mut KernelLog>,
    pid: u32,
    what: &str,
    say: &mut dyn FnMut(&str),
) -> Result<(), ScenarioError> {
    let Some(log) = log else {
        say("the kernel log is unreadable here: a clock stands in for it");
        return wait_for_the_reaper(say);
    };
    say(&format!(
        "holding {what} until the kernel logs that the reaper gave up"
    ));
    let attempts = just_after_attempt(MAX_REAP_ATTEMPTS as u32);
    log.wait_for_give_up(pid, attempts + STEP_TIMEOUT)
}

/// The reaper's timer fires 2 s after the kill; this leaves it time for all its attempts.
fn wait_for_the_reaper(say: &mut dyn FnMut(&str)) -> Result<(), ScenarioError> {
    let reaper_window = Duration::from_nanos(REAPER_DELAY_NS)
        + REAPER_RETRY * MAX_REAP_ATTEMPTS as u32
        + Duration::from_millis(500);
    say(&format!("waiting {reaper_window:?} for the oom_reaper"));
    sleep(reaper_window)
}

/// process_mrelease on a stuck victim right after the kill; `then_stuck` keeps it stuck past
/// the reaper's timer.
fn mrelease(
    mut scene: Scene,
    options: &InjectOptions,
    then_stuck: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let victim = stuck_victim(&mut scene, options, false, say)?;
    let pid = scene.helper(victim).pid();
    mrelease_now(&mut scene, pid, say)?;
    if then_stuck {
        wait_for_the_reaper(say)?;
    }
    release_and_reap(&mut scene, victim, say)?;
    scene.finish(&[victim])
}

/// process_mrelease(2) on `pid` now, said and reported.
fn mrelease_now(
    scene: &mut Scene,
    pid: u32,
    say: &mut dyn FnMut(&str),
) -> Result<(), ScenarioError> {
    let ret = process_mrelease(pid)?;
    say(&format!(
        "process_mrelease(pid {pid}) by pid {} returned {ret}",
        std::process::id()
    ));
    scene.report.mrelease = Some((std::process::id(), ret));
    Ok(())
}

/// SIGKILL, then process_mrelease, on a process of half the limit whose reading thread is
/// stuck in the FUSE file, so it stays dying with its memory until the file is answered.
fn userspace_kill(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let target = spawn_stuck(&mut scene, "target", options.limit_mib / 2, &["--hold"])?;
    let pid = scene.helper(target).pid();
    scene.helper(target).go()?;
    let ready = scene.helper(target).read_line()?;
    if ready != "ready" {
        return Err(ScenarioError::HelperFailed {
            role: "target",
            why: format!("said {ready:?}, not ready"),
        });
    }
    say(&format!(
        "target pid {pid} holds {} MiB; one thread stuck in a FUSE read",
        options.limit_mib / 2
    ));
    // SAFETY: signalling our own child, by pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let ret = process_mrelease(pid)?;
    say(&format!(
        "SIGKILL, then process_mrelease(pid {pid}) by pid {} returned {ret}",
        std::process::id()
    ));
    scene.report.mrelease = Some((std::process::id(), ret));
    release_and_reap(&mut scene, target, say)?;
    scene.finish(&[target])
}

fn lock_contended(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let victim_mib = options.limit_mib / 2;
    let args = [
        "helper",
        "lock-victim",
        "--mib",
        &victim_mib.to_string(),
        "--stall",
        &scene.stall_file(false),
    ]
    .map(String::from)
    .to_vec();
    let victim = scene.spawn("victim", &args, true)?;
    scene.helper(victim).go()?;
    let ready = scene.helper(victim).read_line()?;
    let address = ready
        .strip_prefix("ready 0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ScenarioError::HelperFailed {
            role: "victim",
            why: format!("said {ready:?}"),
        })?;
    let victim_pid = scene.helper(victim).pid();
    // Its last steps after `ready` (the write's return, its first pause()) may fault a page
    // in, and a fault takes its mmap_lock for reading: one after the reader's would take the
    // lock's owner field from the reader (5.10's kprobe row did). Asleep in pause() it
    // touches nothing more.
    wait_until(STEP_TIMEOUT, "the victim to sleep in pause()", || {
        task_state(victim_pid) == Some('S')
    })?;
    say(&format!(
        "victim pid {victim_pid} holds {victim_mib} MiB and maps the stalling file at {address:#x}"
    ));

    let reader_args = [
        "helper",
        "jam-read",
        "--pid",
        &victim_pid.to_string(),
        "--address",
        &address.to_string(),
    ]
    .map(String::from);
    let reader = scene.spawn("reader", &reader_args, false)?;
    let fuse = scene.fuse.as_ref().ok_or(ScenarioError::HelperFailed {
        role: "reader",
        why: "no FUSE mount".into(),
    })?;
    fuse.wait_for_read(STEP_TIMEOUT)
        .ok_or_else(|| ScenarioError::Timeout {
            what: "the reader's fault to reach the FUSE file".into(),
            after: STEP_TIMEOUT,
        })?;
    let reader_pid = scene.helper(reader).pid();
    say(&format!(
        "reader pid {reader_pid} holds the victim's mmap_lock for reading, stalled in a FUSE fault"
    ));

    let writer = scene.spawn(
        "writer",
        &["helper", "jam-write", "--pid", &victim_pid.to_string()].map(String::from),
        false,
    )?;
    let writer_pid = scene.helper(writer).pid();
    wait_until(STEP_TIMEOUT, "the writer to queue on the mmap_lock", || {
        task_state(writer_pid) == Some('D')
    })?;
    say(&format!(
        "writer pid {writer_pid} queued for the mmap_lock (clear_refs): jam in place"
    ));

    // Opened before the kill, so the reaper's give-up line cannot come before we look.
    let mut kernel_log = options
        .release_after
        .is_none()
        .then(KernelLog::open_at_end)
        .flatten();
    let kills = scene.cgroup.oom_kills()?;
    let sleeps = ReaperSleeps::start();
    let pusher = scene.spawn("pusher", &hog_args(options.limit_mib * 2), true)?;
    scene.helper(pusher).go()?;
    scene.wait_for_oom_kill(kills)?;
    say("OOM killer struck the victim; its exit waits behind the queued writer");

    match options.release_after {
        None => wait_for_the_give_up(kernel_log.as_mut(), victim_pid, "the jam", say)?,
        Some(failed) => hold_for_attempts(failed, sleeps.as_ref(), "the jam", say)?,
    }
    release_and_reap(&mut scene, victim, say)?;
    for index in [reader, writer] {
        scene.helper(index).wait(STEP_TIMEOUT)?;
    }
    // The pusher has done its job once the victim's memory is gone; it is ours to stop.
    scene.helper(pusher).kill();
    scene.helper(pusher).wait(STEP_TIMEOUT)?;
    scene.finish(&[victim])
}

/// Size of the ODP region: what the reaper is refused, in its own VMA.
const ODP_MIB: u64 = 64;

/// A stuck victim with an ODP region: every reaper pass over it is refused. `mrelease` calls
/// process_mrelease at once; `--release-after N` deregisters the region after N passes.
fn odp_victim(
    mut scene: Scene,
    options: &InjectOptions,
    mrelease: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let device =
        scene
            .roce
            .as_ref()
            .map(|r| r.device.clone())
            .ok_or(ScenarioError::HelperFailed {
                role: "victim",
                why: "no soft-RoCE device".into(),
            })?;
    let release_after = options.release_after.filter(|_| !mrelease);
    let odp_mib = ODP_MIB.to_string();
    let mut extra = vec!["--odp-device", &device, "--odp-mib", &odp_mib];
    if release_after.is_some() {
        extra.push("--odp-releaser");
    }
    let victim = spawn_stuck(&mut scene, "victim", options.limit_mib * 2, &extra)?;
    let pid = scene.helper(victim).pid();
    // Opened before the kill (see lock_contended) where the reaper is to give up. With
    // process_mrelease too: its partial pass leaves the reaper its ten, whose pace a clock
    // cannot stand for (under emulation they came 170 ms apart, and the victim went free
    // before the tenth).
    let mut kernel_log = release_after
        .is_none()
        .then(KernelLog::open_at_end)
        .flatten();
    let kills = scene.cgroup.oom_kills()?;
    let sleeps = ReaperSleeps::start();
    scene.helper(victim).go()?;
    let line = scene.helper(victim).read_line()?;
    let (address, len) = line
        .strip_prefix("odp 0x")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(a, l)| Some((u64::from_str_radix(a, 16).ok()?, l.parse().ok()?)))
        .ok_or_else(|| ScenarioError::HelperFailed {
            role: "victim",
            why: format!("said {line:?}, not the ODP region"),
        })?;
    say(&format!(
        "victim pid {pid}: one thread stuck in a FUSE read, {ODP_MIB} MiB at {address:#x} \
         registered on-demand-paging on {device}"
    ));
    scene.report.odp = Some(OdpReport {
        device,
        address,
        len,
        released: false,
    });
    scene.wait_for_oom_kill(kills)?;
    say("OOM killer struck; the victim cannot exit until the FUSE read is answered");
    if mrelease {
        mrelease_now(&mut scene, pid, say)?;
    }
    match release_after {
        Some(passes) => {
            hold_for_attempts(passes, sleeps.as_ref(), "the ODP region", say)?;
            say(&format!(
                "deregistering the region after {passes} partial passes"
            ));
            scene.helper(victim).go()?;
            let said = scene.helper(victim).read_line()?;
            if said != "released" {
                return Err(ScenarioError::HelperFailed {
                    role: "releaser",
                    why: format!("said {said:?}, not released"),
                });
            }
            if let Some(odp) = &mut scene.report.odp {
                odp.released = true;
            }
            say("region deregistered: the notifier is gone; the next pass reaps");
            sleep(REAPER_RETRY * 3)?;
        }
        None => wait_for_the_give_up(kernel_log.as_mut(), pid, "the FUSE read", say)?,
    }
    release_and_reap(&mut scene, victim, say)?;
    scene.finish(&[victim])
}

/// Answers the stalled FUSE reads and waits for the victim to die.
fn release_and_reap(
    scene: &mut Scene,
    victim: usize,
    say: &mut dyn FnMut(&str),
) -> Result<(), ScenarioError> {
    if let Some(fuse) = &scene.fuse {
        fuse.release();
    }
    let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
    say(&format!(
        "released the FUSE file; victim {}",
        describe(status)
    ));
    Ok(())
}

/// process_mrelease(2) on `pid` through a pidfd; the syscall's return value (0, or -errno).
fn process_mrelease(pid: u32) -> Result<i64, ScenarioError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(ScenarioError::Mrelease {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: process_mrelease takes the pidfd and flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd as libc::c_int, 0) };
    let ret = if rc == 0 {
        0
    } else {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(pidfd as libc::c_int) };
    if ret == -i64::from(libc::ENOSYS) {
        return Err(ScenarioError::NoMrelease);
    }
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_described() {
        let mut names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Scenario::ALL.len());
        for s in Scenario::ALL {
            assert!(!s.description().is_empty() && !s.needs().is_empty());
        }
    }
}
