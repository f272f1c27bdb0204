//! What the kernel side remembers between events: victims, the reaper, its last trylock.
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap},
};
use oomreap_common::maps::{LastTrylock, VICTIM_CAPACITY, VictimEntry};

use crate::kernel::{current_ids, layout};

/// `BPF_NOEXIST` and `BPF_EXIST`: insert only a new key, or update only an existing one.
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

#[map]
static VICTIMS_BY_PID: LruHashMap<u32, VictimEntry> =
    LruHashMap::with_max_entries(VICTIM_CAPACITY, 0);

#[map]
static VICTIMS_BY_MM: LruHashMap<u64, VictimEntry> =
    LruHashMap::with_max_entries(VICTIM_CAPACITY, 0);

/// How many victims [`VICTIMS_BY_MM`] holds, or more (never fewer): exit_mmap runs at every
/// process exit, and with no victim in flight (nearly always) this one array read ends it
/// before the hash lookup. An entry the LRU map evicts is never counted down, which only
/// keeps that lookup on.
#[map]
static VICTIMS_LIVE: Array<u64> = Array::with_max_entries(1, 0);

#[map]
static REAPER: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static LAST_TRYLOCK: Array<LastTrylock> = Array::with_max_entries(1, 0);

/// Remembers a victim so the reaper's pid-only events and exit_mmap can find it.
#[inline(always)]
pub fn remember(pid: u32, tgid: u32, mm: u64) {
    let entry = VictimEntry { mm, pid, tgid };
    // Failure only means the LRU map could not take it; the event itself still goes out.
    let _ = VICTIMS_BY_PID.insert(pid, entry, 0);
    if mm != 0 {
        // Counted once per new entry. A new-only insert can also fail for want of memory or
        // a busy bucket; an entry then added anyway is counted too (the count may only err
        // upwards, which costs a lookup, never a victim).
        let added = VICTIMS_BY_MM.insert(mm, entry, BPF_NOEXIST).is_ok()
            || (VICTIMS_BY_MM.insert(mm, entry, BPF_EXIST).is_err()
                && VICTIMS_BY_MM.insert(mm, entry, 0).is_ok());
        if added {
            live_add(1);
        }
    }
}

/// True if some victim's mm may still be live: the cheap first filter of [`by_mm`]'s callers
/// on hot paths.
#[inline(always)]
pub fn any_live() -> bool {
    VICTIMS_LIVE.get(0).copied().unwrap_or(1) != 0
}

#[inline(always)]
fn live_add(delta: u64) {
    if let Some(slot) = VICTIMS_LIVE.get_ptr_mut(0) {
        // SAFETY: a valid, aligned u64 in a map value; other CPUs update it atomically too.
        unsafe { crate::atomic_add(slot, delta) };
    }
}

#[inline(always)]
pub fn by_pid(pid: u32) -> Option<VictimEntry> {
    // SAFETY: the value is copied out at once, before any other map operation.
    unsafe { VICTIMS_BY_PID.get(pid) }.copied()
}

#[inline(always)]
pub fn by_mm(mm: u64) -> Option<VictimEntry> {
    if mm == 0 {
        return None;
    }
    // SAFETY: as in `by_pid`.
    unsafe { VICTIMS_BY_MM.get(mm) }.copied()
}

/// Forgets a victim's mm once it is gone: the address may soon belong to another process.
/// Its entry by pid stays (until the LRU map evicts it, or a new kill of that pid replaces
/// it): the reaper may still try that victim, and its skip reads the lock of that mm, which
/// the victim's `signal->oom_mm` keeps allocated until the reaper is done with it. Only the
/// reaper's events look victims up by pid.
#[inline(always)]
pub fn forget(entry: &VictimEntry) {
    if VICTIMS_BY_MM.remove(entry.mm).is_ok() {
        live_add(u64::MAX); // wrapping -1
    }
}

/// The oom_reaper kthread's tgid: learned from its own tracepoints, or found by user space.
#[inline(always)]
pub fn reaper() -> u32 {
    match REAPER.get(0) {
        Some(&pid) if pid != 0 => pid,
        _ => layout().reaper_pid,
    }
}

/// Called from the reaper's own tracepoints, where `current` is the oom_reaper kthread.
#[inline(always)]
pub fn learn_reaper() -> u32 {
    let (_, tgid) = current_ids();
    let _ = REAPER.set(0, tgid, 0);
    tgid
}

#[inline(always)]
pub fn set_last_trylock(mm: u64, success: bool) {
    let record = LastTrylock {
        mm,
        success: u32::from(success),
        _pad: 0,
    };
    let _ = LAST_TRYLOCK.set(0, record, 0);
}

#[inline(always)]
pub fn last_trylock() -> Option<LastTrylock> {
    LAST_TRYLOCK.get(0).copied().filter(|t| t.mm != 0)
}
