//! Fixture builders shared by unit tests.
use oomreap_common::event::{
    AttachKind, COMM_LEN, EventHeader, EventKind, MarkVictimEvent, mark_victim_fields as field,
};

/// A `comm` field holding `name` (truncated to 16 bytes).
pub fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut comm = [0; COMM_LEN];
    let len = name.len().min(COMM_LEN);
    comm[..len].copy_from_slice(&name.as_bytes()[..len]);
    comm
}

/// A fully populated `mark_victim` record for victim `pid`, as a BTF tracepoint sends it; the
/// victim hit the OOM itself.
pub fn mark_victim_raw(pid: u32, name: &str, anon_rss_kib: u64) -> MarkVictimEvent {
    MarkVictimEvent {
        header: EventHeader {
            kind: EventKind::MarkVictim as u32,
            cpu: 1,
            timestamp_ns: 1_000_000_000,
        },
        victim_pid: pid,
        victim_tgid: pid,
        uid: 1000,
        oom_score_adj: 0,
        total_vm_kib: anon_rss_kib + 4096,
        anon_rss_kib,
        file_rss_kib: 1024,
        shmem_rss_kib: 0,
        pgtables_kib: 600,
        victim_mm: 0xffff_8880_0000_1000,
        trigger_pid: pid,
        trigger_tgid: pid,
        victim_comm: comm_bytes(name),
        trigger_comm: comm_bytes(name),
        attach: AttachKind::BtfTracePoint as u32,
        fields: field::TGID
            | field::COMM
            | field::UID
            | field::MEMORY
            | field::OOM_SCORE_ADJ
            | field::MM,
    }
}
