//! A process that allocates and touches memory until the OOM killer stops it.
//!
//! Used by the tests (and, later, the fault-injection scenarios) as an OOM victim that is
//! oomreap's own code, so no test depends on an outside program.
use std::io::Read as _;

/// The name the hog gives itself, so its victim line is easy to recognise.
pub const HOG_COMM: &str = "oomreap-hog";

const PAGE: usize = 4096;

/// Renames the process, optionally waits for one byte on stdin (so the parent can first move
/// it into a cgroup), then touches `mib` MiB of anonymous memory, one write per page.
/// Returns normally only if the memory fit.
pub fn run(mib: u64, wait_for_go: bool) -> std::io::Result<()> {
    set_comm(HOG_COMM);
    if wait_for_go {
        let mut go = [0u8; 1];
        std::io::stdin().read_exact(&mut go)?;
    }
    touch(mib)
}

/// Maps and touches `mib` MiB of anonymous memory, one write per page, and keeps it.
pub fn touch(mib: u64) -> std::io::Result<()> {
    let (base, len) = map_anonymous(mib)?;
    // SAFETY: the mapping just created, whole.
    unsafe { touch_mapping(base, len) };
    Ok(())
}

/// Writes once to each page of a mapping, faulting it in.
///
/// # Safety
/// `base..base + len` must be a writable mapping of this process, such as one from
/// [`map_anonymous`].
pub unsafe fn touch_mapping(base: *mut u8, len: usize) {
    for offset in (0..len).step_by(PAGE) {
        // SAFETY: `offset < len`, inside the mapping just created; volatile so the write
        // (which is the point: it faults the page in) is not optimised away.
        unsafe { base.add(offset).write_volatile(1) };
    }
}

/// A new private anonymous read-write mapping of `mib` MiB (not yet faulted in): its start
/// and length in bytes. It is never unmapped: it lives as long as the process.
pub fn map_anonymous(mib: u64) -> std::io::Result<(*mut u8, usize)> {
    let len = usize::try_from(mib << 20).map_err(std::io::Error::other)?;
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
    // result is checked against MAP_FAILED before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok((ptr.cast::<u8>(), len))
}

/// Sets this thread's `comm` (what the kernel reports as the task name).
pub fn set_comm(name: &str) {
    let mut buf = [0u8; 16];
    let len = name.len().min(15);
    buf[..len].copy_from_slice(&name.as_bytes()[..len]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `buf`.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_hog_fits_and_returns() {
        super::run(1, false).unwrap();
    }
}
