//! A private mount namespace for the scenario's FUSE mount.
//!
//! The mount then exists only for oomreap and its children, and vanishes with them however
//! they end, SIGKILL included: nothing can be left mounted on the host.

/// Moves this process into a new mount namespace whose mounts do not propagate back. Must run
/// while the process has one thread (unshare(CLONE_NEWNS) fails otherwise).
pub fn enter_private() -> std::io::Result<()> {
    // SAFETY: unshare has no memory-safety preconditions.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: all pointers are NUL-terminated literals or null, as mount(2) allows for a
    // propagation change.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
