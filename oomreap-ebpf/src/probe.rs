//! Programs that only test whether the kernel lets oomreap use fentry and kprobes on the
//! reaper's core function (`oomreap doctor` loads them and reports the answer). They do
//! nothing else yet: the attach modes that use them come later.
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

#[fentry(function = "__oom_reap_task_mm")]
pub fn oom_reap_task_mm_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[kprobe]
pub fn oom_reap_task_mm_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
