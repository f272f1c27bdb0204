//! One OOM victim and what is known about it.
use oomreap_common::event::AttachKind;

use crate::wire::{MarkVictim, Task, VictimMemory};

/// Identifies a victim within one tracker; pids are reused, ids never are.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VictimId(pub u64);

/// A task the OOM killer chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub id: VictimId,
    /// The thread the OOM killer picked.
    pub pid: u32,
    /// Its process id, when the kernel told us.
    pub tgid: Option<u32>,
    pub comm: Option<String>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub memory_at_kill: Option<VictimMemory>,
    /// Kernel address of its `mm_struct`.
    pub mm: Option<u64>,
    /// The task that hit the OOM.
    pub trigger: Task,
    /// CLOCK_MONOTONIC nanoseconds of `oom:mark_victim`.
    pub killed_at_ns: u64,
    /// How the kill was observed, which bounds what is known.
    pub attach: AttachKind,
}

impl Victim {
    pub(super) fn marked(id: VictimId, e: &MarkVictim) -> Self {
        Self {
            id,
            pid: e.victim.pid,
            tgid: e.victim.tgid,
            comm: e.victim.comm.clone(),
            uid: e.uid,
            oom_score_adj: e.oom_score_adj,
            memory_at_kill: e.memory,
            mm: e.mm,
            trigger: e.trigger.clone(),
            killed_at_ns: e.timestamp_ns,
            attach: e.attach,
        }
    }
}
