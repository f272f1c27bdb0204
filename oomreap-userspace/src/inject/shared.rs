//! Memory no kill frees, charged to the scenario's cgroup. shmem-victim: a holder keeps a
//! memfd region charged; each victim maps it shared, touches it, then allocates private
//! memory past the limit. tmpfs-fill: a file in a tmpfs of the scenario's own fills most of
//! the limit, and allocators are killed in turn. Either way a kill frees next to nothing of
//! what fills the domain, so it does not recover and the next allocation kills again, an OOM
//! loop, until the region or the file is let go.
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

/// Starts a victim in the cgroup (`oomreap ARGS`), lets it allocate, waits for it to be
/// OOM-killed and gone, says so (`WHO pid N DID: how it ended`), then waits
/// [`BETWEEN_KILLS`]. Returns its index.
fn kill_one(
    scene: &mut Scene,
    args: &[String],
    (who, did): (&str, &str),
    say: &mut dyn FnMut(&str),
) -> Result<usize, ScenarioError> {
    let before = scene.cgroup.oom_kills()?;
    let victim = scene.spawn("victim", args, true)?;
    scene.helper(victim).go()?;
    let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
    scene.wait_for_oom_kill(before)?;
    say(&format!(
        "{who} pid {}{did}: {}",
        scene.helper(victim).pid(),
        describe(status)
    ));
    sleep(BETWEEN_KILLS)?;
    Ok(victim)
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
        let who = format!("victim {kill}");
        let did = " mapped the region and hogged";
        victims.push(kill_one(&mut scene, &args, (&who, did), say)?);
    }
    scene.helper(holder).go()?;
    scene.helper(holder).wait(STEP_TIMEOUT)?;
    say("the holder let the region go");
    scene.finish(&victims)
}

/// A tmpfs mounted in the scenario's private mount namespace: unmounted and its directory
/// removed on drop (and gone with the namespace however oomreap ends).
pub(super) struct TmpfsMount {
    dir: std::path::PathBuf,
}

impl TmpfsMount {
    fn mount(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(std::io::Error::other)?;
        // SAFETY: NUL-terminated strings that outlive the call; no mount data.
        let rc = unsafe {
            libc::mount(
                c"oomreap-tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(dir);
            return Err(err);
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: a NUL-terminated path; a lazy unmount of our own mount.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The writer: after the go byte, writes `mib` MiB to `path` (a tmpfs file: its pages are
/// charged to this process's memory cgroup, and stay charged after it exits).
pub fn fill_file(path: &Path, mib: u64) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte)?;
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

/// tmpfs-fill: a tmpfs file fills nine tenths of the limit; [`KILLS`] allocators are killed
/// in turn, each freeing next to nothing; then the file is deleted, and one more allocator's
/// kill recovers the domain and ends the loop.
pub(super) fn tmpfs_fill(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    super::namespace::enter_private().map_err(ScenarioError::Namespace)?;
    let dir = std::env::temp_dir().join(format!("oomreap-tmpfs-{}", std::process::id()));
    let mount = TmpfsMount::mount(&dir).map_err(|err| ScenarioError::HelperFailed {
        role: "tmpfs",
        why: format!("cannot mount a tmpfs at {}: {err}", dir.display()),
    })?;
    let file = dir.join("fill");
    scene.tmpfs = Some(mount);
    let fill_mib = options.limit_mib * 9 / 10;
    let writer_args = [
        "helper".into(),
        "tmpfs-writer".into(),
        "--path".into(),
        file.display().to_string(),
        "--mib".into(),
        fill_mib.to_string(),
    ];
    let writer = scene.spawn("writer", &writer_args, true)?;
    scene.helper(writer).go()?;
    let status = scene.helper(writer).wait(STEP_TIMEOUT)?;
    if !status.success() {
        return Err(ScenarioError::HelperFailed {
            role: "writer",
            why: describe(status),
        });
    }
    say(&format!(
        "a {fill_mib} MiB tmpfs file at {} is charged to the cgroup (private mount namespace)",
        file.display()
    ));
    let mut victims = Vec::new();
    for kill in 1..=KILLS + 1 {
        if kill == KILLS + 1 {
            std::fs::remove_file(&file).map_err(|err| ScenarioError::HelperFailed {
                role: "tmpfs",
                why: format!("cannot delete {}: {err}", file.display()),
            })?;
            say("deleted the tmpfs file");
        }
        let args = super::hog_args(options.limit_mib * 2);
        let who = format!("allocator {kill}");
        victims.push(kill_one(&mut scene, &args, (&who, ""), say)?);
    }
    scene.finish(&victims)
}
