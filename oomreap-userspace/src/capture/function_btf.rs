//! The BTF aya's fentry/fexit loaders need, built the first time it can serve: once the kernel
//! has loaded an empty program on the function about to be hooked ([`empty_program`]).
//!
//! The functions' ids sit high in the kernel's BTF, so this BTF is most of oomreap's start-up
//! memory (7 MiB for `oom_kill_process` on 6.18). A kernel that refuses fentry outright never
//! gets it built, and the tracepoints' smaller BTF is gone before it is.
use super::{
    empty_program::{self, TracingEnd},
    refusal::Cause,
};
use crate::kernel::attach_btf::{AttachTargets, TargetKind};

/// The functions' BTF for aya, once a function's empty program has loaded.
pub struct FunctionBtf<'a> {
    /// `None` where the kernel has no BTF (no fentry at all).
    targets: Option<&'a AttachTargets>,
    built: Option<aya::Btf>,
}

impl<'a> FunctionBtf<'a> {
    pub fn new(targets: Option<&'a AttachTargets>) -> Self {
        Self {
            targets,
            built: None,
        }
    }

    /// Whether the kernel's BTF, where it has one, names no such function: then no mode can
    /// hook it, and none is tried (a kprobe on a missing symbol costs a load and a refused
    /// attach).
    pub fn lacks(&self, function: &str) -> bool {
        self.targets
            .is_some_and(|targets| targets.id_of(function, TargetKind::Func).is_none())
    }

    /// The BTF for hooking `function` at `end`, or why fentry/fexit cannot be tried on it: no
    /// kernel BTF, no such function in it, or the kernel refused even an empty program there.
    pub fn for_function(
        &mut self,
        function: &'static str,
        end: TracingEnd,
    ) -> Result<&aya::Btf, Cause> {
        let targets = self.targets.ok_or(Cause::NoKernelBtf)?;
        match &mut self.built {
            Some(btf) => Ok(btf),
            unbuilt @ None => {
                let id = targets
                    .id_of(function, TargetKind::Func)
                    .ok_or(Cause::NoFunctionInBtf(function))?;
                empty_program::load_empty_tracing_program(id, end).map_err(|err| {
                    match err.raw_os_error() {
                        Some(libc::EPERM) => Cause::FentryForbidden,
                        _ => Cause::Error(format!(
                            "the kernel refused even an empty program on it: BPF_PROG_LOAD: {err}"
                        )),
                    }
                })?;
                let btf = targets.btf(TargetKind::Func).map_err(|err| {
                    Cause::Error(format!("failed to build the attach BTF: {err}"))
                })?;
                Ok(unbuilt.insert(btf))
            }
        }
    }
}
