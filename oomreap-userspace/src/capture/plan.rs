//! Decides, per hook, how to attach on this kernel, and builds the structure layout.
//!
//! A hook uses a BTF tracepoint when the kernel's BTF has one (and the user allows it), a
//! classic tracepoint when tracefs has it, and is otherwise unavailable, with the reason kept
//! for `doctor`. Structure offsets come from BTF whenever BTF exists, whatever the attach kind.
use std::path::{Path, PathBuf};

use oomreap_common::{event::AttachKind, layout::KernelLayout};

use super::{
    CaptureError,
    hooks::{HOOKS, Hook, MARK_VICTIM, Target, Tracepoint},
    refusal::Refusal,
};
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

impl KernelPaths {
    /// The first mounted tracefs among the candidates.
    pub fn tracefs(&self) -> Result<PathBuf, TracefsError> {
        let candidates: Vec<&str> = self.tracefs_candidates.iter().map(String::as_str).collect();
        tracefs::find(&candidates)
    }
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
    Unavailable(Vec<Refusal>),
    /// Not attached: on this kernel what it tells comes from elsewhere, for this reason.
    NotNeeded(&'static str),
}

/// A tracepoint hook, as planning and attaching read it.
pub type TracepointHook = (&'static Hook, &'static Tracepoint);

/// The outcome of planning.
pub struct Plan {
    pub layout: KernelLayout,
    /// Every tracepoint hook, in attach order, and how it will be attached.
    pub hooks: Vec<(TracepointHook, HookPlan)>,
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

/// The tracepoint hooks of [`HOOKS`], in attach order.
pub fn tracepoint_hooks() -> impl Iterator<Item = TracepointHook> {
    HOOKS
        .iter()
        .filter_map(|hook| Some((hook, hook.tracepoint()?)))
}

/// Plans every tracepoint hook and the structure layout.
pub fn plan(preference: AttachPreference, paths: &KernelPaths) -> Result<Plan, CaptureError> {
    let btf: Result<KernelBtf, String> = match preference {
        AttachPreference::Classic => Err("classic tracepoints were requested".to_owned()),
        AttachPreference::Btf => Ok(open_btf(&paths.btf)?),
        AttachPreference::Auto => open_btf(&paths.btf).map_err(|err| {
            let reason = error_chain(&err);
            log::warn!("{reason}; using classic tracepoints");
            reason
        }),
    };
    let target_names = attach_target_names();
    let targets: Vec<(&str, TargetKind)> = target_names
        .iter()
        .map(|(name, kind)| (name.as_str(), *kind))
        .collect();
    if let Ok(btf) = &btf {
        // One scan of the BTF for every type planning and the layout look up.
        let mut names: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
        names.extend_from_slice(&[BPF_LOOP, BPF_SNPRINTF]);
        names.extend_from_slice(layout::BTF_NAMES);
        btf.prefetch(&names)?;
    }
    let tracefs = paths.tracefs();
    let format = |tracepoint: &Tracepoint| -> Result<TracepointFormat, TracefsError> {
        let root = tracefs.as_ref().map_err(|_| TracefsError::NotMounted)?;
        tracefs::read_format(root, tracepoint.category, tracepoint.event)
    };
    let bpf_loop = match &btf {
        Ok(btf) => has_bpf_loop(btf)?,
        Err(_) => false,
    };
    let mut hooks = Vec::new();
    let mut formats = ClassicFormats::default();
    for (hook, tracepoint) in tracepoint_hooks() {
        if let Some(why) = crate::faults::missing(hook.name) {
            let refusal = Refusal::NoTracepoint {
                hook: hook.name,
                why,
            };
            if hook.required {
                return Err(CaptureError::HookUnavailable {
                    hook: hook.name,
                    reason: refusal.to_string(),
                });
            }
            hooks.push(((hook, tracepoint), HookPlan::Unavailable(vec![refusal])));
            continue;
        }
        let classic = format(tracepoint);
        let btf_args = match (&btf, tracepoint.btf) {
            (Ok(btf), Some(programs)) => btf
                .tracepoint_arg_count(tracepoint.event)
                .map_err(|err| Refusal::NoBtf(error_chain(&err)))
                .and_then(|n| n.ok_or(Refusal::NoBtfTracepoint(tracepoint.event)))
                .map(|args| (programs, args)),
            (Ok(_), None) => Err(Refusal::NoBtfForm),
            (Err(reason), _) => Err(Refusal::NoBtf(reason.clone())),
        };
        let plan = match (btf_args, &classic) {
            (Ok((programs, args)), _) => {
                let program = programs.pick(args, bpf_loop);
                let unrolled = programs.pick(args, false);
                HookPlan::Attach {
                    kind: AttachKind::BtfTracePoint,
                    program,
                    unrolled: (unrolled != program).then_some(unrolled),
                    classic_fallback: classic.is_ok(),
                }
            }
            (Err(_), Ok(_)) if preference != AttachPreference::Btf => HookPlan::Attach {
                kind: AttachKind::TracePoint,
                program: tracepoint.classic,
                unrolled: None,
                classic_fallback: false,
            },
            (Err(btf_refusal), classic_err) => {
                let classic_refusal = match classic_err {
                    Ok(_) => Refusal::ClassicNotAllowed,
                    Err(err) => Refusal::NoClassic(error_chain(err)),
                };
                HookPlan::Unavailable(vec![btf_refusal, classic_refusal])
            }
        };
        if let Ok(format) = classic {
            formats.store(tracepoint.record, format);
        }
        if hook.required
            && let HookPlan::Unavailable(refusals) = &plan
        {
            return Err(required_missing(hook, refusals, &btf, &tracefs));
        }
        hooks.push(((hook, tracepoint), plan));
    }
    let mut layout = match &btf {
        Ok(btf) => {
            let event = MARK_VICTIM.tracepoint().map_or("mark_victim", |t| t.event);
            let mark_victim_args = btf.tracepoint_arg_count(event)?.unwrap_or(2);
            layout::from_btf(btf, mark_victim_args)?
        }
        Err(_) => KernelLayout::UNSET,
    };
    if let Some(format) = &formats.mark_victim {
        layout.mark_victim_record = layout::mark_victim_record(format);
    }
    layout.records = layout::classic_records(&formats);
    layout.reaper_pid = crate::kernel::reaper::find_pid().unwrap_or(0);
    layout.bpf_snprintf = match &btf {
        Ok(btf) => u32::from(btf.id_of_kind(BPF_SNPRINTF, TargetKind::Func)?.is_some()),
        Err(_) => 0,
    };
    for ((hook, _), plan) in &mut hooks {
        if let Some(rule) = hook.not_needed
            && (rule.when)(&layout)
        {
            *plan = HookPlan::NotNeeded(rule.why);
        }
    }
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

/// The `bpf_snprintf` helper's kernel function (5.13+): the kill's program names the
/// trigger's stack frames with it.
const BPF_SNPRINTF: &str = "bpf_snprintf";

/// The kernel has the `bpf_loop` helper: its BTF names the helper's function, as it names
/// every function the kernel has.
pub fn has_bpf_loop(btf: &KernelBtf) -> Result<bool, BtfError> {
    Ok(btf.id_of_kind(BPF_LOOP, TargetKind::Func)?.is_some())
}

/// What aya's BTF attaches look up: the typedef of each hook that has a BTF program, and
/// each function; planning prefetches the same names.
fn attach_target_names() -> Vec<(String, TargetKind)> {
    HOOKS
        .iter()
        .filter_map(|hook| match &hook.target {
            Target::Tracepoint(t) => t
                .btf
                .map(|_| (tracepoint_typedef(t.event), TargetKind::Typedef)),
            Target::Function(f) => Some((f.function.to_owned(), TargetKind::Func)),
        })
        .collect()
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
    hook: &Hook,
    refusals: &[Refusal],
    btf: &Result<KernelBtf, String>,
    tracefs: &Result<PathBuf, TracefsError>,
) -> CaptureError {
    match (btf, tracefs) {
        (Err(_), Err(_)) => CaptureError::Tracefs(TracefsError::NotMounted),
        _ => CaptureError::HookUnavailable {
            hook: hook.name,
            reason: super::refusal::note(refusals).unwrap_or_default(),
        },
    }
}
