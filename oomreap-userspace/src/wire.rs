//! Decodes the records the kernel programs write into typed [`Event`]s.
//!
//! The record layouts are defined once in `oomreap_common::event`; this module checks each
//! record's length against them before reading, and turns the raw "which fields are valid"
//! bits into `Option`s so nothing downstream can mistake "unknown" for zero.
use oomreap_common::event::{
    AttachKind, COMM_LEN, EventHeader, EventKind, MarkVictimEvent, mark_victim_fields as field,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {expected}-byte event header")]
    Truncated { got: usize, expected: usize },
    #[error("record has unknown event kind {0}; is this oomreap older than its kernel programs?")]
    UnknownKind(u32),
    #[error("invalid {kind:?} record size: expected {expected} bytes, got {got}")]
    SizeMismatch {
        kind: EventKind,
        expected: usize,
        got: usize,
    },
    #[error("record has unknown attach kind {0}")]
    UnknownAttach(u32),
}

/// A task, as the kernel names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Kernel `pid`: a thread id.
    pub pid: u32,
    /// Kernel `tgid`: the process id, when known.
    pub tgid: Option<u32>,
    /// `comm`, when known.
    pub comm: Option<String>,
}

/// Memory of the victim at the moment it was chosen, in KiB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VictimMemory {
    pub total_vm_kib: u64,
    pub anon_rss_kib: u64,
    pub file_rss_kib: u64,
    pub shmem_rss_kib: u64,
    pub pgtables_kib: u64,
}

/// `oom:mark_victim`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkVictim {
    pub timestamp_ns: u64,
    pub cpu: u32,
    pub attach: AttachKind,
    pub victim: Task,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i32>,
    pub memory: Option<VictimMemory>,
    /// Kernel address of the victim's `mm_struct`.
    pub mm: Option<u64>,
    /// The task that hit the OOM.
    pub trigger: Task,
}

/// Every event the kernel programs send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    MarkVictim(MarkVictim),
}

impl Event {
    /// When the kernel emitted it: CLOCK_MONOTONIC nanoseconds.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Self::MarkVictim(e) => e.timestamp_ns,
        }
    }
}

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let header: EventHeader = read(record).ok_or(DecodeError::Truncated {
        got: record.len(),
        expected: size_of::<EventHeader>(),
    })?;
    let kind = EventKind::try_from(header.kind).map_err(DecodeError::UnknownKind)?;
    match kind {
        EventKind::MarkVictim => decode_mark_victim(exact(kind, record)?),
    }
}

fn decode_mark_victim(raw: MarkVictimEvent) -> Result<Event, DecodeError> {
    let has = |bit: u32| raw.fields & bit != 0;
    let attach = AttachKind::try_from(raw.attach).map_err(DecodeError::UnknownAttach)?;
    Ok(Event::MarkVictim(MarkVictim {
        timestamp_ns: raw.header.timestamp_ns,
        cpu: raw.header.cpu,
        attach,
        victim: Task {
            pid: raw.victim_pid,
            tgid: has(field::TGID).then_some(raw.victim_tgid),
            comm: has(field::COMM).then(|| comm(&raw.victim_comm)),
        },
        uid: has(field::UID).then_some(raw.uid),
        oom_score_adj: has(field::OOM_SCORE_ADJ).then_some(raw.oom_score_adj),
        memory: has(field::MEMORY).then_some(VictimMemory {
            total_vm_kib: raw.total_vm_kib,
            anon_rss_kib: raw.anon_rss_kib,
            file_rss_kib: raw.file_rss_kib,
            shmem_rss_kib: raw.shmem_rss_kib,
            pgtables_kib: raw.pgtables_kib,
        }),
        mm: has(field::MM).then_some(raw.victim_mm),
        trigger: Task {
            pid: raw.trigger_pid,
            tgid: Some(raw.trigger_tgid),
            comm: Some(comm(&raw.trigger_comm)),
        },
    }))
}

/// A task name up to its first NUL, with invalid UTF-8 replaced.
fn comm(raw: &[u8; COMM_LEN]) -> String {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&raw[..len]).into_owned()
}

/// Reads a `T` from a record of exactly `size_of::<T>()` bytes.
fn exact<T: aya::Pod>(kind: EventKind, record: &[u8]) -> Result<T, DecodeError> {
    let mismatch = DecodeError::SizeMismatch {
        kind,
        expected: size_of::<T>(),
        got: record.len(),
    };
    if record.len() != size_of::<T>() {
        return Err(mismatch);
    }
    read(record).ok_or(mismatch)
}

/// Reads a `T` from the start of `bytes`, or `None` when there are too few.
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length was checked above, `read_unaligned` has no alignment requirement and
    // `T: Pod` makes every bit pattern a valid `T`.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// Encodes a wire struct as the bytes the kernel would send; for recorded streams and tests.
pub fn encode<T: aya::Pod>(value: &T) -> Vec<u8> {
    // SAFETY: `T: Pod` has no padding, so all `size_of::<T>()` bytes are initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mark_victim_raw;

    #[test]
    fn mark_victim_round_trips() {
        let raw = mark_victim_raw(4242, "hog", 300 * 1024);
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap();
        assert_eq!(e.victim.pid, 4242);
        assert_eq!(e.victim.tgid, Some(4242));
        assert_eq!(e.victim.comm.as_deref(), Some("hog"));
        assert_eq!(e.memory.unwrap().anon_rss_kib, 300 * 1024);
        assert_eq!(e.attach, AttachKind::BtfTracePoint);
        assert_eq!(e.trigger.comm.as_deref(), Some("hog"));
    }

    #[test]
    fn fields_without_their_bit_decode_as_unknown() {
        let mut raw = mark_victim_raw(7, "x", 1);
        raw.fields = 0;
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap();
        assert_eq!((e.victim.tgid, e.victim.comm, e.uid), (None, None, None));
        assert_eq!((e.memory, e.oom_score_adj, e.mm), (None, None, None));
    }

    #[test]
    fn a_full_width_comm_has_no_nul() {
        let raw = mark_victim_raw(7, "exactly16chars!!", 1);
        let Event::MarkVictim(e) = decode(&encode(&raw)).unwrap();
        assert_eq!(e.victim.comm.as_deref(), Some("exactly16chars!!"));
    }

    #[test]
    fn truncated_header() {
        let err = decode(&[1, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                got: 3,
                expected: 16
            }
        );
        assert!(err.to_string().contains("3 bytes"), "{err}");
    }

    #[test]
    fn truncated_body_reports_both_sizes() {
        let bytes = encode(&mark_victim_raw(1, "x", 1));
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        let expected = format!("expected {} bytes, got {}", bytes.len(), bytes.len() - 1);
        assert!(err.to_string().contains(&expected), "{err}");
    }

    #[test]
    fn trailing_garbage_is_a_size_mismatch() {
        let mut bytes = encode(&mark_victim_raw(1, "x", 1));
        bytes.push(0);
        let got = bytes.len();
        assert!(
            matches!(decode(&bytes), Err(DecodeError::SizeMismatch { got: g, .. }) if g == got),
            "{:?}",
            decode(&bytes)
        );
    }

    #[test]
    fn unknown_kind() {
        let mut raw = mark_victim_raw(1, "x", 1);
        raw.header.kind = 99;
        assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn all_zero_record_is_not_an_event() {
        assert_eq!(
            decode(&[0; size_of::<MarkVictimEvent>()]),
            Err(DecodeError::UnknownKind(0))
        );
    }

    #[test]
    fn unknown_attach_kind() {
        let mut raw = mark_victim_raw(1, "x", 1);
        raw.attach = 0;
        assert_eq!(decode(&encode(&raw)), Err(DecodeError::UnknownAttach(0)));
    }
}
