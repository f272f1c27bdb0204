//! Reads of kernel memory at offsets user space resolved from the running kernel's BTF.
use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use oomreap_common::{
    event::COMM_LEN,
    layout::{ABSENT, KernelLayout},
};

/// Set by user space before loading (see `oomreap_common::layout`); `UNSET` means it was not.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::UNSET;

/// The layout user space set.
#[inline(always)]
pub fn layout() -> KernelLayout {
    // SAFETY: LAYOUT is a valid static. The volatile read stops the compiler from folding in
    // `UNSET`: the loader rewrites the value in .rodata before the program is verified.
    unsafe { core::ptr::read_volatile(&raw const LAYOUT) }
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

/// Reads a task name (`char comm[TASK_COMM_LEN]`) at `base + offset`.
#[inline(always)]
pub fn read_comm(base: u64, offset: u32) -> Option<[u8; COMM_LEN]> {
    if base == 0 || offset == ABSENT {
        return None;
    }
    let mut comm = [0u8; COMM_LEN];
    let src = (base + u64::from(offset)) as *const u8;
    // SAFETY: as in `read`: the helper validates `src`; `comm` is a local buffer.
    unsafe { bpf_probe_read_kernel_buf(src, &mut comm) }.ok()?;
    Some(comm)
}
