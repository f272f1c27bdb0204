//! Whether the kernel loads a tracing program on a function at all: an empty fentry or fexit
//! program (`return 0`), loaded with bpf(2) and closed again.
//!
//! aya loads a tracing program only with an `aya::Btf` that holds the function at its kernel
//! id, and for the functions oomreap hooks that means some 100,000 placeholder types (7 MiB).
//! Where the kernel refuses such programs outright (a lockdown, an LSM, a sandbox: this
//! machine's EPERM), this answers in microseconds with no BTF built. What it does not check
//! (the verifier on oomreap's own program, the trampoline at attach) aya's load still meets.
use std::{io, mem::size_of, os::fd::FromRawFd as _};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

/// Which end of the function the program would run at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TracingEnd {
    Entry,
    Exit,
}

/// Loads `return 0` as an fentry (or fexit) program on the kernel function with BTF id
/// `btf_id`, and unloads it: `Ok(())` if the kernel took it, else the kernel's error.
pub fn load_empty_tracing_program(btf_id: u32, end: TracingEnd) -> io::Result<()> {
    // r0 = 0; exit: `struct bpf_insn { code, dst:4 src:4, off, imm }` as little-endian u64s.
    const MOV64_R0_0: u64 = 0xb7;
    const EXIT: u64 = 0x95;
    let insns = [MOV64_R0_0, EXIT];
    let license = c"GPL";
    // SAFETY: bpf_attr is a plain C union; all-zero is its documented "unset" state.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integers into the BPF_PROG_LOAD member of the union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
    load.expected_attach_type = match end {
        TracingEnd::Entry => bpf_attach_type::BPF_TRACE_FENTRY,
        TracingEnd::Exit => bpf_attach_type::BPF_TRACE_FEXIT,
    } as u32;
    load.insns = insns.as_ptr() as u64;
    load.insn_cnt = insns.len() as u32;
    load.license = license.as_ptr() as u64;
    load.attach_btf_id = btf_id;
    // SAFETY: attr, the instructions and the licence outlive the call; the kernel reads
    // `size_of::<bpf_attr>()` bytes and requires those it does not know to be zero.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_PROG_LOAD as libc::c_long,
            &raw const attr,
            size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; dropping it unloads the program.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}
