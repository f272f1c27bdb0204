//! shmem-victim: memory no kill frees. A holder keeps a memfd region charged to the
//! scenario's cgroup; each victim maps it shared, touches it, then allocates private memory
//! past the limit. Its kill and exit free the private part only: the region stays charged
//! while the holder holds it, so the domain does not recover and the next allocation kills
//! again, an OOM loop, until the holder lets go.
use std::{
    io::{Read as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    time::Duration,
};

use super::{Report, STEP_TIMEOUT, ScenarioError, Scene, describe, hog, sleep};
use crate::inject::InjectOptions;

/// Kills the scenario causes before the holder lets go.
pub const KILLS: usize = 3;

/// After each kill: long enough for a trace to judge its recovery, while the region is still
/// held, where it must wait for the outcome to settle (no exit_mmap tracepoint before 6.1).
const BETWEEN_KILLS: Duration = Duration::from_millis(3500);

/// The holder: after the go byte, creates a `mib` MiB memfd and allocates its pages (charged
/// to this process's memory cgroup), prints `ready FD`, and holds it until the next byte (or
/// end) on stdin.
pub fn hold_region(mib: u64) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte)?;
    // SAFETY: a NUL-terminated name and no flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"oomreap-shmem".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nobody else.
    let region = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = i64::try_from(mib << 20).map_err(std::io::Error::other)?;
    // SAFETY: fallocate on our own memfd, over its whole length.
    if unsafe { libc::fallocate(region.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    println!("ready {}", region.as_raw_fd());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read(&mut byte);
    drop(region);
    Ok(())
}

/// A victim: after the go byte, maps `region` (the holder's memfd, through /proc) shared and
/// touches every page, then touches `mib` MiB of its own until the OOM killer strikes.
pub fn map_region_and_hog(region: &Path, mib: u64) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(region)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    // SAFETY: a shared mapping of a file we opened read-write, no address hint; checked
    // against MAP_FAILED.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the mapping just created, whole and writable.
    unsafe { hog::touch_mapping(base.cast::<u8>(), len) };
    hog::touch(mib)
}

/// The scenario: a region of three quarters of the limit, then up to [`KILLS`] victims, one
/// after the other, then the region is let go.
pub(super) fn shmem_victim(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let region_mib = options.limit_mib * 3 / 4;
    let holder_args = [
        "helper".into(),
        "shmem-holder".into(),
        "--mib".into(),
        region_mib.to_string(),
    ];
    let holder = scene.spawn("holder", &holder_args, true)?;
    scene.helper(holder).go()?;
    let ready = scene.helper(holder).read_line()?;
    let fd = ready
        .strip_prefix("ready ")
        .ok_or_else(|| ScenarioError::HelperFailed {
            role: "holder",
            why: format!("said {ready:?}, not `ready FD`"),
        })?;
    let region = format!("/proc/{}/fd/{fd}", scene.helper(holder).pid());
    say(&format!(
        "holder pid {} keeps a {region_mib} MiB memfd charged to the cgroup",
        scene.helper(holder).pid()
    ));
    let mut victims = Vec::new();
    for kill in 1..=KILLS {
        let args = [
            "helper".into(),
            "shmem-victim".into(),
            "--region".into(),
            region.clone(),
            "--mib".into(),
            (options.limit_mib * 2).to_string(),
        ];
        let before = scene.cgroup.oom_kills()?;
        let victim = scene.spawn("victim", &args, true)?;
        scene.helper(victim).go()?;
        let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
        scene.wait_for_oom_kill(before)?;
        say(&format!(
            "victim {kill} pid {} mapped the region and hogged: {}",
            scene.helper(victim).pid(),
            describe(status)
        ));
        victims.push(victim);
        sleep(BETWEEN_KILLS)?;
    }
    scene.helper(holder).go()?;
    scene.helper(holder).wait(STEP_TIMEOUT)?;
    say("the holder let the region go");
    scene.finish(&victims)
}
