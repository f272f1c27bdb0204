//! Synthetic work for the overhead benchmarks (`cargo xtask bench`): the kernel paths
//! oomreap's hooks sit on, exercised in a tight loop, so attached and detached runs can be
//! compared.

/// Maps 1 MiB, faults every page in, unmaps it; `iterations` times. Exercises mmap_lock
/// (every mmap/munmap takes it for writing) and page faults.
pub fn mm_churn(iterations: u64) -> std::io::Result<()> {
    const LEN: usize = 1 << 20;
    for _ in 0..iterations {
        let (base, len) = crate::inject::hog::map_anonymous(1)?;
        for offset in (0..LEN.min(len)).step_by(4096) {
            // SAFETY: inside the mapping just created; volatile so the fault really happens.
            unsafe { base.add(offset).write_volatile(1) };
        }
        // SAFETY: unmapping exactly the mapping created above.
        unsafe { libc::munmap(base.cast(), len) };
    }
    Ok(())
}

/// Starts `/bin/true` and waits for it; `iterations` times. Exercises fork, exec and exit
/// (exit_mmap fires for every exiting process).
pub fn fork_churn(iterations: u64) -> std::io::Result<()> {
    for _ in 0..iterations {
        let status = std::process::Command::new("/bin/true").status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("/bin/true failed: {status}")));
        }
    }
    Ok(())
}
