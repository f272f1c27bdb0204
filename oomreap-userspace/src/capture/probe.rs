//! Tries each function attach mode (fentry, kprobe) on its own, so `doctor` can say which
//! work on this kernel and why the others do not, whatever mode the capture chose.
use aya::EbpfLoader;
use oomreap_common::event::AttachKind;

use super::{
    CaptureError, EBPF_OBJECT, HOOKS, KernelPaths, Refusal, functions, return_probe::ReturnProbes,
};
use crate::{capture::error_chain, kernel::btf::KernelBtf};

/// Whether one attach mode works on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeProbe {
    /// e.g. `fentry __oom_reap_task_mm`.
    pub name: String,
    /// `Ok(())` if it loaded and attached, else why not.
    pub result: Result<(), String>,
}

/// Loads and attaches each function's programs in each mode, on a fresh load of the object
/// each time, and detaches them at once.
pub fn attach_modes(paths: &KernelPaths) -> Vec<ModeProbe> {
    let btf = aya::Btf::parse_file(&paths.btf, aya::Endianness::default()).ok();
    // The programs the capture would load: with `bpf_loop` where the kernel has it.
    let bpf_loop = KernelBtf::open(&paths.btf)
        .and_then(|btf| super::plan::has_bpf_loop(&btf))
        .unwrap_or(false);
    let mut probes = Vec::new();
    for function in HOOKS.iter().filter_map(|hook| hook.function()) {
        for mode in [AttachKind::Fentry, AttachKind::Kprobe] {
            let name = format!("{} {}", mode.id(), function.function);
            // As the capture does: the unrolled form if the bpf_loop one is refused.
            let mut refusals = Vec::new();
            for &form in function.forms(mode, bpf_loop) {
                let tried = match EbpfLoader::new().load(EBPF_OBJECT) {
                    Ok(mut ebpf) => {
                        let mut returns = ReturnProbes::new(paths.tracefs().ok());
                        functions::attach_mode(
                            &mut ebpf,
                            &mut returns,
                            function,
                            mode,
                            btf.as_ref(),
                            form,
                        )
                        .map_err(|refusal| match refusal {
                            // The probe's name says the mode already.
                            Refusal::Refused { cause, .. } => cause.to_string(),
                            other => other.to_string(),
                        })
                    }
                    Err(err) => Err(error_chain(&CaptureError::Load(err))),
                };
                match tried {
                    Ok(()) => {
                        refusals.clear();
                        break;
                    }
                    Err(why) => refusals.push(why),
                }
            }
            // Both forms refused for the same reason say it once.
            refusals.dedup();
            let result = match refusals.is_empty() {
                true => Ok(()),
                false => Err(refusals.join("; ")),
            };
            probes.push(ModeProbe { name, result });
        }
    }
    probes
}
