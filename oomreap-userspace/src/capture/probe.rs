//! Tries the attach modes that only some kernels allow (fentry, kprobes) on the reaper's core
//! function, so `doctor` can say which work here and why the others do not.
use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    programs::{FEntry, KProbe},
};

use super::{CaptureError, EBPF_OBJECT, brief, program};
use crate::display::error_chain;

/// The function both probes attach to: it reaps a victim's memory, for the oom_reaper and
/// for process_mrelease alike.
pub const REAP_FUNCTION: &str = "__oom_reap_task_mm";

/// Whether one attach mode works on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeProbe {
    /// e.g. `fentry __oom_reap_task_mm`.
    pub name: String,
    /// `Ok(())` if it loaded and attached, else why not.
    pub result: Result<(), String>,
}

/// Loads and attaches each probe program, then detaches it at once.
pub fn attach_modes(btf_path: &Path) -> Vec<ModeProbe> {
    let mut ebpf = match EbpfLoader::new().load(EBPF_OBJECT) {
        Ok(ebpf) => ebpf,
        Err(err) => {
            let reason = error_chain(&CaptureError::Load(err));
            return ["fentry", "kprobe"]
                .map(|mode| ModeProbe {
                    name: format!("{mode} {REAP_FUNCTION}"),
                    result: Err(reason.clone()),
                })
                .to_vec();
        }
    };
    vec![
        ModeProbe {
            name: format!("fentry {REAP_FUNCTION}"),
            result: fentry(&mut ebpf, btf_path).map_err(|e| brief(&error_chain(&e))),
        },
        ModeProbe {
            name: format!("kprobe {REAP_FUNCTION}"),
            result: kprobe(&mut ebpf).map_err(|e| brief(&error_chain(&e))),
        },
    ]
}

fn fentry(ebpf: &mut Ebpf, btf_path: &Path) -> Result<(), CaptureError> {
    const NAME: &str = "oom_reap_task_mm_fentry";
    let btf = aya::Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|source| {
        CaptureError::AyaBtf {
            path: btf_path.to_owned(),
            source,
        }
    })?;
    let program: &mut FEntry = program(ebpf, NAME)?;
    program
        .load(REAP_FUNCTION, &btf)
        .map_err(|source| CaptureError::ProgramLoad {
            program: NAME,
            source,
        })?;
    program.attach().map_err(|source| CaptureError::Attach {
        program: NAME,
        hook: REAP_FUNCTION,
        source,
    })?;
    Ok(())
}

fn kprobe(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    const NAME: &str = "oom_reap_task_mm_kprobe";
    let program: &mut KProbe = program(ebpf, NAME)?;
    program.load().map_err(|source| CaptureError::ProgramLoad {
        program: NAME,
        source,
    })?;
    program
        .attach(REAP_FUNCTION, 0)
        .map_err(|source| CaptureError::Attach {
            program: NAME,
            hook: REAP_FUNCTION,
            source,
        })?;
    Ok(())
}
