//! Loads the planned BTF tracepoint programs on all CPUs at once, before they attach one by
//! one in plan order.
//!
//! The kernel's verifier is most of oomreap's start-up, and it checks each program on the
//! calling thread: `mark_victim_btf` alone takes as long as all the others together. Loads
//! from several threads run side by side (for a caller with CAP_SYS_ADMIN; the kernel
//! serialises the others, which then lose nothing). A program that fails here is simply left
//! unloaded: attaching loads it again and reports the error, and falls back as planned.
use std::{num::NonZeroUsize, sync::Mutex};

use aya::{Ebpf, programs::BtfTracePoint};

/// Loads each of `programs` (program name, tracepoint event; the slowest to verify first)
/// with `btf`, on up to one thread per CPU.
pub fn load_in_parallel(
    ebpf: &mut Ebpf,
    programs: &[(&'static str, &'static str)],
    btf: &aya::Btf,
) {
    let mut jobs: Vec<(usize, &'static str, &mut BtfTracePoint)> = ebpf
        .programs_mut()
        .filter_map(|(name, program)| {
            let order = programs.iter().position(|(wanted, _)| *wanted == name)?;
            let program: &mut BtfTracePoint = program.try_into().ok()?;
            Some((order, programs[order].1, program))
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
                    let Some((_, event, program)) = next else {
                        return;
                    };
                    if let Err(err) = program.load(event, btf) {
                        log::debug!("preloading for {event}: {err}");
                    }
                }
            });
        }
    });
}
