//! Recording files: the raw event stream, replayable without root.
//!
//! # Format (version 1)
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `OOMREAP\0` |
//! | 4 | format version, u32 little-endian |
//! | 16 | CLOCK_REALTIME − CLOCK_MONOTONIC at the start, i128 little-endian ns, so replayed event times show as wall-clock times |
//! | … | records: a u32 little-endian length, then that many bytes of one wire record (`oomreap_common::event`) |
//!
//! Records are written as the kernel sent them, plus the synthetic retry snapshots capture
//! inserts, in native byte order (a recording replays on a machine of the same endianness).
use std::io::Write;

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"OOMREAP\0";

/// The format this oomreap writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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

    /// Appends one record.
    pub fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(record.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(record)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A recording read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub wall_offset_ns: i128,
    /// Each record with its byte offset in the file.
    pub records: Vec<(usize, Vec<u8>)>,
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
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
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
        records.push((offset, record.to_vec()));
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
        let records: Vec<&[u8]> = parsed.records.iter().map(|(_, r)| r.as_slice()).collect();
        assert_eq!(records, [&b"abc"[..], b"", b"defg"]);
        assert_eq!(parsed.records[0].0, HEADER_LEN);
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
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let err = parse(&bytes).unwrap_err();
        assert_eq!(
            err,
            RecordingError::NewerVersion {
                found: 2,
                supported: 1
            }
        );
        assert!(err.to_string().contains("newer oomreap"), "{err}");
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
