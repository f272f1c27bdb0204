//! What differs between the architectures oomreap is built for, in one place: how the kernel
//! names a syscall's entry function, and where that function finds the syscall's arguments.
//! Each is checked against the running kernel's BTF (`layout`'s and `capture`'s tests), never
//! trusted blindly: a wrong name leaves the hook out with a reason, a wrong member makes the
//! offset `ABSENT`.

/// process_mrelease(2)'s wrapper, the function its syscall entry calls (`SYSCALL_DEFINE`
/// names it after the architecture). Its one argument is the caller's saved registers.
#[cfg(target_arch = "x86_64")]
pub const PROCESS_MRELEASE_WRAPPER: &str = "__x64_sys_process_mrelease";
#[cfg(target_arch = "aarch64")]
pub const PROCESS_MRELEASE_WRAPPER: &str = "__arm64_sys_process_mrelease";

/// Its name on every architecture oomreap is built for: a recording made on one replays on
/// another.
pub const PROCESS_MRELEASE_WRAPPERS: [&str; 2] =
    ["__x64_sys_process_mrelease", "__arm64_sys_process_mrelease"];

/// The `struct pt_regs` member holding a syscall's first argument: the register the syscall
/// ABI passes it in (`rdi`; `x0`, the first of arm64's `regs[31]`).
#[cfg(target_arch = "x86_64")]
pub const SYSCALL_ARG0_REGISTER: &str = "di";
#[cfg(target_arch = "aarch64")]
pub const SYSCALL_ARG0_REGISTER: &str = "regs";

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("oomreap is built for x86_64 and aarch64 only: see src/kernel/arch.rs");
