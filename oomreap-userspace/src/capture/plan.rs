//! Decides, per hook, how to attach on this kernel, and builds the structure layout.
//!
//! A hook uses a BTF tracepoint when the kernel's BTF has one (and the user allows it), a
//! classic tracepoint when tracefs has it, and is otherwise unavailable, with the reason kept
//! for `doctor`. Structure offsets come from BTF whenever BTF exists, whatever the attach kind.
use std::path::{Path, PathBuf};

use oomreap_common::{event::AttachKind, layout::KernelLayout};

use super::{CaptureError, FUNCTIONS, hooks::HookSpec};
use crate::{
    capture::error_chain,
    kernel::{
        attach_btf::{AttachTargets, TargetKind},
        btf::{BtfError, DEFAULT_BTF_PATH, KernelBtf, tracepoint_typedef},
        layout::{self, ClassicFormats},
        tracefs::{self, TracefsError, TracepointFormat},
    },
};

/// Which tracepoint flavour the user asked for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum AttachPreference {
    /// BTF tracepoints where the kernel has BTF, classic tracepoints otherwise.
    #[default]
    Auto,
    /// BTF tracepoints only; fail without BTF.
    Btf,
    /// Classic tracepoints only (reduced detail, needs tracefs).
    Classic,
}

/// Where oomreap looks for what it needs; tests point these elsewhere.
#[derive(Clone, Debug)]
pub struct KernelPaths {
    pub btf: PathBuf,
    pub tracefs_candidates: Vec<String>,
}

impl Default for KernelPaths {
    fn default() -> Self {
        Self {
            btf: PathBuf::from(DEFAULT_BTF_PATH),
            tracefs_candidates: tracefs::TRACEFS_CANDIDATES.map(String::from).to_vec(),
        }
    }
}

/// How one hook will be attached, or why it cannot be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookPlan {
    Attach {
        kind: AttachKind,
        /// The program to load.
        program: &'static str,
        /// Where `program` is a `bpf_loop` form: its unrolled form, tried if it is refused.
        unrolled: Option<&'static str>,
        /// A classic tracepoint the hook can fall back to if the BTF one is refused.
        classic_fallback: bool,
    },
    Unavailable(String),
}

/// The outcome of planning.
pub struct Plan {
    pub layout: KernelLayout,
    pub hooks: Vec<(HookSpec, HookPlan)>,
    /// Why BTF is not used at all, when it is not.
    pub btf_problem: Option<String>,
    /// What aya's BTF attaches look up, by id (see `kernel::attach_btf`); none without BTF.
    pub attach_targets: AttachTargets,
    /// The kernel queues a victim for the reaper on a 2 s timer (`task_struct` has
    /// `oom_reaper_timer`, since 5.18), leaving time to attach the hot hooks after the kill.
    pub reaper_delayed: bool,
    /// The kernel has the `bpf_loop` helper (5.17+): the programs with notifier walks load
    /// in their `_loop` form.
    pub bpf_loop: bool,
}

/// Plans every hook in `specs`.
pub fn plan(
    preference: AttachPreference,
    paths: &KernelPaths,
    specs: &[HookSpec],
) -> Result<Plan, CaptureError> {
    let btf: Result<KernelBtf, String> = match preference {
        AttachPreference::Classic => Err("classic tracepoints were requested".to_owned()),
        AttachPreference::Btf => Ok(open_btf(&paths.btf)?),
        AttachPreference::Auto => open_btf(&paths.btf).map_err(|err| {
            let reason = error_chain(&err);
            log::warn!("{reason}; using classic tracepoints");
            reason
        }),
    };
    let target_names = attach_target_names(specs);
    let targets: Vec<(&str, TargetKind)> = target_names
        .iter()
        .map(|(name, kind)| (name.as_str(), *kind))
        .collect();
    if let Ok(btf) = &btf {
        // One scan of the BTF for every type planning and the layout look up.
        let mut names: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
        names.push(BPF_LOOP);
        names.extend_from_slice(layout::BTF_NAMES);
        btf.prefetch(&names)?;
    }
    let candidates: Vec<&str> = paths
        .tracefs_candidates
        .iter()
        .map(String::as_str)
        .collect();
    let tracefs = tracefs::find(&candidates);
    let format = |spec: &HookSpec| -> Result<TracepointFormat, TracefsError> {
        let root = tracefs.as_ref().map_err(|_| TracefsError::NotMounted)?;
        tracefs::read_format(root, spec.category, spec.event)
    };
    let bpf_loop = match &btf {
        Ok(btf) => has_bpf_loop(btf)?,
        Err(_) => false,
    };
    let mut hooks = Vec::new();
    let mut formats = Formats::default();
    for spec in specs {
        if let Some(why) = crate::faults::missing(spec.name) {
            let reason = format!("the kernel has no tracepoint {} ({why})", spec.name);
            if spec.required {
                return Err(CaptureError::HookUnavailable {
                    hook: spec.name,
                    reason,
                });
            }
            hooks.push((*spec, HookPlan::Unavailable(reason)));
            continue;
        }
        let classic = format(spec);
        let btf_args = match &btf {
            Ok(btf) if spec.btf_program.is_some() => btf
                .tracepoint_arg_count(spec.event)
                .map_err(|err| error_chain(&err))
                .and_then(|n| n.ok_or_else(|| format!("no BTF tracepoint {}", spec.event))),
            Ok(_) => Err("syscall tracepoints have no BTF form".to_owned()),
            Err(reason) => Err(reason.clone()),
        };
        let plan = match (&btf_args, &classic) {
            (Ok(args), _) => {
                let program = spec
                    .btf_program_for(*args, bpf_loop)
                    .unwrap_or(spec.classic_program);
                let unrolled = spec.btf_program_for(*args, false);
                HookPlan::Attach {
                    kind: AttachKind::BtfTracePoint,
                    program,
                    unrolled: unrolled.filter(|&plain| plain != program),
                    classic_fallback: classic.is_ok(),
                }
            }
            (Err(_), Ok(_)) if preference != AttachPreference::Btf => HookPlan::Attach {
                kind: AttachKind::TracePoint,
                program: spec.classic_program,
                unrolled: None,
                classic_fallback: false,
            },
            (Err(btf_reason), classic_err) => {
                let classic_reason = match classic_err {
                    Ok(_) => "classic tracepoints not allowed by --attach btf".to_owned(),
                    Err(err) => error_chain(err),
                };
                HookPlan::Unavailable(format!("{btf_reason}; {classic_reason}"))
            }
        };
        if let Ok(format) = classic {
            formats.store(spec.event, format);
        }
        if spec.required
            && let HookPlan::Unavailable(reason) = &plan
        {
            return Err(required_missing(spec, reason, &btf, &tracefs));
        }
        hooks.push((*spec, plan));
    }
    let mut layout = match &btf {
        Ok(btf) => {
            let mark_victim_args = btf.tracepoint_arg_count("mark_victim")?.unwrap_or(2);
            layout::from_btf(btf, mark_victim_args)?
        }
        Err(_) => KernelLayout::UNSET,
    };
    if let Some(format) = &formats.mark_victim {
        layout.mark_victim_record = layout::mark_victim_record(format);
    }
    layout.records = layout::classic_records(&formats.classic);
    layout.reaper_pid = crate::kernel::reaper::find_pid().unwrap_or(0);
    let reaper_delayed = btf
        .as_ref()
        .is_ok_and(|btf| btf.member_offset("task_struct", "oom_reaper_timer").is_ok());
    let attach_targets = match &btf {
        Ok(btf) => AttachTargets::find(btf, &targets)?,
        Err(_) => AttachTargets::default(),
    };
    Ok(Plan {
        layout,
        hooks,
        btf_problem: btf.err(),
        attach_targets,
        reaper_delayed,
        bpf_loop,
    })
}

/// The `bpf_loop` helper's kernel function (5.17+).
const BPF_LOOP: &str = "bpf_loop";

/// The kernel has the `bpf_loop` helper: its BTF names the helper's function, as it names
/// every function the kernel has.
pub fn has_bpf_loop(btf: &KernelBtf) -> Result<bool, BtfError> {
    Ok(btf.id_of_kind(BPF_LOOP, TargetKind::Func)?.is_some())
}

/// What aya's BTF attaches look up: the typedef of each hook that has a BTF program, and
/// each function; planning prefetches the same names.
fn attach_target_names(specs: &[HookSpec]) -> Vec<(String, TargetKind)> {
    specs
        .iter()
        .filter(|spec| spec.btf_program.is_some())
        .map(|spec| (tracepoint_typedef(spec.event), TargetKind::Typedef))
        .chain(
            FUNCTIONS
                .iter()
                .map(|f| (f.function.to_owned(), TargetKind::Func)),
        )
        .collect()
}

/// Classic record formats, by what reads them.
#[derive(Default)]
struct Formats {
    mark_victim: Option<TracepointFormat>,
    classic: ClassicFormats,
}

impl Formats {
    fn store(&mut self, event: &str, format: TracepointFormat) {
        let slot = match event {
            "mark_victim" => &mut self.mark_victim,
            // The four reaper tracepoints share one `(int pid)` record.
            "wake_reaper" | "start_task_reaping" | "finish_task_reaping" | "skip_task_reaping" => {
                &mut self.classic.reaper
            }
            "mmap_lock_acquire_returned" => &mut self.classic.lock,
            "exit_mmap" => &mut self.classic.exit_mmap,
            "oom_score_adj_update" => &mut self.classic.score_adj,
            "reclaim_retry_zone" => &mut self.classic.reclaim,
            "compact_retry" => &mut self.classic.compact,
            "sys_enter_process_mrelease" => &mut self.classic.mrelease_enter,
            "sys_exit_process_mrelease" => &mut self.classic.mrelease_exit,
            _ => return,
        };
        *slot = Some(format);
    }
}

fn open_btf(path: &Path) -> Result<KernelBtf, CaptureError> {
    KernelBtf::open(path).map_err(|source| match source {
        BtfError::Missing { .. } => CaptureError::BtfMissing {
            path: path.to_owned(),
            source,
        },
        other => CaptureError::Btf(other),
    })
}

/// The error for a required hook that cannot attach: the most specific cause.
fn required_missing(
    spec: &HookSpec,
    reason: &str,
    btf: &Result<KernelBtf, String>,
    tracefs: &Result<PathBuf, TracefsError>,
) -> CaptureError {
    match (btf, tracefs) {
        (Err(_), Err(_)) => CaptureError::Tracefs(TracefsError::NotMounted),
        _ => CaptureError::HookUnavailable {
            hook: spec.name,
            reason: reason.to_owned(),
        },
    }
}
