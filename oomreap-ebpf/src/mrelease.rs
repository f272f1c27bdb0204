//! process_mrelease(2): at its syscall wrapper (fentry/fexit, else kprobe/kretprobe) where
//! the kernel allows function hooks, else through its syscall tracepoints (classic only:
//! syscall tracepoints have no BTF form), which put every syscall of every task on the slow
//! path while attached. Entry remembers the call and names its target from the pidfd; the
//! mmap_lock hook, where attached, notes the mm the call locked if that differs (or entry
//! could not tell); exit sends one [`MreleaseEvent`] with the duration and result.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, HashMap},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use oomreap_common::{
    event::{COMM_LEN, EventKind, MreleaseEvent, mrelease_fields},
    maps::MreleaseCall,
};

use crate::{
    emit::{self, Record},
    kernel::{current_comm, layout, read},
    mm, pidfd, task, tracepoint_field, victims,
};

/// `EBADF` and `ESRCH` in include/uapi/asm-generic/errno-base.h.
const EBADF: i64 = 9;
const ESRCH: i64 = 3;

/// Concurrent process_mrelease calls tracked at most.
const MAX_CALLS: u32 = 1024;

#[map]
static MRELEASE_CALLS: HashMap<u64, MreleaseCall> = HashMap::with_max_entries(MAX_CALLS, 0);

#[map]
static MRELEASE_ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

#[tracepoint(category = "syscalls", name = "sys_enter_process_mrelease")]
pub fn sys_enter_process_mrelease(ctx: TracePointContext) -> u32 {
    entered(tracepoint_field::<u64>(&ctx, layout().records.mrelease_pidfd).unwrap_or(0));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_mrelease")]
pub fn sys_exit_process_mrelease(ctx: TracePointContext) -> u32 {
    returned(tracepoint_field::<i64>(&ctx, layout().records.mrelease_ret).unwrap_or(0));
    0
}

/// The syscall's wrapper (`__x64_sys_process_mrelease`, `__arm64_sys_process_mrelease`:
/// user space names it) takes the caller's saved registers; the pidfd is the first argument
/// register among them.
#[fentry(function = "process_mrelease")]
pub fn process_mrelease_fentry(ctx: FEntryContext) -> i32 {
    entered(syscall_arg0(ctx.arg::<u64>(0)));
    0
}

/// The return value follows the wrapper's one argument.
#[fexit(function = "process_mrelease")]
pub fn process_mrelease_fexit(ctx: FExitContext) -> i32 {
    returned(ctx.arg::<i64>(1));
    0
}

#[kprobe]
pub fn process_mrelease_kprobe(ctx: ProbeContext) -> u32 {
    entered(syscall_arg0(ctx.arg::<u64>(0).unwrap_or(0)));
    0
}

#[kretprobe]
pub fn process_mrelease_kretprobe(ctx: RetProbeContext) -> u32 {
    returned(ctx.ret::<i64>());
    0
}

/// The syscall's first argument, from the saved registers at `regs`; -1 if unreadable, which
/// no descriptor is (0 would be the caller's stdin): the call then names no target from it,
/// and its result still arrives.
#[inline(always)]
fn syscall_arg0(regs: u64) -> u64 {
    read::<u64>(regs, layout().pt_regs_arg0).unwrap_or(u64::MAX)
}

/// A call begins: remember it, with its target named from `pidfd` where that is one.
#[inline(always)]
fn entered(pidfd: u64) {
    let mut call = MreleaseCall {
        // SAFETY: takes no arguments, cannot fail.
        entered_ns: unsafe { bpf_ktime_get_ns() },
        mm: 0,
        pidfd: pidfd as i32,
        fields: 0,
        target_pid: 0,
        target_tgid: 0,
        target_comm: [0; COMM_LEN],
        target_memcg_id: 0,
        rss_before_anon_kib: 0,
        rss_before_file_kib: 0,
        rss_before_shmem_kib: 0,
    };
    let mm = pidfd::target_mm(call.pidfd);
    if mm != 0 {
        call.mm = mm;
        note_target(&mut call, mm);
    }
    let key = pid_tgid();
    // An entry left by a call whose exit was missed (its exit program not yet attached) is
    // replaced, not counted twice: the count keeps the lock hook's fast path.
    let fresh = MRELEASE_CALLS.get_ptr(key).is_none();
    if MRELEASE_CALLS.insert(key, call, 0).is_ok() && fresh {
        active_add(1);
    }
}

/// The call returned `ret`: send it, with what it freed.
#[inline(always)]
fn returned(ret: i64) {
    let key = pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { MRELEASE_CALLS.get(key) }).copied() else {
        return;
    };
    let _ = MRELEASE_CALLS.remove(key);
    active_add(u64::MAX); // wrapping -1
    let Some(mut record) = Record::<MreleaseEvent>::reserve() else {
        return;
    };
    let event = record.get();
    event.header = emit::header(EventKind::Mrelease);
    event.entered_ns = call.entered_ns;
    event.ret = ret;
    // The kernel found no process behind the descriptor: what entry read from it is not a
    // target (it may not even have been a pidfd).
    let call = if event.ret == -EBADF || event.ret == -ESRCH {
        MreleaseCall {
            mm: 0,
            fields: 0,
            ..call
        }
    } else {
        call
    };
    event.mm = call.mm;
    event.caller_pid = key as u32;
    event.caller_tgid = (key >> 32) as u32;
    event.caller_comm = current_comm();
    event.pidfd = call.pidfd;
    event.victim_pid = victims::by_mm(call.mm).map_or(0, |v| v.pid);
    event.fields = call.fields;
    event.target_pid = call.target_pid;
    event.target_tgid = call.target_tgid;
    event.target_comm = call.target_comm;
    event.target_memcg_id = call.target_memcg_id;
    event.rss_before_anon_kib = call.rss_before_anon_kib;
    event.rss_before_file_kib = call.rss_before_file_kib;
    event.rss_before_shmem_kib = call.rss_before_shmem_kib;
    // The call has dropped its reference by now, but the dying target still holds the mm
    // unless it has exited meanwhile (then exit_mmap says so, and the counters read 0).
    if call.mm != 0
        && let Some(after) = mm::rss(call.mm)
    {
        event.rss_after_anon_kib = after.anon_kib;
        event.rss_after_file_kib = after.file_kib;
        event.rss_after_shmem_kib = after.shmem_kib;
        event.fields |= mrelease_fields::RSS_AFTER;
    }
    record.submit();
}

/// Called from the mmap_lock hook for tasks other than the reaper: returns true if and only
/// if the current task is inside process_mrelease, after noting the mm it locks when entry
/// named another (a thread exited in between) or none.
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
            let call = unsafe { &mut *call };
            if call.mm != mm {
                call.mm = mm;
                note_target(call, mm);
            }
            true
        }
        None => false,
    }
}

/// Names the call's target from the mm it locks (its owner task, as lmkd's victim need not be
/// an OOM victim), and the mm's RSS before the reap.
#[inline(always)]
fn note_target(call: &mut MreleaseCall, mm: u64) {
    call.fields = 0;
    if let Some(before) = mm::rss(mm) {
        call.rss_before_anon_kib = before.anon_kib;
        call.rss_before_file_kib = before.file_kib;
        call.rss_before_shmem_kib = before.shmem_kib;
        call.fields |= mrelease_fields::RSS_BEFORE;
    }
    let Some(owner) = read::<u64>(mm, layout().mm_owner).filter(|&t| t != 0) else {
        return;
    };
    if let Some((pid, tgid)) = task::ids(owner)
        && task::comm(owner, &mut call.target_comm)
    {
        call.target_pid = pid;
        call.target_tgid = tgid;
        call.fields |= mrelease_fields::TARGET;
    }
    if let Some(id) = task::memcg_id(owner) {
        call.target_memcg_id = id;
        call.fields |= mrelease_fields::MEMCG;
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
