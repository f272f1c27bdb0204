//! The BTF aya attaches with: the kernel's ids of what oomreap attaches to, and nothing else.
//!
//! aya's BTF tracepoint and fentry/fexit loaders take a parsed `aya::Btf` for one thing: the
//! id of the typedef `btf_trace_<event>` or of the function, which they pass to the kernel
//! as the attach target. Parsing the kernel's megabytes of BTF whole for that took 42 ms of
//! every start-up, and the memory-mapped BTF the layout reads already knows those ids. So
//! oomreap hands aya a BTF of its own making: each wanted name at its kernel id, and a
//! nameless `void *` at every other id below the highest, so that ids line up. aya never sends
//! this BTF to the kernel.
use super::btf::{BtfError, KernelBtf};

/// What kind of BTF type an attach target is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `btf_trace_<event>`, for a BTF tracepoint.
    Typedef,
    /// A kernel function, for fentry/fexit.
    Func,
}

impl TargetKind {
    /// `BTF_KIND_TYPEDEF` and `BTF_KIND_FUNC` in include/uapi/linux/btf.h.
    const fn btf_kind(self) -> u32 {
        match self {
            Self::Typedef => 8,
            Self::Func => 12,
        }
    }
}

/// `BTF_KIND_PTR`: the placeholder, a `void *` with no name.
const PLACEHOLDER_KIND: u32 = 2;

/// The attach targets this kernel has, by id: small, kept from planning to attaching, where
/// [`AttachTargets::btf`] builds aya's BTF only once the loader's own (whole) parse is gone.
///
/// One BTF per kind, each only as long as its own highest id: the tracepoints' typedefs sit
/// low in the kernel's BTF (below 17,000 on 6.18), the functions far higher (`oom_kill_process`
/// near 100,000, 7 MiB of aya's 72-byte placeholders), and the functions' BTF is built only
/// once an fentry program can load at all (`capture::function_btf`).
#[derive(Clone, Debug, Default)]
pub struct AttachTargets(Vec<(u32, String, TargetKind)>);

impl AttachTargets {
    /// Looks each of `targets` up in `btf`; a name the kernel lacks is left out, so aya
    /// reports it unknown when a hook asks for it, as it would with the whole BTF.
    pub fn find(btf: &KernelBtf, targets: &[(&str, TargetKind)]) -> Result<Self, BtfError> {
        let mut found = Vec::new();
        for &(name, kind) in targets {
            if let Some(id) = btf.id_of_kind(name, kind)? {
                found.push((id, name.to_owned(), kind));
            }
        }
        found.sort_by_key(|t| t.0);
        Ok(Self(found))
    }

    /// The BTF for aya's loaders of `kind`'s targets: theirs alone, at their ids.
    pub fn btf(&self, kind: TargetKind) -> Result<aya::Btf, aya::BtfError> {
        let targets: Vec<_> = self.0.iter().filter(|t| t.2 == kind).cloned().collect();
        aya::Btf::parse(&encode(&targets), aya::Endianness::default())
    }

    /// The kernel's id of `name` of `kind`, if it has one.
    pub fn id_of(&self, name: &str, kind: TargetKind) -> Option<u32> {
        self.0
            .iter()
            .find(|t| t.1 == name && t.2 == kind)
            .map(|t| t.0)
    }
}

/// The raw BTF (header, types, strings) with each of `targets` (id, name, kind; sorted by
/// id) at its id.
fn encode(targets: &[(u32, String, TargetKind)]) -> Vec<u8> {
    let max_id = targets.last().map_or(0, |t| t.0);
    let mut strings = vec![0u8];
    let mut types = Vec::with_capacity(max_id as usize * 12);
    let mut next = targets.iter().peekable();
    for id in 1..=max_id {
        let (name_off, kind) = match next.next_if(|t| t.0 == id) {
            Some((_, name, kind)) => {
                let offset = strings.len() as u32;
                strings.extend_from_slice(name.as_bytes());
                strings.push(0);
                // Skip any duplicate of this id.
                while next.next_if(|t| t.0 == id).is_some() {}
                (offset, kind.btf_kind())
            }
            None => (0, PLACEHOLDER_KIND),
        };
        // `struct btf_type { name_off, info (kind << 24), type }`; no trailing data for
        // pointers, typedefs and functions (a function's linkage, static, is info's vlen 0).
        for word in [name_off, kind << 24, 0] {
            types.extend_from_slice(&word.to_ne_bytes());
        }
    }
    btf_blob(&types, &strings)
}

/// A raw BTF file: the header (native byte order), then `types` and `strings` as they are.
pub(crate) fn btf_blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(24 + types.len() + strings.len());
    blob.extend_from_slice(&0xeb9f_u16.to_ne_bytes()); // magic
    blob.push(1); // version
    blob.push(0); // flags
    for word in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        // hdr_len, type_off, type_len, str_off, str_len
        blob.extend_from_slice(&word.to_ne_bytes());
    }
    blob.extend_from_slice(types);
    blob.extend_from_slice(strings);
    blob
}

#[cfg(test)]
mod tests {
    use aya_obj::btf::BtfKind;

    use super::*;
    use crate::kernel::btf::DEFAULT_BTF_PATH;

    fn parsed(targets: &[(u32, &str, TargetKind)]) -> aya::Btf {
        let mut targets: Vec<(u32, String, TargetKind)> = targets
            .iter()
            .map(|&(id, name, kind)| (id, name.to_owned(), kind))
            .collect();
        targets.sort_by_key(|t| t.0);
        aya::Btf::parse(&encode(&targets), aya::Endianness::default()).expect("parses")
    }

    #[test]
    fn each_name_is_at_its_id() {
        let btf = parsed(&[
            (9, "oom_kill_process", TargetKind::Func),
            (5, "btf_trace_mark_victim", TargetKind::Typedef),
        ]);
        assert_eq!(
            btf.id_by_type_name_kind("btf_trace_mark_victim", BtfKind::Typedef)
                .unwrap(),
            5
        );
        assert_eq!(
            btf.id_by_type_name_kind("oom_kill_process", BtfKind::Func)
                .unwrap(),
            9
        );
        // The kind matters, as in the kernel's BTF; an absent name is an error.
        assert!(
            btf.id_by_type_name_kind("oom_kill_process", BtfKind::Typedef)
                .is_err()
        );
        assert!(
            btf.id_by_type_name_kind("btf_trace_wake_reaper", BtfKind::Typedef)
                .is_err()
        );
    }

    /// Each kind's BTF holds its own targets, and is only as long as the highest of them.
    #[test]
    fn each_kind_has_a_btf_of_its_own() {
        let found = AttachTargets(vec![
            (5, "btf_trace_mark_victim".into(), TargetKind::Typedef),
            (900, "oom_kill_process".into(), TargetKind::Func),
        ]);
        let typedefs = found.btf(TargetKind::Typedef).unwrap();
        assert_eq!(
            typedefs
                .id_by_type_name_kind("btf_trace_mark_victim", BtfKind::Typedef)
                .unwrap(),
            5
        );
        assert!(
            typedefs
                .id_by_type_name_kind("oom_kill_process", BtfKind::Func)
                .is_err()
        );
        let functions = found.btf(TargetKind::Func).unwrap();
        assert_eq!(
            functions
                .id_by_type_name_kind("oom_kill_process", BtfKind::Func)
                .unwrap(),
            900
        );
        assert_eq!(found.id_of("oom_kill_process", TargetKind::Func), Some(900));
        assert_eq!(found.id_of("oom_kill_process", TargetKind::Typedef), None);
        // The typedefs' BTF stops at id 5: the header and five 12-byte types.
        let encoded = encode(&[(5, "btf_trace_mark_victim".into(), TargetKind::Typedef)]);
        assert_eq!(
            encoded.len(),
            24 + 5 * 12 + "\0btf_trace_mark_victim\0".len()
        );
    }

    #[test]
    fn no_target_is_an_empty_btf() {
        let btf = parsed(&[]);
        assert!(btf.id_by_type_name_kind("anything", BtfKind::Func).is_err());
    }

    /// On this kernel, every id aya would find in the whole BTF is the one it finds in ours.
    #[test]
    fn ids_match_the_kernels_whole_btf() {
        let path = std::path::Path::new(DEFAULT_BTF_PATH);
        if !path.exists() {
            eprintln!("skipped: {DEFAULT_BTF_PATH} does not exist on this machine");
            return;
        }
        let targets = [
            ("btf_trace_mark_victim", TargetKind::Typedef),
            ("btf_trace_mmap_lock_acquire_returned", TargetKind::Typedef),
            ("btf_trace_exit_mmap", TargetKind::Typedef),
            ("__oom_reap_task_mm", TargetKind::Func),
            ("oom_kill_process", TargetKind::Func),
        ];
        let kernel = KernelBtf::open(path).unwrap();
        let found = AttachTargets::find(&kernel, &targets).unwrap();
        let whole = aya::Btf::parse_file(path, aya::Endianness::default()).unwrap();
        for (name, kind) in targets {
            let ours = found.btf(kind).unwrap();
            let aya_kind = match kind {
                TargetKind::Typedef => BtfKind::Typedef,
                TargetKind::Func => BtfKind::Func,
            };
            let id = whole.id_by_type_name_kind(name, aya_kind).unwrap();
            assert_eq!(
                ours.id_by_type_name_kind(name, aya_kind).unwrap(),
                id,
                "{name}"
            );
            assert_eq!(found.id_of(name, kind), Some(id), "{name}");
        }
    }
}
