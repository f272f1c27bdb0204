//! Event records the kernel programs send through the [`crate::maps::EVENTS`] ring buffer.

/// Length of a kernel task name (`TASK_COMM_LEN`), NUL-padded.
pub const COMM_LEN: usize = 16;

/// What follows an [`EventHeader`]. Discriminants start at 1 so an all-zero record never
/// decodes as a valid event.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// [`MarkVictimEvent`]: `oom:mark_victim`, the OOM killer chose a victim.
    MarkVictim = 1,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::MarkVictim),
            unknown => Err(unknown),
        }
    }
}

/// How a hook was attached; recorded in each event so user space knows which fields to trust.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// `tp_btf`: typed arguments, kernel structures read through BTF offsets.
    BtfTracePoint = 1,
    /// Classic tracepoint: only what the tracepoint's record carries.
    TracePoint = 2,
}

impl TryFrom<u32> for AttachKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::BtfTracePoint),
            2 => Ok(Self::TracePoint),
            unknown => Err(unknown),
        }
    }
}

/// The start of every record.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// CPU that emitted the event.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub timestamp_ns: u64,
}

/// Bits of [`MarkVictimEvent::fields`]: which optional fields hold real values.
pub mod mark_victim_fields {
    pub const TGID: u32 = 1 << 0;
    pub const COMM: u32 = 1 << 1;
    pub const UID: u32 = 1 << 2;
    pub const MEMORY: u32 = 1 << 3;
    pub const OOM_SCORE_ADJ: u32 = 1 << 4;
    pub const MM: u32 = 1 << 5;
}

/// `oom:mark_victim`: the OOM killer marked `victim_pid` as its victim.
///
/// Fired in the context of the task that hit the OOM (the trigger), which is often, not always,
/// the victim. Memory sizes are KiB, as in the kernel's own OOM report.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MarkVictimEvent {
    pub header: EventHeader,
    /// The victim task's pid (a thread id: the kernel may pick a non-leader thread).
    pub victim_pid: u32,
    /// The victim's thread group id (the "process id"); valid with `fields::TGID`.
    pub victim_tgid: u32,
    /// Valid with `fields::UID`.
    pub uid: u32,
    /// Valid with `fields::OOM_SCORE_ADJ`.
    pub oom_score_adj: i32,
    /// The next five are valid with `fields::MEMORY`.
    pub total_vm_kib: u64,
    pub anon_rss_kib: u64,
    pub file_rss_kib: u64,
    pub shmem_rss_kib: u64,
    pub pgtables_kib: u64,
    /// Kernel address of the victim's `mm_struct`, to correlate later events; valid with
    /// `fields::MM`.
    pub victim_mm: u64,
    /// The task running when the OOM was declared.
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    /// Valid with `fields::COMM`.
    pub victim_comm: [u8; COMM_LEN],
    pub trigger_comm: [u8; COMM_LEN],
    /// An [`AttachKind`] value.
    pub attach: u32,
    /// Bits from [`mark_victim_fields`].
    pub fields: u32,
}

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 16);
    assert!(core::mem::size_of::<MarkVictimEvent>() == 16 + 16 + 6 * 8 + 8 + 2 * COMM_LEN + 8);
    assert!(core::mem::align_of::<MarkVictimEvent>() <= 8);
};

// SAFETY: `repr(C)`, only integer fields and byte arrays, no padding (sizes asserted above):
// every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EventHeader {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for MarkVictimEvent {}
