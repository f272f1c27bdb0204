//! Tells user space that an OOM victim or the reaper is active, so it attaches the hot hooks
//! (the mmap_lock hook fires on every mmap_lock use system-wide) only while they matter: the
//! reaper's first trylock comes 2 s after the kill.
use aya_ebpf::{macros::map, maps::RingBuf};
use oomreap_common::{event::EventKind, maps::GATE_BYTES};

#[map]
static GATE: RingBuf = RingBuf::with_byte_size(GATE_BYTES, 0);

/// Sends `kind`. A full buffer loses nothing user space needs: it is only ever full while
/// the thread has not yet read the events before, and those already opened the gate.
#[inline(always)]
pub fn signal(kind: EventKind) {
    let _ = GATE.output::<u32>(&(kind as u32), 0);
}
