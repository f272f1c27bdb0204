//! What the scenario's child processes do. Each runs as `oomreap helper ROLE …` (a hidden
//! subcommand), so every process a scenario creates is oomreap's own code.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::unix::fs::FileExt as _,
    path::Path,
};

use crate::inject::hog;

/// `ioctl` numbers from include/uapi/linux/kvm.h: `_IO(KVMIO, 0x01)` and
/// `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)`. `ioctl`'s request type is
/// `c_ulong` in glibc and `c_int` in musl: `Ioctl` is whichever this build links against.
const KVM_CREATE_VM: Ioctl = 0xAE01;
const KVM_SET_USER_MEMORY_REGION: Ioctl = 0x4020_AE46;

#[cfg(target_env = "musl")]
type Ioctl = libc::c_int;
#[cfg(not(target_env = "musl"))]
type Ioctl = libc::c_ulong;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
struct KvmMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// The ODP memory region a stuck victim registers before it hogs.
pub struct OdpRequest {
    /// The RDMA device.
    pub device: String,
    pub mib: u64,
    /// Fork a releaser that deregisters the region when it reads a byte on stdin.
    pub releaser: bool,
}

/// A victim that cannot exit while its memory is reaped: one thread blocks reading `stall`
/// (a stalling FUSE file), the main thread waits for the go byte, then touches `mib` MiB until
/// the OOM killer strikes. With `kvm`, the mm first gets a KVM mmu notifier, and the memory is
/// a KVM memslot. With `odp`, it first touches a region of its own and registers it as an RDMA
/// ODP memory region (an interval notifier that refuses the reaper), printing `odp ADDRESS
/// LENGTH`. With `hold`, the memory must fit: it then prints `ready` and waits to be killed
/// (by a userspace killer rather than the OOM killer).
pub fn stuck_victim(
    mib: u64,
    stall: &Path,
    kvm: bool,
    odp: Option<OdpRequest>,
    hold: bool,
) -> std::io::Result<()> {
    let _vm = kvm.then(|| kvm_vm_over(mib)).transpose()?;
    let file = File::open(stall)?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Blocks in the kernel until the scenario releases the file.
        let _ = file.read_at(&mut buf, 0);
    });
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go)?;
    if let Some(request) = odp {
        odp_region(&request)?;
    }
    hog::run(mib, false)?;
    if hold {
        println!("ready");
        std::io::stdout().flush()?;
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// Touches and registers the ODP region; with a releaser, forks it. Reports the region on
/// stdout (after the go byte, so its pages are charged to the victim's cgroup).
fn odp_region(request: &OdpRequest) -> std::io::Result<()> {
    let (base, len) = hog::map_anonymous(request.mib)?;
    // SAFETY: the mapping just created, whole.
    unsafe { hog::touch_mapping(base, len) };
    let region = super::odp::register(&request.device, base, len)?;
    println!("odp {:#x} {}", region.address, region.len);
    std::io::stdout().flush()?;
    if request.releaser {
        // SAFETY: fork has no preconditions; the child only reads, deregisters (one ioctl
        // through libibverbs, whose state it inherited) and exits.
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => releaser(region),
            _ => {}
        }
    }
    // Without a releaser the region stays registered until the victim's files close at its
    // exit (dropping `region` deregisters nothing).
    Ok(())
}

/// The victim's forked child: a process of its own (so the OOM killer, which kills the
/// victim's mm, spares it) holding the same verbs file, which can deregister the victim's
/// region while the victim is dying. A byte on stdin (shared with the victim) deregisters it
/// and prints `released`; end of file (the scenario has ended) just exits.
fn releaser(region: super::odp::OdpRegion) -> ! {
    hog::set_comm("oomreap-release");
    // Never the OOM killer's choice: it shares the region's pages copy-on-write.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into a local buffer.
    let n = unsafe { libc::read(0, byte.as_mut_ptr().cast(), 1) };
    let code = if n == 1 {
        match region.deregister() {
            Ok(()) => {
                let line = b"released\n";
                // SAFETY: writes a local buffer to stdout.
                unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
                0
            }
            Err(_) => 1,
        }
    } else {
        0
    };
    // SAFETY: ends the forked child at once, without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

/// Creates a KVM VM (which registers an mmu notifier on our mm) whose memslot 0 is `mib` MiB
/// of our anonymous memory. The returned files keep the VM alive.
fn kvm_vm_over(mib: u64) -> std::io::Result<(File, File)> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let kvm = File::options().read(true).write(true).open("/dev/kvm")?;
    // SAFETY: KVM_CREATE_VM takes an integer machine type (0) and returns a new fd or -1.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `vm` is a fresh descriptor that nothing else owns.
    let vm = unsafe { File::from_raw_fd(vm) };
    let (memory, len) = hog::map_anonymous(mib)?;
    let region = KvmMemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: len as u64,
        userspace_addr: memory as u64,
    };
    // SAFETY: the ioctl reads one `kvm_userspace_memory_region` from the pointer.
    if unsafe { libc::ioctl(vm.as_raw_fd(), KVM_SET_USER_MEMORY_REGION, &region) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((kvm, vm))
}

/// The victim of `lock-contended`: waits for the go byte (so it is in its cgroup), makes
/// itself the preferred OOM victim, maps `stall` privately, touches `mib` MiB, prints
/// `ready <address of the mapping>` and waits to be killed.
pub fn lock_victim(mib: u64, stall: &Path) -> std::io::Result<()> {
    hog::set_comm("oomreap-victim");
    // Keeps khugepaged out of this mm before it has any mapping worth collapsing: its scans
    // take the mmap_lock for reading too, and one that came between the reader's lock and
    // the writer's queueing would replace the reader's name in the lock's owner field (and,
    // with CONFIG_DETECT_HUNG_TASK_BLOCKER or CONFIG_DEBUG_RWSEMS, clear it at its unlock),
    // so the jam would no longer name its reader.
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Wait until the scenario has moved us into its cgroup.
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go)?;
    std::fs::write("/proc/self/oom_score_adj", "1000")?;
    let file = File::open(stall)?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: a private read-only mapping of an open file; checked against MAP_FAILED. It is
    // never touched here: other processes fault it in through /proc/PID/mem.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    hog::touch(mib)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {:#x}", mapping as u64)?;
    out.flush()?;
    loop {
        // SAFETY: pause has no preconditions; only a signal (the OOM kill) ends it.
        unsafe { libc::pause() };
    }
}

/// Holds `pid`'s mmap_lock for reading: reads its memory at `address` through /proc/PID/mem.
/// The kernel takes the lock, then faults in the page of a stalling FUSE mapping, and waits
/// there with the lock held until the file is released.
pub fn jam_read(pid: u32, address: u64) -> std::io::Result<()> {
    hog::set_comm("oomreap-reader");
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = [0u8; 8];
    mem.read_at(&mut buf, address).map(drop)
}

/// Queues as a writer on `pid`'s mmap_lock: clear_refs takes it for writing.
pub fn jam_write(pid: u32) -> std::io::Result<()> {
    hog::set_comm("oomreap-writer");
    let mut clear_refs = File::options()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))?;
    clear_refs.write_all(b"1")
}
