//! Loads the planned tracepoint programs on all CPUs at once, before they attach one by one
//! in plan order.
//!
//! The kernel's verifier is most of oomreap's start-up, and it checks each program on the
//! calling thread: `mark_victim_btf` alone takes as long as all the others together. Loads
//! from several threads run side by side (for a caller with CAP_SYS_ADMIN; the kernel
//! serialises the others, which then lose nothing). A program that fails here is simply left
//! unloaded: attaching loads it again and reports the error, and falls back as planned.
use std::{num::NonZeroUsize, sync::Mutex};

use aya::{Ebpf, programs::Program};

/// A program to load ahead of attaching it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Preload {
    pub program: &'static str,
    /// The tracepoint event a BTF tracepoint program is loaded for; `None` for a classic
    /// tracepoint program, which is loaded for none.
    pub btf_event: Option<&'static str>,
}

/// Loads each of `programs` (the slowest to verify first), the BTF ones with `btf`, on up
/// to one thread per CPU.
pub fn load_in_parallel(ebpf: &mut Ebpf, programs: &[Preload], btf: Option<&aya::Btf>) {
    let mut jobs: Vec<(usize, Preload, &mut Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, program)| {
            let order = programs.iter().position(|p| p.program == name)?;
            Some((order, programs[order], program))
        })
        .collect();
    jobs.sort_by_key(|job| job.0);
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(jobs.len());
    if threads < 2 {
        return;
    }
    let queue = Mutex::new(jobs.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((_, preload, program)) = next else {
                        return;
                    };
                    if let Err(err) = load(preload, program, btf) {
                        log::debug!("preloading {}: {err}", preload.program);
                    }
                }
            });
        }
    });
}

fn load(
    preload: Preload,
    program: &mut Program,
    btf: Option<&aya::Btf>,
) -> Result<(), aya::programs::ProgramError> {
    match (preload.btf_event, btf, program) {
        (Some(event), Some(btf), Program::BtfTracePoint(program)) => program.load(event, btf),
        (None, _, Program::TracePoint(program)) => program.load(),
        _ => Ok(()),
    }
}
