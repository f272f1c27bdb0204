//! Kernel-function hooks: fentry/fexit where the kernel allows BPF trampolines,
//! kprobe/kretprobe where it does not, nothing (tracepoints only) where neither loads.
//!
//! Each function is tried in order of preference; a refused load or attach is undone (no
//! half-attached pair stays behind) and the next mode is tried, so a kernel that refuses one
//! mode never stops the tool. The choice and every refusal end up in the hook's note, which
//! `doctor` prints.
use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError},
};
use oomreap_common::event::AttachKind;

use super::{
    CaptureError, HookStatus, brief, empty_program::TracingEnd, function_btf::FunctionBtf, program,
};
use crate::capture::error_chain;

/// Which function attach mode the user asked for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum FunctionPreference {
    /// fentry/fexit where allowed, else kprobe/kretprobe, else none.
    #[default]
    Auto,
    /// fentry/fexit only.
    Fentry,
    /// kprobe/kretprobe only.
    Kprobe,
    /// No function hooks: tracepoints only.
    Off,
}

impl FunctionPreference {
    /// The modes to try, best first.
    fn modes(self) -> &'static [AttachKind] {
        match self {
            Self::Auto => &[AttachKind::Fentry, AttachKind::Kprobe],
            Self::Fentry => &[AttachKind::Fentry],
            Self::Kprobe => &[AttachKind::Kprobe],
            Self::Off => &[],
        }
    }
}

/// What a program of a function hook is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
}

/// A kernel function and the programs for each mode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub function: &'static str,
    fentry: &'static [(&'static str, Role)],
    kprobe: &'static [(&'static str, Role)],
    /// For functions whose programs walk notifiers, the same programs in their form for a
    /// kernel with `bpf_loop` (5.17+), whose callbacks the verifier checks in a fraction of
    /// the time (`mm::notifiers`).
    fentry_loop: Option<&'static [(&'static str, Role)]>,
    kprobe_loop: Option<&'static [(&'static str, Role)]>,
    pub provides: &'static str,
    /// Its programs filter on the reap hook's in-flight map: useless without that hook.
    pub needs_reap_hook: bool,
}

/// The functions oomreap hooks, in attach order: the notifier hook filters on the reap
/// hook's in-flight map, so it only makes sense after it.
pub const FUNCTIONS: [FunctionSpec; 3] = [
    FunctionSpec {
        function: "__oom_reap_task_mm",
        fentry: &[
            ("oom_reap_task_mm_fentry", Role::Fentry),
            ("oom_reap_task_mm_fexit", Role::Fexit),
        ],
        kprobe: &[
            ("oom_reap_task_mm_kprobe", Role::Kprobe),
            ("oom_reap_task_mm_kretprobe", Role::Kretprobe),
        ],
        fentry_loop: None,
        kprobe_loop: None,
        provides: "exact reap passes: start, duration, complete or partial, for the reaper \
                   and process_mrelease",
        needs_reap_hook: false,
    },
    FunctionSpec {
        function: "__mmu_notifier_invalidate_range_start",
        fentry: &[("invalidate_range_start_fexit", Role::Fexit)],
        kprobe: &[
            ("invalidate_range_start_kprobe", Role::Kprobe),
            ("invalidate_range_start_kretprobe", Role::Kretprobe),
        ],
        fentry_loop: Some(&[("invalidate_range_start_fexit_loop", Role::Fexit)]),
        kprobe_loop: Some(&[
            ("invalidate_range_start_kprobe", Role::Kprobe),
            ("invalidate_range_start_kretprobe_loop", Role::Kretprobe),
        ]),
        provides: "the mmu notifiers that refused a reap's invalidation",
        needs_reap_hook: true,
    },
    FunctionSpec {
        function: "oom_kill_process",
        fentry: &[("oom_kill_process_fentry", Role::Fentry)],
        kprobe: &[("oom_kill_process_kprobe", Role::Kprobe)],
        fentry_loop: None,
        kprobe_loop: None,
        provides: "the OOM killer's own record of a kill: its domain, constraint, and the \
                   victim's badness points (without it they are derived and inferred)",
        needs_reap_hook: false,
    },
];

impl FunctionSpec {
    pub(super) fn programs(
        &self,
        mode: AttachKind,
        bpf_loop: bool,
    ) -> &'static [(&'static str, Role)] {
        let (plain, looping) = match mode {
            AttachKind::Fentry => (self.fentry, self.fentry_loop),
            _ => (self.kprobe, self.kprobe_loop),
        };
        looping.filter(|_| bpf_loop).unwrap_or(plain)
    }

    /// Where its fentry-mode programs begin: at the function's entry, or only at its exit.
    fn tracing_end(&self) -> TracingEnd {
        match self.fentry.first() {
            Some((_, Role::Fexit)) => TracingEnd::Exit,
            _ => TracingEnd::Entry,
        }
    }

    /// The forms to try in `mode`, best first: the `bpf_loop` one where the kernel has the
    /// helper and this function's programs have one, then the unrolled one.
    pub(super) fn forms(&self, mode: AttachKind, bpf_loop: bool) -> &'static [bool] {
        if bpf_loop && self.programs(mode, true) != self.programs(mode, false) {
            &[true, false]
        } else {
            &[false]
        }
    }
}

/// Attaches one function in the best mode `preference` allows. `btf` gives fentry its BTF;
/// `bpf_loop` says the kernel has that helper.
pub fn attach_function(
    ebpf: &mut Ebpf,
    spec: &FunctionSpec,
    preference: FunctionPreference,
    btf: &mut FunctionBtf<'_>,
    bpf_loop: bool,
) -> HookStatus {
    let mut refusals = Vec::new();
    for &mode in preference.modes() {
        let mode_btf = match mode {
            // An injected refusal is attach_mode's to report, before any BTF.
            AttachKind::Fentry if crate::faults::refusal(mode.id(), spec.function).is_none() => {
                match btf.for_function(spec.function, spec.tracing_end()) {
                    Ok(btf) => Some(btf),
                    Err(why) => {
                        log::info!("{}: fentry refused: {why}", spec.function);
                        refusals.push(format!("fentry refused: {why}"));
                        continue;
                    }
                }
            }
            _ => None,
        };
        for &form in spec.forms(mode, bpf_loop) {
            match attach_mode(ebpf, spec, mode, mode_btf, form) {
                Ok(()) => {
                    return HookStatus {
                        name: spec.function,
                        provides: spec.provides,
                        attach: Some(mode),
                        note: (!refusals.is_empty()).then(|| refusals.join("; ")),
                        attached_when: None,
                    };
                }
                Err(why) => {
                    let what = match form {
                        true => format!("{} (bpf_loop form)", mode.id()),
                        false => mode.id().to_string(),
                    };
                    log::info!("{}: {what} refused: {why}", spec.function);
                    refusals.push(format!("{what} refused: {why}"));
                }
            }
        }
    }
    if refusals.is_empty() {
        refusals.push("function hooks turned off (--functions off)".to_owned());
    }
    HookStatus {
        name: spec.function,
        provides: spec.provides,
        attach: None,
        note: Some(refusals.join("; ")),
        attached_when: None,
    }
}

/// Loads and attaches every program of one mode, or none: on failure those already loaded
/// are unloaded again (which also detaches them).
pub fn attach_mode(
    ebpf: &mut Ebpf,
    spec: &FunctionSpec,
    mode: AttachKind,
    btf: Option<&aya::Btf>,
    bpf_loop: bool,
) -> Result<(), String> {
    if let Some(why) = crate::faults::refusal(mode.id(), spec.function) {
        return Err(why);
    }
    let programs = spec.programs(mode, bpf_loop);
    if programs.iter().any(|(name, _)| super::is_loop_form(name))
        && let Some(why) = crate::faults::refusal("bpf_loop", spec.function)
    {
        return Err(why);
    }
    for (done, &(name, role)) in programs.iter().enumerate() {
        if let Err(err) = load_and_attach(ebpf, spec.function, name, role, btf) {
            for &(loaded, role) in &programs[..done] {
                unload(ebpf, loaded, role);
            }
            unload(ebpf, name, role);
            return Err(brief(&error_chain(&err)));
        }
    }
    Ok(())
}

fn load_and_attach(
    ebpf: &mut Ebpf,
    function: &'static str,
    name: &'static str,
    role: Role,
    btf: Option<&aya::Btf>,
) -> Result<(), CaptureError> {
    let load = |source: ProgramError| CaptureError::ProgramLoad {
        program: name,
        source,
    };
    let attach = |source: ProgramError| CaptureError::Attach {
        program: name,
        hook: function,
        source,
    };
    let no_btf = || CaptureError::HookUnavailable {
        hook: function,
        reason: "fentry needs kernel BTF".into(),
    };
    match role {
        Role::Fentry => {
            let p: &mut FEntry = program(ebpf, name)?;
            p.load(function, btf.ok_or_else(no_btf)?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        Role::Fexit => {
            let p: &mut FExit = program(ebpf, name)?;
            p.load(function, btf.ok_or_else(no_btf)?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        Role::Kprobe | Role::Kretprobe => {
            let p: &mut KProbe = program(ebpf, name)?;
            p.load().map_err(load)?;
            p.attach(function, 0).map_err(attach)?;
        }
    }
    Ok(())
}

/// Unloads a program if it was loaded; its links go with it.
fn unload(ebpf: &mut Ebpf, name: &'static str, role: Role) {
    let result = match role {
        Role::Fentry => program::<FEntry>(ebpf, name).map(|p| p.unload()),
        Role::Fexit => program::<FExit>(ebpf, name).map(|p| p.unload()),
        Role::Kprobe | Role::Kretprobe => program::<KProbe>(ebpf, name).map(|p| p.unload()),
    };
    if let Ok(Err(err)) = result {
        log::debug!("unloading {name}: {err}");
    }
}
