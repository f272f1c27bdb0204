//! The ring buffer to user space, and the counters of what could not be sent.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated},
    macros::map,
    maps::{PerCpuArray, RingBuf, ring_buf::RingBufEntry},
};
use oomreap_common::{
    event::{EventHeader, EventKind},
    maps::{COUNTER_SLOTS, Counter, EVENTS_DEFAULT_BYTES},
};

/// User space may resize it before loading (`EbpfLoader::map_max_entries`).
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
        _reserved: 0,
        // SAFETY: the helper takes no arguments and cannot fail.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Zeros as long as the largest record, for [`Record::reserve`] to copy.
static ZEROS: [u8; 4096] = [0; 4096];

/// A record reserved in the ring buffer, zero-filled, to be filled in place (the larger
/// records would not fit the 512-byte BPF stack) and then submitted or discarded.
pub struct Record<T: 'static>(RingBufEntry<T>);

impl<T: 'static> Record<T> {
    /// Reserves a zeroed `T`, or counts the event as lost when the ring buffer is full.
    ///
    /// `T` must be one of the `oomreap_common::event` records: plain integers, for which all
    /// zero bytes are a valid value.
    #[inline(always)]
    pub fn reserve() -> Option<Self> {
        let Some(mut entry) = EVENTS.reserve::<T>(0) else {
            count(Counter::RingBufferFull);
            return None;
        };
        // Zeroed by one helper call, copying the zeros below: a `write_bytes` compiles to a
        // byte-at-a-time memset loop for the larger records, which the verifier walks once
        // per byte (2,672 turns for the kill's record, most of oomreap's start-up). Not a
        // read from NULL, whose failure would zero it too: on arm64 without PAN that read can
        // succeed, and copy the task's own page 0.
        const { assert!(size_of::<T>() <= ZEROS.len()) };
        // SAFETY: the destination is a writable reservation of exactly one `T`, the source
        // a static of at least as many bytes.
        unsafe {
            generated::bpf_probe_read_kernel(
                entry.as_mut_ptr().cast(),
                size_of::<T>() as u32,
                ZEROS.as_ptr().cast(),
            )
        };
        Some(Self(entry))
    }

    /// The record, to fill in.
    #[inline(always)]
    pub fn get(&mut self) -> &mut T {
        // SAFETY: `reserve` zero-filled the memory, which is a valid `T` (see there).
        unsafe { &mut *self.0.as_mut_ptr() }
    }

    #[inline(always)]
    pub fn submit(self) {
        self.0.submit(0);
    }

    #[inline(always)]
    pub fn discard(self) {
        self.0.discard(0);
    }
}
