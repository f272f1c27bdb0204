//! The trigger's user stack, from instruction pointers to module, file offset and symbol.
//!
//! blazesym reads the process's /proc/PID/maps, then the symbol table of each mapped file
//! (through /proc/PID/root, so a container's binaries are found too). Reading maps takes
//! the process's mmap_lock: the read is bounded (see `bounded`).
use std::{path::Path, time::Duration};

use blazesym::{
    Pid,
    normalize::{Normalizer, UserMeta},
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Elf, Source},
    },
};

use super::{bounded::BoundedReader, exiting};

/// How long the intake waits for a process's maps and symbols.
const WAIT: Duration = Duration::from_millis(300);

/// One user frame: its module and offset in that file where the process's maps had it, and
/// its symbol where the file's symbol table names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFrame {
    pub address: u64,
    /// The mapped file's path (as the process sees it).
    pub module: Option<String>,
    /// Offset of the address in that file.
    pub offset: Option<u64>,
    /// `function+0xoffset`, demangled.
    pub symbol: Option<String>,
}

/// A user stack resolved, or why it could not be.
pub type UserStack = Result<Vec<UserFrame>, String>;

/// Resolves user stacks off the caller's thread (see `bounded`), with one symbolizer whose
/// parsed symbol tables serve every kill of the same binaries.
pub struct UserStacks(BoundedReader<Symbolizer>);

impl Default for UserStacks {
    fn default() -> Self {
        Self(BoundedReader::new(WAIT, Symbolizer::new))
    }
}

impl UserStacks {
    /// Resolves `addresses` of process `tgid`, waiting at most [`WAIT`].
    pub fn resolve(&mut self, tgid: u32, addresses: &[u64]) -> UserStack {
        // A victim that hit the limit itself is usually exiting by now: its exit holds the
        // mmap_lock while it unmaps, so reading its maps would wait only to find them gone.
        if exiting(tgid) {
            return Err(format!(
                "process {tgid} was exiting before its maps could be read"
            ));
        }
        let owned = addresses.to_vec();
        self.0
            .run(move |symbolizer| resolve_now(symbolizer, tgid, &owned))
    }
}

/// Module and offset of each address from the process's maps, then symbols from each
/// module's file (as the process saw it, through /proc/PID/root, else on our side).
fn resolve_now(symbolizer: &Symbolizer, tgid: u32, addresses: &[u64]) -> UserStack {
    let normalizer = Normalizer::new();
    let normalized = normalizer
        .normalize_user_addrs(Pid::from(tgid), addresses)
        .map_err(|err| gone_or(tgid, format!("cannot read /proc/{tgid}/maps: {err}")))?;
    let frames: Vec<UserFrame> = addresses
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            let elf = normalized.outputs.get(i).and_then(|&(offset, meta)| {
                match normalized.meta.get(meta) {
                    Some(UserMeta::Elf(elf)) => Some((elf.path.clone(), offset)),
                    _ => None,
                }
            });
            let Some((path, offset)) = elf else {
                return UserFrame {
                    address,
                    module: None,
                    offset: None,
                    symbol: None,
                };
            };
            UserFrame {
                address,
                symbol: symbol_at(symbolizer, tgid, &path, offset),
                module: Some(path.display().to_string()),
                offset: Some(offset),
            }
        })
        .collect();
    if frames.iter().all(|f| f.module.is_none()) {
        return Err(gone_or(tgid, "no address in a mapped file".into()));
    }
    Ok(frames)
}

/// Why a process's maps said nothing: most often it had exited (a victim that hit the limit
/// itself is dying as its kill arrives here), which an empty /proc/PID/maps shows.
fn gone_or(tgid: u32, why: String) -> String {
    match std::fs::read_to_string(format!("/proc/{tgid}/maps")) {
        Ok(maps) if !maps.is_empty() => why,
        _ => format!("process {tgid} had exited before its maps could be read"),
    }
}

/// `function+0xoffset` at a file offset of an ELF file, demangled. The file as the process
/// sees it: the same path where it shares our root (so the symbolizer's cache of parsed
/// files serves every process of a binary), else through /proc/PID/root (a container).
fn symbol_at(symbolizer: &Symbolizer, tgid: u32, path: &Path, offset: u64) -> Option<String> {
    let root = format!("/proc/{tgid}/root");
    let file = if same_file(Path::new(&root), Path::new("/proc/self/root")) {
        path.to_owned()
    } else {
        Path::new(&root).join(path.strip_prefix("/").ok()?)
    };
    match symbolizer.symbolize_single(&Source::Elf(Elf::new(file)), Input::FileOffset(offset)) {
        Ok(Symbolized::Sym(sym)) => Some(format!("{}+{:#x}", sym.name, sym.offset)),
        _ => None,
    }
}

/// Both paths lead to the same file (or directory).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_of_ours() -> u64 {
        a_function_of_ours as *const () as u64
    }

    #[test]
    fn our_own_function_is_named_in_our_own_binary() {
        let address = a_function_of_ours() + 1;
        let frames = UserStacks::default()
            .resolve(std::process::id(), &[address])
            .unwrap();
        let frame = &frames[0];
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(frame.module.as_deref(), exe.to_str(), "{frame:?}");
        assert!(frame.offset.is_some(), "{frame:?}");
        let symbol = frame.symbol.as_deref().unwrap_or_default();
        assert!(symbol.contains("a_function_of_ours"), "{frame:?}");
        assert!(symbol.ends_with("+0x1"), "{frame:?}");
    }

    #[test]
    fn a_process_that_is_gone_says_so() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let why = UserStacks::default().resolve(pid, &[0x1000]).unwrap_err();
        assert!(why.contains("maps"), "{why}");
    }
}
