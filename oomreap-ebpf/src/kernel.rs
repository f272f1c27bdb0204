//! Reads of kernel memory at offsets user space resolved from the running kernel's BTF, and
//! of the current task.
use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
    bpf_probe_read_kernel_buf, generated,
};
use oomreap_common::{
    event::COMM_LEN,
    layout::{ABSENT, KernelLayout},
};

/// Set by user space before loading (see `oomreap_common::layout`); `UNSET` means it was not.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNSET;

/// The layout user space set, by reference: copying the whole struct would crowd the stack.
#[inline(always)]
pub fn layout() -> &'static KernelLayout {
    // SAFETY: LAYOUT is a valid static. Reading through a volatile pointer stops the compiler
    // from folding in `UNSET`: the loader rewrites .rodata before the program is verified.
    unsafe { &*core::ptr::read_volatile(&&raw const LAYOUT) }
}

/// Reads a `T` at `base + offset`, or `None` when the field is absent on this kernel, `base`
/// is NULL or the read faults.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 || offset == ABSENT {
        return None;
    }
    let src = (base + u64::from(offset)) as *const T;
    // SAFETY: bpf_probe_read_kernel checks the source address itself and fails cleanly on a
    // bad one; the destination is a local of the right size.
    unsafe { bpf_probe_read_kernel(src) }.ok()
}

/// Reads a word at `base + offset` without a branch: 0 where the read faults (the helper
/// zeroes its destination then), `base` is NULL or the field is absent. For walks the
/// verifier steps through many times: a failed [`read`]'s constant 0 is a path of its own,
/// checked apart from the successful one's to the end of the program.
#[inline(always)]
pub fn read_word(base: u64, offset: u32) -> u64 {
    read_or_zero(base, offset)
}

/// Reads a `T` (a plain integer) at `base + offset` without a branch, as [`read_word`] does.
#[inline(always)]
pub fn read_or_zero<T: Default>(base: u64, offset: u32) -> T {
    let mut value = T::default();
    if offset == ABSENT {
        // Decided when verified: the layout is in read-only data.
        return value;
    }
    let src = (base + u64::from(offset)) as *const c_void;
    // SAFETY: as in `read`: the helper checks `src` itself; `value` is a local of its size.
    unsafe {
        generated::bpf_probe_read_kernel(
            (&raw mut value).cast(),
            core::mem::size_of::<T>() as u32,
            src,
        )
    };
    value
}

/// Reads a task name (`char comm[TASK_COMM_LEN]`) at `base + offset` into `comm`.
#[inline(always)]
pub fn read_comm(base: u64, offset: u32, comm: &mut [u8; COMM_LEN]) -> bool {
    if base == 0 || offset == ABSENT {
        return false;
    }
    let src = (base + u64::from(offset)) as *const u8;
    // SAFETY: as in `read`: the helper validates `src`; `comm` is a buffer of ours.
    unsafe { bpf_probe_read_kernel_buf(src, comm) }.is_ok()
}

/// `a + b`, or [`ABSENT`] if either is.
#[inline(always)]
pub fn add(a: u32, b: u32) -> u32 {
    if a == ABSENT || b == ABSENT {
        ABSENT
    } else {
        a + b
    }
}

/// The current task's (pid, tgid).
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid as u32, (pid_tgid >> 32) as u32)
}

/// The current task's name, or zeros.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}
