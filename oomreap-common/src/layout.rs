//! Kernel structure offsets, resolved by user space and handed to the kernel programs.
//!
//! aya emits no CO-RE relocations, so the kernel programs cannot ask the verifier where
//! `task_struct::pid` lives. User space reads the running kernel's BTF (and, for classic
//! tracepoints, the tracefs `format` file), fills a [`KernelLayout`] and sets it as the read-only
//! global [`crate::maps::LAYOUT_GLOBAL`] before loading. Nothing is hard-coded.

/// Offset value meaning "this field does not exist on the running kernel".
pub const ABSENT: u32 = u32::MAX;

/// The arguments `oom:mark_victim` passes to a BTF tracepoint program.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MarkVictimArgs {
    /// `(struct task_struct *task, uid_t uid)`, kernels since 2024 and some stable backports.
    TaskAndUid = 1,
    /// `(int pid)`, older kernels.
    PidOnly = 2,
}

/// Byte offsets the kernel programs need, or [`ABSENT`].
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// A [`MarkVictimArgs`] value; 0 until user space sets it.
    pub mark_victim_args: u32,
    /// `PAGE_SHIFT - 10`: converts page counts to KiB.
    pub page_to_kib_shift: u32,

    // struct task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    // struct signal_struct
    pub signal_oom_score_adj: u32,
    // struct mm_struct
    pub mm_total_vm: u32,
    pub mm_rss_stat: u32,
    pub mm_pgtables_bytes: u32,
    /// Size of one `struct percpu_counter` in `mm_struct::rss_stat[]`.
    pub percpu_counter_size: u32,
    /// Offset of `count` (an `s64`) in `struct percpu_counter`.
    pub percpu_counter_count: u32,

    /// Record offsets of the classic `oom:mark_victim` tracepoint (from its tracefs `format`).
    pub mark_victim_record: MarkVictimRecord,
}

/// Record offsets of the classic `oom:mark_victim` tracepoint; [`ABSENT`] where the kernel's
/// record lacks the field (before 2024 it had `pid` only).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MarkVictimRecord {
    pub pid: u32,
    /// A `__data_loc char[]`: a u32 whose low half is the string's offset in the record.
    pub comm_data_loc: u32,
    pub total_vm: u32,
    pub anon_rss: u32,
    pub file_rss: u32,
    pub shmem_rss: u32,
    pub uid: u32,
    pub pgtables: u32,
    /// A `short`.
    pub oom_score_adj: u32,
    pub _pad: u32,
}

impl MarkVictimRecord {
    pub const UNSET: Self = Self {
        pid: ABSENT,
        comm_data_loc: ABSENT,
        total_vm: ABSENT,
        anon_rss: ABSENT,
        file_rss: ABSENT,
        shmem_rss: ABSENT,
        uid: ABSENT,
        pgtables: ABSENT,
        oom_score_adj: ABSENT,
        _pad: 0,
    };
}

impl KernelLayout {
    /// Every offset absent: what the kernel programs see if user space never set the layout.
    pub const UNSET: Self = Self {
        mark_victim_args: 0,
        page_to_kib_shift: 2,
        task_pid: ABSENT,
        task_tgid: ABSENT,
        task_comm: ABSENT,
        task_mm: ABSENT,
        task_signal: ABSENT,
        signal_oom_score_adj: ABSENT,
        mm_total_vm: ABSENT,
        mm_rss_stat: ABSENT,
        mm_pgtables_bytes: ABSENT,
        percpu_counter_size: ABSENT,
        percpu_counter_count: ABSENT,
        mark_victim_record: MarkVictimRecord::UNSET,
    };
}

const _: () = {
    assert!(core::mem::size_of::<MarkVictimRecord>() == 40);
    assert!(core::mem::size_of::<KernelLayout>() == 13 * 4 + 40);
};

// SAFETY: both structs are `repr(C)`, made of `u32`s only, so they have no padding and every
// bit pattern is valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelLayout {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for MarkVictimRecord {}
