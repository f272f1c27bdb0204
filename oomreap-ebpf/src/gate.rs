//! Tells user space that an OOM victim or the reaper is active, so it attaches the hot hooks
//! (the mmap_lock hook fires on every mmap_lock use system-wide) only while they matter: the
//! reaper's first trylock comes 2 s after the kill.
use aya_ebpf::{macros::map, maps::RingBuf};
use oomreap_common::{event::EventKind, maps::GATE_BYTES};

#[map]
static GATE: RingBuf = RingBuf::with_byte_size(GATE_BYTES, 0);

/// Sends `kind`. A full buffer (256 unread events) loses little: the events before it opened
/// the gate already, and only a lost pass start could let the gate close during that pass.
#[inline(always)]
pub fn signal(kind: EventKind) {
    let _ = GATE.output::<u32>(&(kind as u32), 0);
}
