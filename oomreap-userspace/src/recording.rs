//! Recording files: the raw event stream, replayable without root.
//!
//! # Format (version 2)
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `OOMREAP\0` |
//! | 4 | format version, u32 little-endian |
//! | 16 | CLOCK_REALTIME − CLOCK_MONOTONIC at the start, i128 little-endian ns, so replayed event times show as wall-clock times |
//! | … | records: a u32 little-endian length word, then that many bytes |
//!
//! A length word with its top bit clear frames one wire record (`oomreap_common::event`), as
//! the kernel sent it or as capture synthesised it (retry snapshots), in native byte order (a
//! recording replays on a machine of the same endianness). With the top bit set, the other 31
//! bits frame a context record: one JSON object holding what only the recording machine knew
//! when it was first seen (cgroup paths and pods, kernel symbols, lock holders' stacks, the
//! kernel release and hooks; see `intake::annotations`). It follows the wire record that made
//! it known. Version 1 files, which have no context records, are read too.
use std::io::Write;

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"OOMREAP\0";

/// The format this oomreap writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// Set in a length word that frames a context record.
const CONTEXT_FLAG: u32 = 1 << 31;

const HEADER_LEN: usize = 8 + 4 + 16;

/// Largest record accepted: far above any wire record, small enough to refuse garbage fast.
const MAX_RECORD_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    #[error("not an oomreap recording (no OOMREAP magic at the start)")]
    NotARecording,
    #[error(
        "recording has format version {found}, newer than this oomreap reads ({supported}); \
         replay it with a newer oomreap"
    )]
    NewerVersion { found: u32, supported: u32 },
    #[error("recording header is truncated: {len} of {HEADER_LEN} bytes")]
    TruncatedHeader { len: usize },
    #[error(
        "record {index} at byte offset {offset} is truncated: needs {needed} bytes, {available} left"
    )]
    TruncatedRecord {
        index: usize,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("record {index} at byte offset {offset} claims {len} bytes; the file is corrupt")]
    OversizedRecord {
        index: usize,
        offset: usize,
        len: usize,
    },
}

/// Writes a recording.
pub struct RecordWriter<W: Write> {
    out: W,
}

impl<W: Write> RecordWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W, wall_offset_ns: i128) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&wall_offset_ns.to_le_bytes())?;
        Ok(Self { out })
    }

    /// Appends one wire record.
    pub fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.frame(record, 0)
    }

    /// Appends one context record (a JSON object).
    pub fn write_context(&mut self, object: &serde_json::Value) -> std::io::Result<()> {
        self.frame(object.to_string().as_bytes(), CONTEXT_FLAG)
    }

    fn frame(&mut self, bytes: &[u8], flag: u32) -> std::io::Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|&len| len as usize <= MAX_RECORD_LEN)
            .ok_or_else(|| std::io::Error::other("record too long for a recording"))?;
        self.out.write_all(&(len | flag).to_le_bytes())?;
        self.out.write_all(bytes)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A wire record, for the decoder.
    Wire,
    /// A context record: a JSON object.
    Context,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where its length word starts in the file.
    pub offset: usize,
    pub kind: RecordKind,
    pub bytes: Vec<u8>,
}

/// A recording read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub wall_offset_ns: i128,
    /// The records in file order.
    pub records: Vec<Record>,
    /// What stopped reading early, if anything: every record before it is in `records`.
    pub error: Option<RecordingError>,
}

/// Parses a recording. A bad header is an error; a bad record ends the records, and the
/// error is kept in [`Recording::error`] so everything before it can still be replayed.
pub fn parse(bytes: &[u8]) -> Result<Recording, RecordingError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            RecordingError::TruncatedHeader { len: bytes.len() }
        } else {
            RecordingError::NotARecording
        });
    }
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(RecordingError::TruncatedHeader { len: bytes.len() })?;
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    if version > FORMAT_VERSION {
        return Err(RecordingError::NewerVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let wall_offset_ns = i128::from_le_bytes(header[12..28].try_into().unwrap_or_default());
    let mut records = Vec::new();
    let mut offset = HEADER_LEN;
    let mut error = None;
    while offset < bytes.len() {
        let index = records.len();
        let rest = &bytes[offset..];
        let Some(len_bytes) = rest.get(..4) else {
            error = Some(RecordingError::TruncatedRecord {
                index,
                offset,
                needed: 4,
                available: rest.len(),
            });
            break;
        };
        let word = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        let kind = if version >= 2 && word & CONTEXT_FLAG != 0 {
            RecordKind::Context
        } else {
            RecordKind::Wire
        };
        let len = (if kind == RecordKind::Context {
            word & !CONTEXT_FLAG
        } else {
            word
        }) as usize;
        if len > MAX_RECORD_LEN {
            error = Some(RecordingError::OversizedRecord { index, offset, len });
            break;
        }
        let Some(record) = rest.get(4..4 + len) else {
            error = Some(RecordingError::TruncatedRecord {
                index,
                offset,
                needed: 4 + len,
                available: rest.len(),
            });
            break;
        };
        records.push(Record {
            offset,
            kind,
            bytes: record.to_vec(),
        });
        offset += 4 + len;
    }
    Ok(Recording {
        wall_offset_ns,
        records,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(records: &[&[u8]]) -> Vec<u8> {
        let mut writer = RecordWriter::new(Vec::new(), -42).unwrap();
        for r in records {
            writer.write(r).unwrap();
        }
        writer.out
    }

    #[test]
    fn round_trip() {
        let bytes = recording(&[b"abc", b"", b"defg"]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.wall_offset_ns, -42);
        let records: Vec<&[u8]> = parsed.records.iter().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(records, [&b"abc"[..], b"", b"defg"]);
        assert_eq!(parsed.records[0].offset, HEADER_LEN);
        assert!(parsed.records.iter().all(|r| r.kind == RecordKind::Wire));
        assert_eq!(parsed.error, None);
    }

    #[test]
    fn a_truncated_record_keeps_the_ones_before() {
        let bytes = recording(&[b"abc", b"defg"]);
        let parsed = parse(&bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(parsed.records.len(), 1);
        let err = parsed.error.unwrap();
        assert_eq!(
            err,
            RecordingError::TruncatedRecord {
                index: 1,
                offset: HEADER_LEN + 7,
                needed: 8,
                available: 6
            }
        );
        assert!(
            err.to_string().contains("record 1 at byte offset 35"),
            "{err}"
        );
    }

    #[test]
    fn garbage_lengths_are_refused() {
        let mut bytes = recording(&[b"abc"]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert!(matches!(
            parsed.error,
            Some(RecordingError::OversizedRecord { index: 1, .. })
        ));
    }

    #[test]
    fn not_a_recording() {
        assert_eq!(
            parse(b"hello world, this is text"),
            Err(RecordingError::NotARecording)
        );
        assert_eq!(parse(b""), Err(RecordingError::TruncatedHeader { len: 0 }));
        assert_eq!(
            parse(b"OOMR"),
            Err(RecordingError::TruncatedHeader { len: 4 })
        );
    }

    #[test]
    fn a_newer_version_is_named() {
        let mut bytes = recording(&[]);
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        let err = parse(&bytes).unwrap_err();
        assert_eq!(
            err,
            RecordingError::NewerVersion {
                found: 3,
                supported: 2
            }
        );
        assert!(err.to_string().contains("newer oomreap"), "{err}");
    }

    #[test]
    fn context_records_are_told_apart_from_wire_records() {
        let mut writer = RecordWriter::new(Vec::new(), 0).unwrap();
        writer.write(b"wire").unwrap();
        writer
            .write_context(&serde_json::json!({"kernel": "6.18"}))
            .unwrap();
        let parsed = parse(&writer.out).unwrap();
        let kinds: Vec<RecordKind> = parsed.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RecordKind::Wire, RecordKind::Context]);
        assert_eq!(parsed.records[1].bytes, br#"{"kernel":"6.18"}"#);
    }

    #[test]
    fn a_version_1_file_has_only_wire_records() {
        // Version 1 had no flag bit: a length word is a length, however large.
        let mut bytes = recording(&[b"abc"]);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&(CONTEXT_FLAG | 3).to_le_bytes());
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert!(matches!(
            parsed.error,
            Some(RecordingError::OversizedRecord { index: 1, .. })
        ));
    }

    #[test]
    fn a_truncated_header() {
        let bytes = recording(&[]);
        assert_eq!(
            parse(&bytes[..20]),
            Err(RecordingError::TruncatedHeader { len: 20 })
        );
    }
}
