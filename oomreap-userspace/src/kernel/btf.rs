//! Structure layouts from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! aya emits no CO-RE relocations, so offsets the kernel programs use are looked up here and
//! handed to them (see `oomreap_common::layout`).
use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    path::{Path, PathBuf},
};

use btf_rs::{Backend, Btf, Struct, Type};

/// Where the kernel exposes its own BTF.
pub const DEFAULT_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Type-chain depth after which a BTF is treated as malformed (typedefs and modifiers are
/// never nested this deep in a real kernel).
const MAX_CHAIN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("kernel BTF not found at {path}; the kernel was built without CONFIG_DEBUG_INFO_BTF")]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse kernel BTF {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: btf_rs::Error,
    },
    #[error("struct {0} not found in kernel BTF")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member:?} in kernel BTF")]
    NoMember { strukt: String, member: String },
    #[error("struct {strukt} has neither member {first:?} nor {second:?} in kernel BTF")]
    NeitherMember {
        strukt: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("{strukt}.{member} is a bitfield; oomreap reads whole bytes only")]
    Bitfield { strukt: String, member: String },
    #[error("type of {strukt}.{member} is not {expected} in kernel BTF")]
    UnexpectedType {
        strukt: String,
        member: String,
        expected: &'static str,
    },
    #[error("kernel BTF is malformed")]
    Malformed(#[source] btf_rs::Error),
}

/// A member found in a struct: its byte offset and its type, modifiers stripped.
pub struct Member {
    pub offset: u32,
    pub ty: Type,
}

/// The running kernel's BTF.
pub struct KernelBtf {
    btf: Btf,
    path: PathBuf,
    /// Type ids by name, for every name looked up or prefetched so far. Memory-mapped BTF
    /// has no name index: each new name is a scan of all ~150,000 types (about 0.6 ms), and
    /// the layout alone asks for 80 members of 30 types.
    ids: RefCell<HashMap<String, Vec<u32>>>,
    /// Names that cost a scan of their own (not prefetched).
    scans: Cell<usize>,
}

impl KernelBtf {
    /// Opens and parses the BTF at `path`; [`BtfError::Missing`] when there is none.
    pub fn open(path: &Path) -> Result<Self, BtfError> {
        // Memory-mapped and parsed lazily: the kernel's BTF is megabytes, and oomreap looks up
        // a few dozen types (a full parse doubled start-up time and peak memory).
        // Kernels before 6.16 refuse to mmap /sys/kernel/btf/vmlinux (ENODEV): read it then.
        let btf = Btf::from_file_with_backend(path, Backend::Mmap)
            .or_else(|err| match err {
                btf_rs::Error::IO(_) if path.is_file() => {
                    log::debug!("{}: mmap refused ({err}); reading it", path.display());
                    Btf::from_file_with_backend(path, Backend::Cache)
                }
                other => Err(other),
            })
            .map_err(|source| match source {
                btf_rs::Error::IO(io) => BtfError::Missing {
                    path: path.to_owned(),
                    source: io,
                },
                other => BtfError::Parse {
                    path: path.to_owned(),
                    source: other,
                },
            })?;
        Ok(Self {
            btf,
            path: path.to_owned(),
            ids: RefCell::default(),
            scans: Cell::new(0),
        })
    }

    /// Finds all of `names` in one scan of the BTF, so that looking them up later costs
    /// nothing; a name the kernel lacks is remembered as absent.
    pub fn prefetch(&self, names: &[&str]) -> Result<(), BtfError> {
        let mut ids = self.ids.borrow_mut();
        let wanted: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !ids.contains_key(*n))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        if let Some(found) = self.scan_raw(&wanted) {
            ids.extend(found);
            return Ok(());
        }
        let alternatives: Vec<String> = wanted.iter().map(|n| regex::escape(n)).collect();
        let pattern = regex::Regex::new(&format!("^(?:{})$", alternatives.join("|")))
            .expect("escaped literals always form a valid pattern");
        for name in &wanted {
            ids.insert((*name).to_owned(), Vec::new());
        }
        for id in self
            .btf
            .resolve_ids_by_regex(&pattern)
            .map_err(BtfError::Malformed)?
        {
            let ty = self
                .btf
                .resolve_type_by_id(id)
                .map_err(BtfError::Malformed)?;
            if let Some(list) = ids.get_mut(&self.name_of(&ty)) {
                list.push(id);
            }
        }
        Ok(())
    }

    /// `wanted`'s ids from one pass over the raw BTF, memory-mapped again (btf-rs keeps its
    /// map to itself); `None` where the kernel refuses to map it (before 6.16) or the pass
    /// does not add up, and btf-rs's scan is used instead.
    fn scan_raw(&self, wanted: &[&str]) -> Option<HashMap<String, Vec<u32>>> {
        let file = std::fs::File::open(&self.path).ok()?;
        // Private and read-only, as btf-rs maps it: the kernel refuses a shared mapping.
        // SAFETY: the kernel's BTF does not change while it runs; a test file is ours.
        let raw = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.ok()?;
        super::btf_names::ids_by_names(&raw, wanted)
    }

    /// How many names were looked up with a scan of their own, not found by [`prefetch`].
    ///
    /// [`prefetch`]: KernelBtf::prefetch
    pub fn scans(&self) -> usize {
        self.scans.get()
    }

    /// The ids of the types named `name`, from the cache or, the first time, from a scan.
    fn ids_by_name(&self, name: &str) -> Result<Vec<u32>, BtfError> {
        if let Some(ids) = self.ids.borrow().get(name) {
            return Ok(ids.clone());
        }
        self.scans.set(self.scans.get() + 1);
        let ids = self
            .btf
            .resolve_ids_by_name(name)
            .map_err(BtfError::Malformed)?;
        self.ids.borrow_mut().insert(name.to_owned(), ids.clone());
        Ok(ids)
    }

    /// The types named `name`.
    fn types_by_name(&self, name: &str) -> Result<Vec<Type>, BtfError> {
        self.ids_by_name(name)?
            .into_iter()
            .map(|id| self.btf.resolve_type_by_id(id).map_err(BtfError::Malformed))
            .collect()
    }

    /// The id of the typedef or function named `name`, if the kernel has one: what a BTF
    /// attach names as its target.
    pub fn id_of_kind(
        &self,
        name: &str,
        kind: super::attach_btf::TargetKind,
    ) -> Result<Option<u32>, BtfError> {
        use super::attach_btf::TargetKind;
        for id in self.ids_by_name(name)? {
            let ty = self
                .btf
                .resolve_type_by_id(id)
                .map_err(BtfError::Malformed)?;
            match (kind, ty) {
                (TargetKind::Typedef, Type::Typedef(_)) | (TargetKind::Func, Type::Func(_)) => {
                    return Ok(Some(id));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Where this BTF was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The definition (not a forward declaration) of `struct name`.
    pub fn strukt(&self, name: &str) -> Result<Struct, BtfError> {
        self.types_by_name(name)?
            .into_iter()
            .find_map(|ty| match ty {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(self.strukt(name)?.size() as u32)
    }

    /// Byte offset and type of `strukt.member`, looking inside anonymous structs and unions
    /// (`mm_struct` keeps nearly all its members in one).
    pub fn member(&self, strukt: &str, member: &str) -> Result<Member, BtfError> {
        let s = self.strukt(strukt)?;
        let not_found = || BtfError::NoMember {
            strukt: strukt.to_owned(),
            member: member.to_owned(),
        };
        let (bit_offset, ty) = self.find_member(&s, member, 0)?.ok_or_else(not_found)?;
        if bit_offset % 8 != 0 {
            return Err(BtfError::Bitfield {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            });
        }
        Ok(Member {
            offset: bit_offset / 8,
            ty,
        })
    }

    /// Byte offset of `strukt.member`.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        Ok(self.member(strukt, member)?.offset)
    }

    /// Number of arguments the BTF tracepoint `name` passes to a program, or `None` when the
    /// kernel has no such tracepoint. Read from the `btf_trace_<name>` typedef, a pointer to
    /// a function whose first parameter is the tracepoint's private `void *`.
    pub fn tracepoint_arg_count(&self, name: &str) -> Result<Option<usize>, BtfError> {
        let types = self.types_by_name(&tracepoint_typedef(name))?;
        let Some(Type::Typedef(td)) = types.into_iter().next() else {
            return Ok(None);
        };
        let mut ty = self
            .btf
            .resolve_chained_type(&td)
            .map_err(BtfError::Malformed)?;
        for _ in 0..MAX_CHAIN {
            match ty {
                Type::FuncProto(proto) => {
                    return Ok(Some(proto.parameters.len().saturating_sub(1)));
                }
                other => {
                    let Some(bt) = other.as_btf_type() else {
                        return Ok(None);
                    };
                    ty = self
                        .btf
                        .resolve_chained_type(bt)
                        .map_err(BtfError::Malformed)?;
                }
            }
        }
        Ok(None)
    }

    /// The value of enumerator `name` in `enum enum_name`.
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Result<u32, BtfError> {
        let types = self.types_by_name(enum_name)?;
        let not_found = || BtfError::NoMember {
            strukt: format!("enum {enum_name}"),
            member: name.to_owned(),
        };
        let Some(Type::Enum(e)) = types.into_iter().find(|t| matches!(t, Type::Enum(_))) else {
            return Err(not_found());
        };
        e.members
            .iter()
            .find(|m| self.btf.resolve_name(*m).is_ok_and(|n| n == name))
            .map(|m| m.val())
            .ok_or_else(not_found)
    }

    /// Strips typedefs, const, volatile, restrict and type tags.
    pub fn strip(&self, mut ty: Type) -> Result<Type, BtfError> {
        for _ in 0..MAX_CHAIN {
            ty = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t),
                Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                    self.btf.resolve_chained_type(t)
                }
                Type::TypeTag(t) => self.btf.resolve_chained_type(t),
                _ => return Ok(ty),
            }
            .map_err(BtfError::Malformed)?;
        }
        Ok(ty)
    }

    /// The element type and length of an array type.
    pub fn array_element(&self, ty: &Type) -> Result<Option<(Type, usize)>, BtfError> {
        let Type::Array(array) = ty else {
            return Ok(None);
        };
        let element = self
            .btf
            .resolve_chained_type(array)
            .map_err(BtfError::Malformed)?;
        Ok(Some((self.strip(element)?, array.len())))
    }

    /// The name of a named type (empty for anonymous ones).
    pub fn name_of(&self, ty: &Type) -> String {
        ty.as_btf_type()
            .and_then(|bt| self.btf.resolve_name(bt).ok())
            .unwrap_or_default()
    }

    /// Depth-first search for `name` among `s`'s members and those of its anonymous members.
    fn find_member(
        &self,
        s: &Struct,
        name: &str,
        base_bits: u32,
    ) -> Result<Option<(u32, Type)>, BtfError> {
        for m in &s.members {
            let member_name = self.btf.resolve_name(m).unwrap_or_default();
            if member_name == name {
                let ty = self
                    .btf
                    .resolve_chained_type(m)
                    .map_err(BtfError::Malformed)?;
                return Ok(Some((base_bits + m.bit_offset(), self.strip(ty)?)));
            }
            if member_name.is_empty() {
                let ty = self
                    .btf
                    .resolve_chained_type(m)
                    .map_err(BtfError::Malformed)?;
                if let Type::Struct(inner) | Type::Union(inner) = self.strip(ty)?
                    && let Some(found) =
                        self.find_member(&inner, name, base_bits + m.bit_offset())?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
}

/// The typedef the kernel declares for BTF tracepoint `name`: `btf_trace_<name>`.
pub fn tracepoint_typedef(name: &str) -> String {
    format!("btf_trace_{name}")
}

/// The size of a struct or union type, or `None` for other kinds.
pub fn composite_size(ty: &Type) -> Option<u32> {
    match ty {
        Type::Struct(s) | Type::Union(s) => Some(s.size() as u32),
        _ => None,
    }
}

/// Small BTF files made for tests: structs of `int` members, so layout code can be checked
/// against the shapes of kernels this machine does not run.
#[cfg(test)]
pub mod synthetic {
    use std::path::Path;

    use super::{BtfError, KernelBtf};

    /// A BTF holding `int` and each struct of `structs` with its named `int` members, 4 bytes
    /// apart, written to `path` and opened.
    pub fn open(path: &Path, structs: &[(&str, &[&str])]) -> Result<KernelBtf, BtfError> {
        // include/uapi/linux/btf.h: BTF_KIND_INT 1, BTF_KIND_STRUCT 4; strings start with "".
        let mut strings = vec![0u8];
        let mut name = |text: &str| {
            let offset = strings.len() as u32;
            strings.extend_from_slice(text.as_bytes());
            strings.push(0);
            offset
        };
        let mut types: Vec<u32> = vec![name("int"), 1 << 24, 4, 32];
        for (strukt, members) in structs {
            types.extend([
                name(strukt),
                4 << 24 | members.len() as u32,
                4 * members.len() as u32,
            ]);
            for (i, member) in members.iter().enumerate() {
                types.extend([name(member), 1, 32 * i as u32]);
            }
        }
        let types: Vec<u8> = types.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let file = crate::kernel::attach_btf::btf_blob(&types, &strings);
        std::fs::write(path, file).expect("write the test BTF");
        KernelBtf::open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = KernelBtf::open(Path::new("/nonexistent/vmlinux"))
            .err()
            .expect("opening a missing file must fail");
        assert!(matches!(err, BtfError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
    }

    #[test]
    fn garbage_btf_is_a_parse_error() {
        let dir = std::env::temp_dir().join(format!("oomreap-btf-test-{}", std::process::id()));
        std::fs::write(&dir, b"not btf at all").unwrap();
        let err = KernelBtf::open(&dir).err().expect("garbage must not parse");
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(err, BtfError::Parse { .. }), "{err:?}");
    }

    /// Runs against this machine's own BTF, where there is one.
    #[test]
    fn finds_members_inside_anonymous_structs() {
        let path = Path::new(DEFAULT_BTF_PATH);
        if !path.exists() {
            eprintln!("skipped: {DEFAULT_BTF_PATH} does not exist on this machine");
            return;
        }
        let btf = KernelBtf::open(path).unwrap();
        // mm_struct keeps its members in an anonymous struct: total_vm is not at offset 0
        // and must be found through it.
        let total_vm = btf.member_offset("mm_struct", "total_vm").unwrap();
        assert!(total_vm > 0);
        assert!(btf.member_offset("task_struct", "pid").unwrap() > 0);
        let err = btf
            .member_offset("task_struct", "no_such_member")
            .unwrap_err();
        assert!(err.to_string().contains("no_such_member"), "{err}");
        assert_eq!(
            btf.tracepoint_arg_count("no_such_tracepoint").unwrap(),
            None
        );
    }
}
