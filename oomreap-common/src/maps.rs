//! Names, capacities and slot indices of the maps both sides use.

/// Ring buffer carrying every event record to user space.
pub const EVENTS: &str = "EVENTS";

/// Default size of [`EVENTS`] in bytes: a power of two and a multiple of the page size. At about
/// 160 bytes a record it holds over 1,600 records, far more than an OOM storm produces between
/// two reads.
pub const EVENTS_DEFAULT_BYTES: u32 = 256 * 1024;

/// Per-CPU array of counters the kernel side keeps about itself, indexed by [`Counter`].
pub const COUNTERS: &str = "COUNTERS";

/// Slots of [`COUNTERS`].
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Records that could not be reserved in [`EVENTS`] because it was full: events lost.
    RingBufferFull = 0,
    /// Records dropped because a kernel read they depend on failed.
    ReadFailed = 1,
}

/// Number of slots in [`COUNTERS`].
pub const COUNTER_SLOTS: u32 = 2;

/// Name of the read-only global holding the [`crate::layout::KernelLayout`].
pub const LAYOUT_GLOBAL: &str = "LAYOUT";
