//! Type ids by name in one pass over the raw BTF, names compared as bytes.
//!
//! btf-rs finds names by regex: it validates each of the ~150,000 names as UTF-8 and runs the
//! regex on it, about 5 ms of every start-up. Here each type record is stepped over by its
//! kind's size, and a name is compared only when its first byte could start a wanted one.
use std::collections::HashMap;

/// BTF's magic number, in the byte order of the machine that wrote it.
const MAGIC: u16 = 0xeb9f;

/// The ids of every type named as in `wanted`, each name with its (possibly empty) list;
/// `None` if `raw` is not base BTF in this machine's byte order, or its type records do not
/// add up (the caller then scans the way btf-rs does).
pub fn ids_by_names(raw: &[u8], wanted: &[&str]) -> Option<HashMap<String, Vec<u32>>> {
    let u32_at = |at: usize| {
        raw.get(at..at.checked_add(4)?)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    if raw.get(..2)? != MAGIC.to_ne_bytes() {
        return None;
    }
    let header = u32_at(4)? as usize;
    let section = |off: usize, len: usize| {
        let start = header.checked_add(u32_at(off)? as usize)?;
        let end = start.checked_add(u32_at(len)? as usize)?;
        (end <= raw.len()).then_some(start..end)
    };
    let types = section(8, 12)?;
    let strings = section(16, 20)?;
    // Wanted names by first byte: most type names are ruled out by one table look-up, the
    // rest compared with the few wanted names that start alike (no hashing per name).
    let mut by_first: Vec<Vec<&str>> = vec![Vec::new(); 256];
    for name in wanted {
        if let Some(&b) = name.as_bytes().first() {
            by_first[usize::from(b)].push(name);
        }
    }
    let longest = wanted.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut found: HashMap<String, Vec<u32>> = wanted
        .iter()
        .map(|n| ((*n).to_owned(), Vec::new()))
        .collect();
    let (mut at, mut id) = (types.start, 1u32);
    while at < types.end {
        let name_off = u32_at(at)? as usize;
        let info = u32_at(at + 4)?;
        if name_off != 0 {
            let start = strings.start.checked_add(name_off)?;
            let tail = raw.get(start..strings.end)?;
            let alike = tail.first().map_or(&[][..], |&b| &by_first[usize::from(b)]);
            if !alike.is_empty() {
                let window = &tail[..tail.len().min(longest + 1)];
                if let Some(nul) = window.iter().position(|&b| b == 0)
                    && let Some(name) = alike.iter().find(|n| n.as_bytes() == &window[..nul])
                    && let Some(ids) = found.get_mut(*name)
                {
                    ids.push(id);
                }
            }
        }
        at = at.checked_add(12 + trailing_bytes(info)?)?;
        id += 1;
    }
    (at == types.end).then_some(found)
}

/// The bytes that follow a type's 12-byte record, by its kind (`info` bits 24–28) and count
/// (`vlen`, bits 0–15), as include/uapi/linux/btf.h lays them out.
fn trailing_bytes(info: u32) -> Option<usize> {
    let vlen = (info & 0xffff) as usize;
    Some(match (info >> 24) & 0x1f {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: nothing.
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // ARRAY: struct btf_array.
        3 => 12,
        // STRUCT, UNION (btf_member), DATASEC (btf_var_secinfo), ENUM64 (btf_enum64).
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM (btf_enum), FUNC_PROTO (btf_param).
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF of `records` (name offset, info, trailing u32s) over `strings`.
    fn btf(records: &[(u32, u32, &[u32])], strings: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        for (name, info, rest) in records {
            for word in [*name, *info, 0].iter().chain(rest.iter()) {
                types.extend_from_slice(&word.to_ne_bytes());
            }
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&MAGIC.to_ne_bytes());
        raw.extend_from_slice(&[1, 0]);
        for word in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            raw.extend_from_slice(&word.to_ne_bytes());
        }
        raw.extend_from_slice(&types);
        raw.extend_from_slice(strings);
        raw
    }

    const STRUCT: u32 = 4 << 24;
    const TYPEDEF: u32 = 8 << 24;
    const INT: u32 = 1 << 24;

    #[test]
    fn finds_names_across_records_of_every_size() {
        // 1: int "a"; 2: struct "task" with 2 members; 3: typedef "tas"; 4: anonymous
        // struct; 5: struct "task" again (a second definition).
        let strings = b"\0a\0task\0tas\0m\0";
        let raw = btf(
            &[
                (1, INT, &[32]),
                (3, STRUCT | 2, &[1, 1, 0, 7, 1, 32]),
                (8, TYPEDEF, &[]),
                (0, STRUCT, &[]),
                (3, STRUCT, &[]),
            ],
            strings,
        );
        let found = ids_by_names(&raw, &["task", "tas", "absent"]).unwrap();
        assert_eq!(found["task"], [2, 5]);
        assert_eq!(found["tas"], [3]);
        assert!(found["absent"].is_empty());
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let raw = btf(&[(1, INT, &[32])], b"\0a\0");
        assert!(
            ids_by_names(&raw[..raw.len() - 6], &["a"]).is_none(),
            "cut short"
        );
        let unknown_kind = btf(&[(1, 31 << 24, &[])], b"\0a\0");
        assert!(ids_by_names(&unknown_kind, &["a"]).is_none());
        assert!(ids_by_names(b"not btf at all, no", &["a"]).is_none());
    }

    #[test]
    fn agrees_with_btf_rs_on_this_kernel() {
        let path = std::path::Path::new(super::super::btf::DEFAULT_BTF_PATH);
        let Ok(raw) = std::fs::read(path) else {
            eprintln!("skipped: no kernel BTF at {}", path.display());
            return;
        };
        let names = [
            "task_struct",
            "mm_struct",
            "btf_trace_mark_victim",
            "no_such_type_x",
        ];
        let found = ids_by_names(&raw, &names).expect("the kernel's BTF adds up");
        let btf = btf_rs::Btf::from_bytes(&raw).unwrap();
        for name in names {
            assert_eq!(
                found[name],
                btf.resolve_ids_by_name(name).unwrap(),
                "{name}"
            );
        }
    }
}
