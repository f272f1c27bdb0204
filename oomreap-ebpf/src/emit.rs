//! The ring buffer to user space, and the counters of what could not be sent.
use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use oomreap_common::{
    event::{EventHeader, EventKind},
    maps::{COUNTER_SLOTS, Counter, EVENTS_DEFAULT_BYTES},
};

/// User space may resize it before loading (`EbpfLoader::set_max_entries`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_DEFAULT_BYTES, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Adds one to a per-CPU counter; per-CPU slots need no atomic operation.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from the map lookup and stays valid for this program run;
        // per-CPU storage is never written concurrently.
        unsafe { *slot += 1 };
    }
}

/// A header stamped now, on this CPU.
#[inline(always)]
pub fn header(kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        // SAFETY: both helpers take no arguments and cannot fail.
        cpu: unsafe { bpf_get_smp_processor_id() },
        // SAFETY: as above.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Sends `event` to user space, or counts it as lost when the ring buffer is full.
#[inline(always)]
pub fn send<T: 'static>(event: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(0);
        }
        None => count(Counter::RingBufferFull),
    }
}
