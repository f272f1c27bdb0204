//! Kernel-function hooks: fentry/fexit where the kernel allows BPF trampolines,
//! kprobe/kretprobe where it does not, nothing (tracepoints only) where neither loads.
//!
//! Each function is tried in order of preference; a refused load or attach is undone (no
//! half-attached pair stays behind) and the next mode is tried, so a kernel that refuses one
//! mode never stops the tool. The choice and every refusal end up in the hook's note, which
//! `doctor` prints.
use std::{os::fd::AsFd, path::Path};

use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError},
};
use oomreap_common::event::AttachKind;

use super::{
    CaptureError, HookStatus,
    empty_program::TracingEnd,
    function_btf::FunctionBtf,
    hooks::{Function, Hook, Role},
    program,
    refusal::{self, Cause, Refusal},
    return_probe::ReturnProbes,
};

/// The kprobe PMU's type, which aya attaches kprobes through (on 4.17+): absent where the
/// kernel was built without kprobes.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

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

/// Attaches one function hook in the best mode `preference` allows. `btf` gives fentry its
/// BTF; `bpf_loop` says the kernel has that helper; `returns` makes its return probes.
pub fn attach_function(
    ebpf: &mut Ebpf,
    returns: &mut ReturnProbes,
    hook: &Hook,
    function: &Function,
    preference: FunctionPreference,
    btf: &mut FunctionBtf<'_>,
    bpf_loop: bool,
) -> HookStatus {
    let mut refusals = Vec::new();
    let mut modes = preference.modes();
    if let Some(&first) = modes.first()
        && btf.lacks(function.function)
    {
        // No mode can hook it: refused once, and no mode tried.
        refusals.push(Refusal::Refused {
            mode: first,
            program: None,
            cause: Cause::NoFunctionInBtf(function.function),
        });
        modes = &[];
    }
    for &mode in modes {
        let mode_btf = match mode {
            // An injected refusal is attach_mode's to report, before any BTF.
            AttachKind::Fentry
                if crate::faults::refusal(mode.id(), function.function).is_none() =>
            {
                let end = match function.traced_from_entry() {
                    true => TracingEnd::Entry,
                    false => TracingEnd::Exit,
                };
                match btf.for_function(function.function, end) {
                    Ok(btf) => Some(btf),
                    Err(cause) => {
                        let refusal = Refusal::Refused {
                            mode,
                            program: None,
                            cause,
                        };
                        log::info!("{}: {refusal}", function.function);
                        refusals.push(refusal);
                        continue;
                    }
                }
            }
            _ => None,
        };
        for &form in function.forms(mode, bpf_loop) {
            match attach_mode(ebpf, returns, function, mode, mode_btf, form) {
                Ok(()) => {
                    refusals.extend(defaulted_returns(returns, function, mode, form));
                    return HookStatus {
                        name: hook.name,
                        provides: hook.provides,
                        attach: Some(mode),
                        note: refusal::note(&refusals),
                        attached_when: None,
                        not_needed: None,
                    };
                }
                Err(refused) => {
                    log::info!("{}: {refused}", function.function);
                    // No form of a mode the kernel lacks can attach.
                    let mode_absent = matches!(
                        &refused,
                        Refusal::Refused {
                            cause: Cause::NoKprobes,
                            ..
                        }
                    );
                    refusals.push(refused);
                    if mode_absent {
                        break;
                    }
                }
            }
        }
    }
    if refusals.is_empty() {
        refusals.push(Refusal::FunctionsOff);
    }
    HookStatus {
        name: hook.name,
        provides: hook.provides,
        attach: None,
        note: refusal::note(&refusals),
        attached_when: None,
        not_needed: None,
    }
}

/// Loads and attaches every program of one mode (in its `bpf_loop` form or not), or none: on
/// failure those already loaded are unloaded again (which also detaches them).
pub fn attach_mode(
    ebpf: &mut Ebpf,
    returns: &mut ReturnProbes,
    function: &Function,
    mode: AttachKind,
    btf: Option<&aya::Btf>,
    bpf_loop: bool,
) -> Result<(), Refusal> {
    let programs = function.programs(mode, bpf_loop);
    // The program that makes this the `bpf_loop` form: one the unrolled form lacks.
    let unrolled = function.programs(mode, false);
    let loop_program = programs
        .iter()
        .map(|(name, _)| *name)
        .find(|name| !unrolled.iter().any(|(plain, _)| plain == name));
    let refused = |cause| Refusal::Refused {
        mode,
        program: loop_program,
        cause,
    };
    if let Some(why) = crate::faults::refusal(mode.id(), function.function) {
        return Err(refused(Cause::Error(why)));
    }
    if mode == AttachKind::Fentry && btf.is_none() {
        return Err(refused(Cause::NoKernelBtf));
    }
    if mode == AttachKind::Kprobe && !Path::new(KPROBE_PMU).exists() {
        // Told before any load: the verifier would spend milliseconds of start-up on
        // programs that cannot attach.
        return Err(Refusal::Refused {
            mode,
            program: None,
            cause: Cause::NoKprobes,
        });
    }
    if loop_program.is_some()
        && let Some(why) = crate::faults::refusal("bpf_loop", function.function)
    {
        return Err(refused(Cause::Error(why)));
    }
    for (done, &(name, role)) in programs.iter().enumerate() {
        if let Err(err) = load_and_attach(ebpf, returns, function.function, name, role, btf) {
            for &(loaded, role) in &programs[..done] {
                unload(ebpf, returns, loaded, role);
            }
            unload(ebpf, returns, name, role);
            return Err(refused(Cause::of(&err)));
        }
    }
    Ok(())
}

/// Why the return probes of `function`'s programs in `mode` (and `bpf_loop` form) have the
/// kernel's default count of instances, if they do.
fn defaulted_returns(
    returns: &ReturnProbes,
    function: &Function,
    mode: AttachKind,
    bpf_loop: bool,
) -> Option<Refusal> {
    function
        .programs(mode, bpf_loop)
        .iter()
        .find_map(|(name, _)| returns.defaulted_because(name))
        .map(|why| Refusal::DefaultReturnInstances(why.to_owned()))
}

fn load_and_attach(
    ebpf: &mut Ebpf,
    returns: &mut ReturnProbes,
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
        reason: Cause::NoKernelBtf.to_string(),
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
        Role::Kprobe => {
            let p: &mut KProbe = program(ebpf, name)?;
            p.load().map_err(load)?;
            p.attach(function, 0).map_err(attach)?;
        }
        Role::Kretprobe => {
            let p: &mut KProbe = program(ebpf, name)?;
            p.load().map_err(load)?;
            let made = match p.fd() {
                Ok(fd) => returns.attach(name, fd.as_fd(), function),
                Err(err) => Err(err.to_string()),
            };
            if let Err(why) = made {
                log::info!("{name}: the kernel's default return probe instances: {why}");
                p.attach(function, 0).map_err(attach)?;
                returns.defaulted(name, why);
            }
        }
    }
    Ok(())
}

/// Unloads a program if it was loaded; its links and return probe go with it.
fn unload(ebpf: &mut Ebpf, returns: &mut ReturnProbes, name: &'static str, role: Role) {
    returns.detach(name);
    let result = match role {
        Role::Fentry => program::<FEntry>(ebpf, name).map(|p| p.unload()),
        Role::Fexit => program::<FExit>(ebpf, name).map(|p| p.unload()),
        Role::Kprobe | Role::Kretprobe => program::<KProbe>(ebpf, name).map(|p| p.unload()),
    };
    if let Ok(Err(err)) = result {
        log::debug!("unloading {name}: {err}");
    }
}
