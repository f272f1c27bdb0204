//! Why a hook, or one way of attaching it, is not used: decided as a typed value where it
//! happens, worded here alone. A hook's note in `doctor`, recordings and warnings is its
//! refusals, worded and joined with "; ".
use std::fmt;

use aya::programs::{ProgramError, kprobe::KProbeError};
use oomreap_common::event::AttachKind;

use super::{CaptureError, error::error_chain};

/// One reason a hook, or a way of attaching it, is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel has no such tracepoint (or a fault switch says so, in test builds).
    NoTracepoint { hook: &'static str, why: String },
    /// Kernel BTF cannot be used at all: missing, unreadable, or not wanted.
    NoBtf(String),
    /// The kernel's BTF has no typedef for this tracepoint.
    NoBtfTracepoint(&'static str),
    /// Syscall tracepoints have no BTF form.
    NoBtfForm,
    /// Classic tracepoints were ruled out by `--attach btf`.
    ClassicNotAllowed,
    /// The classic tracepoint cannot be used: tracefs is missing, or has no format for it.
    NoClassic(String),
    /// `program` was refused in `mode`; `fell_back` when another program was used instead.
    Refused {
        mode: AttachKind,
        /// The program refused, when naming it tells more than the mode (a `_loop` form).
        program: Option<&'static str>,
        cause: Cause,
    },
    /// It filters on another hook's state, and that hook is not attached.
    Needs(&'static str),
    /// Function hooks were turned off (`--functions off`).
    FunctionsOff,
    /// The capture did not start, so nothing was tried.
    NotChecked(String),
    /// Attached, but its return probes have the kernel's default count of instances, as
    /// tracefs could not make them with more (why).
    DefaultReturnInstances(String),
}

/// Why the kernel refused a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The kernel was built without kprobes (no kprobe PMU in sysfs).
    NoKprobes,
    /// The kernel refused even an empty fentry/fexit program with EPERM.
    FentryForbidden,
    /// fentry/fexit need the kernel's BTF, and there is none.
    NoKernelBtf,
    /// The kernel's BTF has no such function.
    NoFunctionInBtf(&'static str),
    /// The error, as the kernel or aya gave it (a verifier log cut to its verdict).
    Error(String),
}

impl Refusal {
    /// A program of `mode` refused with `err`.
    pub fn refused(mode: AttachKind, program: Option<&'static str>, err: &CaptureError) -> Self {
        Self::Refused {
            mode,
            program,
            cause: Cause::of(err),
        }
    }
}

impl Cause {
    /// The cause of `err`, recognised where a typed error tells it.
    pub fn of(err: &CaptureError) -> Self {
        if let CaptureError::Attach {
            source: ProgramError::KProbeError(KProbeError::FileError { filename, io_error }),
            ..
        } = err
            && io_error.kind() == std::io::ErrorKind::NotFound
            && filename == std::path::Path::new(super::functions::KPROBE_PMU)
        {
            return Self::NoKprobes;
        }
        Self::Error(super::brief(&error_chain(err)))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTracepoint { hook, why } => {
                write!(f, "the kernel has no tracepoint {hook} ({why})")
            }
            Self::NoBtf(why) => f.write_str(why),
            Self::NoBtfTracepoint(event) => write!(f, "no BTF tracepoint {event}"),
            Self::NoBtfForm => f.write_str("syscall tracepoints have no BTF form"),
            Self::ClassicNotAllowed => {
                f.write_str("classic tracepoints not allowed by --attach btf")
            }
            Self::NoClassic(why) => f.write_str(why),
            Self::Refused {
                mode,
                program,
                cause,
            } => match (mode, program) {
                (AttachKind::BtfTracePoint, Some(program)) => {
                    write!(f, "{program} refused: {cause}")
                }
                (AttachKind::BtfTracePoint | AttachKind::TracePoint, None) => write!(f, "{cause}"),
                (mode, Some(_)) => write!(f, "{} (bpf_loop form) refused: {cause}", mode.id()),
                (mode, None) => write!(f, "{} refused: {cause}", mode.id()),
            },
            Self::Needs(hook) => write!(f, "needs {hook} hooked"),
            Self::FunctionsOff => f.write_str("function hooks turned off (--functions off)"),
            Self::NotChecked(why) => write!(f, "not checked: {why}"),
            Self::DefaultReturnInstances(why) => write!(
                f,
                "return probes have the kernel's default instances (before 6.2, one per CPU \
                 on a kernel without CONFIG_PREEMPTION), and a call beyond them goes unseen: \
                 {} could not be made in tracefs ({why})",
                super::return_probe::INSTANCES
            ),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKprobes => f.write_str(
                "this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices)",
            ),
            Self::FentryForbidden => f.write_str(
                "this kernel does not allow fentry/fexit programs (it refused even an empty one \
                 with EPERM)",
            ),
            Self::NoKernelBtf => f.write_str("fentry needs kernel BTF"),
            Self::NoFunctionInBtf(function) => {
                write!(f, "the kernel's BTF has no function {function:?}")
            }
            Self::Error(text) => f.write_str(text),
        }
    }
}

/// A hook's refusals as its note: worded, joined with "; "; `None` for none.
pub fn note(refusals: &[Refusal]) -> Option<String> {
    (!refusals.is_empty()).then(|| {
        refusals
            .iter()
            .map(Refusal::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_kprobe_pmu_says_the_kernel_has_no_kprobes() {
        let err = CaptureError::Attach {
            program: "oom_kill_process_kprobe",
            hook: "oom_kill_process",
            source: ProgramError::KProbeError(KProbeError::FileError {
                filename: super::super::functions::KPROBE_PMU.into(),
                io_error: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        };
        let refusal = Refusal::refused(AttachKind::Kprobe, None, &err);
        assert_eq!(
            refusal.to_string(),
            "kprobe refused: this kernel has no kprobes (no kprobe PMU in \
             /sys/bus/event_source/devices)"
        );
    }

    #[test]
    fn each_refusal_reads_as_before() {
        let cause = || Cause::Error("no".into());
        for (refusal, text) in [
            (
                Refusal::Refused {
                    mode: AttachKind::BtfTracePoint,
                    program: Some("mark_victim_btf_loop"),
                    cause: cause(),
                },
                "mark_victim_btf_loop refused: no",
            ),
            (
                Refusal::Refused {
                    mode: AttachKind::Fentry,
                    program: Some("invalidate_range_start_fexit_loop"),
                    cause: cause(),
                },
                "fentry (bpf_loop form) refused: no",
            ),
            (
                Refusal::Refused {
                    mode: AttachKind::Fentry,
                    program: None,
                    cause: Cause::FentryForbidden,
                },
                "fentry refused: this kernel does not allow fentry/fexit programs (it refused even \
                 an empty one with EPERM)",
            ),
            (
                Refusal::Needs("__oom_reap_task_mm"),
                "needs __oom_reap_task_mm hooked",
            ),
        ] {
            assert_eq!(refusal.to_string(), text);
        }
        assert_eq!(note(&[]), None);
        assert_eq!(
            note(&[
                Refusal::NoBtfForm,
                Refusal::NoClassic("tracefs is not mounted".into())
            ])
            .as_deref(),
            Some("syscall tracepoints have no BTF form; tracefs is not mounted")
        );
    }
}
