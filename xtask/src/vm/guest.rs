//! What a guest's architecture changes in the matrix: the qemu that boots it, its console, the
//! busybox and binaries its initramfs holds, and whether soft-RoCE can run in it.
use crate::dist::{self, Arch};

/// One guest architecture.
#[derive(Debug, PartialEq, Eq)]
pub struct Guest {
    /// Its binaries' architecture, as dist builds them.
    pub arch: Arch,
    /// The qemu system emulator, and the Debian package that brings it.
    pub qemu: (&'static str, &'static str),
    /// qemu's machine and CPU (TCG, one vCPU).
    pub machine: &'static [&'static str],
    /// The kernel's command line.
    pub append: &'static str,
    /// Strips debug sections from its binaries (the host's objcopy reads its own ELF
    /// machine only), and the package that brings it.
    pub objcopy: (&'static str, &'static str),
}

/// x86_64, the host's own architecture.
pub const X86_64: Guest = Guest {
    arch: dist::AMD64,
    qemu: ("qemu-system-x86_64", "qemu-system-x86"),
    machine: &["-accel", "tcg", "-cpu", "max", "-smp", "1"],
    // no_timer_check: the kernel's early check that the PIT's interrupt reaches the IO-APIC
    // measures with a busy loop; a TCG guest starved by the host's build fails it and panics
    // ("IO-APIC + timer doesn't work!", seen booting 7.3-rt). Virtual machines' kernels
    // commonly boot without it.
    append: "console=ttyS0 panic=-1 oops=panic quiet no_timer_check",
    objcopy: ("objcopy", "binutils"),
};

/// aarch64 on qemu's `virt` board. `virtualization=on` gives the guest EL2, so its KVM
/// starts and the KVM scenario has an mmu notifier to walk (the soft-RoCE ones cannot run
/// here). `pauth-impdef=on`: TCG emulates pointer authentication with QEMU's own cheap
/// algorithm instead of the architected one, which halves a boot.
pub const AARCH64: Guest = Guest {
    arch: dist::ARM64,
    qemu: ("qemu-system-aarch64", "qemu-system-arm"),
    machine: &[
        "-machine",
        "virt,virtualization=on",
        "-accel",
        "tcg",
        "-cpu",
        "max,pauth-impdef=on",
        "-smp",
        "1",
    ],
    append: "console=ttyAMA0 panic=-1 oops=panic quiet",
    objcopy: ("aarch64-linux-gnu-objcopy", "binutils-aarch64-linux-gnu"),
};

impl Guest {
    /// The name of its architecture, as Debian and dist name it: `amd64`, `arm64`.
    pub fn name(&self) -> &'static str {
        self.arch.name
    }

    /// Whether it is the host's architecture: then its test binaries are the host's own
    /// build, dynamically linked (the guest gets their libraries), and the host's
    /// busybox-static and soft-RoCE userspace run in it. Another architecture's are
    /// cross-built, static (musl), with busybox-static from Debian's archive for it.
    pub fn is_host(&self) -> bool {
        Arch::host().is_ok_and(|host| host == self.arch)
    }
}
