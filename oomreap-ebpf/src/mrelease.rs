//! process_mrelease(2) through its syscall tracepoints (classic only: syscall tracepoints have
//! no BTF form). Entry remembers the call; the mmap_lock hook notes which mm it locked; exit
//! sends one [`MreleaseEvent`] with the duration and result.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, tracepoint},
    maps::{Array, HashMap},
    programs::TracePointContext,
};
use oomreap_common::{
    event::{EventKind, MreleaseEvent},
    maps::MreleaseCall,
};

use crate::{
    emit::{self, Record},
    kernel::{current_comm, layout},
    tracepoint_field, victims,
};

/// Concurrent process_mrelease calls tracked at most.
const MAX_CALLS: u32 = 1024;

#[map]
static MRELEASE_CALLS: HashMap<u64, MreleaseCall> = HashMap::with_max_entries(MAX_CALLS, 0);

#[map]
static MRELEASE_ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

#[tracepoint(category = "syscalls", name = "sys_enter_process_mrelease")]
pub fn sys_enter_process_mrelease(ctx: TracePointContext) -> u32 {
    let pidfd = tracepoint_field::<u64>(&ctx, layout().records.mrelease_pidfd).unwrap_or(0);
    let call = MreleaseCall {
        // SAFETY: takes no arguments, cannot fail.
        entered_ns: unsafe { bpf_ktime_get_ns() },
        mm: 0,
        pidfd: pidfd as i32,
        _pad: 0,
    };
    if MRELEASE_CALLS.insert(pid_tgid(), call, 0).is_ok() {
        active_add(1);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_mrelease")]
pub fn sys_exit_process_mrelease(ctx: TracePointContext) -> u32 {
    let key = pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { MRELEASE_CALLS.get(key) }).copied() else {
        return 0;
    };
    let _ = MRELEASE_CALLS.remove(key);
    active_add(u64::MAX); // wrapping -1
    let Some(mut record) = Record::<MreleaseEvent>::reserve() else {
        return 0;
    };
    let event = record.get();
    event.header = emit::header(EventKind::Mrelease);
    event.entered_ns = call.entered_ns;
    event.ret = tracepoint_field::<i64>(&ctx, layout().records.mrelease_ret).unwrap_or(0);
    event.mm = call.mm;
    event.caller_pid = key as u32;
    event.caller_tgid = (key >> 32) as u32;
    event.caller_comm = current_comm();
    event.pidfd = call.pidfd;
    event.victim_pid = victims::by_mm(call.mm).map_or(0, |v| v.pid);
    record.submit();
    0
}

/// Called from the mmap_lock hook for tasks other than the reaper: returns true if and only
/// if the current task is inside process_mrelease, after noting the mm it locks.
#[inline(always)]
pub fn note_lock(mm: u64) -> bool {
    // Nearly always zero: one load, and the hot path is done.
    if MRELEASE_ACTIVE.get(0).copied().unwrap_or(0) == 0 {
        return false;
    }
    match MRELEASE_CALLS.get_ptr_mut(pid_tgid()) {
        Some(call) => {
            // SAFETY: pointer from the map lookup, valid during this program run; only this
            // task writes its own entry.
            unsafe { (*call).mm = mm };
            true
        }
        None => false,
    }
}

#[inline(always)]
fn pid_tgid() -> u64 {
    aya_ebpf::helpers::bpf_get_current_pid_tgid()
}

#[inline(always)]
fn active_add(delta: u64) {
    if let Some(slot) = MRELEASE_ACTIVE.get_ptr_mut(0) {
        // SAFETY: the slot is a valid, aligned u64 in a map value that lives as long as the
        // map; concurrent updates from other CPUs go through the same atomic.
        unsafe { crate::atomic_add(slot, delta) };
    }
}
