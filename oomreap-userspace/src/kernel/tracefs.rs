//! tracefs: where it is mounted, which tracepoints exist, and their record formats.
use std::path::{Path, PathBuf};

/// Where tracefs is normally mounted, newest convention first.
pub const TRACEFS_CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted; mount it with `mount -t tracefs nodev /sys/kernel/tracing`")]
    NotMounted,
    #[error("tracepoint {category}:{name} does not exist on this kernel (no {path})")]
    TracepointMissing {
        category: String,
        name: String,
        path: PathBuf,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed format file {path}: line {line:?}")]
    Malformed { path: PathBuf, line: String },
}

/// Returns the first mounted tracefs among `candidates` (one whose `events` folder exists).
pub fn find(candidates: &[&str]) -> Result<PathBuf, TracefsError> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("events").is_dir())
        .ok_or(TracefsError::NotMounted)
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatField {
    /// The C declaration without the name, e.g. `unsigned long` or `__data_loc char[]`.
    pub c_type: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// The fields of a tracepoint record, from its `format` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TracepointFormat {
    pub fields: Vec<FormatField>,
}

impl TracepointFormat {
    /// The field called `name`, if the record has one.
    pub fn field(&self, name: &str) -> Option<&FormatField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Reads `events/<category>/<name>/format` under `tracefs`.
pub fn read_format(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> Result<TracepointFormat, TracefsError> {
    let dir = tracefs.join("events").join(category).join(name);
    if !dir.is_dir() {
        return Err(TracefsError::TracepointMissing {
            category: category.to_owned(),
            name: name.to_owned(),
            path: dir,
        });
    }
    let path = dir.join("format");
    let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Read {
        path: path.clone(),
        source,
    })?;
    parse_format(&text).map_err(|line| TracefsError::Malformed { path, line })
}

/// Parses a tracefs `format` file; on failure returns the offending line.
///
/// Field lines look like `\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;`.
pub fn parse_format(text: &str) -> Result<TracepointFormat, String> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let Some(rest) = trimmed.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or_default();
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        let (Some(offset), Some(size), Some((c_type, name))) = (offset, size, split_decl(decl))
        else {
            return Err(line.to_owned());
        };
        fields.push(FormatField {
            c_type,
            name,
            offset,
            size,
        });
    }
    Ok(TracepointFormat { fields })
}

/// Splits `unsigned long total_vm` or `__data_loc char[] comm` or `char comm[16]` into type and
/// name.
fn split_decl(decl: &str) -> Option<(String, String)> {
    let (c_type, name) = decl.rsplit_once(' ')?;
    let (name, array) = match name.find('[') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    if name.is_empty() {
        return None;
    }
    Some((format!("{}{array}", c_type.trim()), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `oom:mark_victim` format of a 6.18 kernel.
    const MARK_VICTIM_6_18: &str = "name: mark_victim
ID: 466
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;
\tfield:uid_t uid;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned long pgtables;\toffset:56;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

    #[test]
    fn parses_the_mark_victim_format() {
        let format = parse_format(MARK_VICTIM_6_18).unwrap();
        assert_eq!(format.fields.len(), 13);
        let comm = format.field("comm").unwrap();
        assert_eq!(comm.c_type, "__data_loc char[]");
        assert_eq!((comm.offset, comm.size), (12, 4));
        let adj = format.field("oom_score_adj").unwrap();
        assert_eq!(
            (adj.c_type.as_str(), adj.offset, adj.size),
            ("short", 64, 2)
        );
        assert!(format.field("nonexistent").is_none());
    }

    #[test]
    fn fixed_arrays_keep_their_brackets_in_the_type() {
        let format =
            parse_format("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n").unwrap();
        assert_eq!(format.fields[0].name, "comm");
        assert_eq!(format.fields[0].c_type, "char[16]");
    }

    #[test]
    fn a_malformed_field_line_is_reported() {
        let line = parse_format("\tfield:int pid;\toffset:eight;\tsize:4;\n").unwrap_err();
        assert!(line.contains("offset:eight"), "{line}");
    }

    #[test]
    fn tracefs_not_mounted_says_how_to_mount_it() {
        let empty = std::env::temp_dir().join(format!("oomreap-notracefs-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = find(&[empty.to_str().unwrap()]).unwrap_err();
        std::fs::remove_dir(&empty).unwrap();
        assert!(err.to_string().contains("mount -t tracefs"), "{err}");
    }

    #[test]
    fn a_missing_tracepoint_is_named() {
        let root = std::env::temp_dir().join(format!("oomreap-tracefs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("events/oom")).unwrap();
        let err = read_format(&root, "oom", "mark_victim").unwrap_err();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(err.to_string().contains("oom:mark_victim"), "{err}");
    }
}
