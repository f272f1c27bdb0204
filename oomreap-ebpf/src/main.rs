//! oomreap's kernel programs: hooks on the OOM killer and reaper that send event records to
//! user space through one ring buffer.
//!
//! Every hook exists twice, as a BTF tracepoint (`*_btf`, typed arguments) and as a classic
//! tracepoint (`*_tp`, the tracefs record); user space loads one per hook. Both read kernel
//! structures only at offsets user space found in the running kernel's BTF.
#![no_std]
#![no_main]
// core's atomic types lack fetch_add on the BPF target; the intrinsic lowers to BPF's atomic add.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only atomic add for BPF"
)]

mod badness;
mod domain;
mod emit;
mod exit_mmap;
mod gate;
mod kernel;
mod lock;
mod mark_victim;
mod mm;
mod mrelease;
mod oom_kill;
mod pidfd;
mod reap_fn;
mod reaper;
mod retries;
mod score_adj;
mod task;
mod victims;

use aya_ebpf::programs::TracePointContext;
use oomreap_common::layout::ABSENT;

/// Reads a field of a classic tracepoint record, or `None` when this kernel's record lacks it.
#[inline(always)]
fn tracepoint_field<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    if offset == ABSENT {
        return None;
    }
    // SAFETY: read_at goes through bpf_probe_read_kernel, which validates the address.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// Atomically adds `delta` to `*dst` (wrapping), for counters shared between CPUs.
///
/// # Safety
///
/// `dst` must be valid for writes and 8-byte aligned, such as a u64 in a map value.
#[inline(always)]
unsafe fn atomic_add(dst: *mut u64, delta: u64) {
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    // SAFETY: upheld by the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, delta) };
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never entered at run time.
    loop {}
}

// GPL: the programs call GPL-only helpers such as bpf_probe_read_kernel.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
