//! The guest's initramfs: a `newc` cpio archive (the format the kernel unpacks) holding static
//! busybox, the init script, oomreap, the test binaries and the shared libraries they need.
//! Concatenated archives are one initramfs to the kernel, so each kernel's own extras (the
//! 6.1 fuse.ko) go in a small second archive after the common one.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use anyhow::{Context as _, bail};

/// A cpio archive being built in memory.
#[derive(Default)]
pub struct Archive {
    out: Vec<u8>,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
    next_inode: u32,
    /// The objcopy that reads the binaries' ELF machine (`None`: the host's).
    objcopy: Option<&'static str>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl Archive {
    /// An archive whose binaries `objcopy` strips (another architecture's own).
    pub fn stripped_by(objcopy: &'static str) -> Self {
        Self {
            objcopy: Some(objcopy),
            ..Self::default()
        }
    }

    /// Adds a directory and its missing parents.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_owned());
        self.entry(path, S_IFDIR | 0o755, &[]);
    }

    /// Adds a file (and its parent directories).
    pub fn file(&mut self, path: &str, contents: &[u8], mode: u32) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.files.insert(path.to_owned());
        self.entry(path, S_IFREG | mode, contents);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(path, S_IFLNK | 0o777, target.as_bytes());
    }

    /// Adds a host file at the same path in the guest; `strip` drops debug sections first
    /// (the test binaries carry hundreds of MiB of them).
    pub fn host_file(&mut self, host: &Path, guest: &str, strip: bool) -> anyhow::Result<()> {
        let contents = if strip {
            // Workers strip at once (each kernel's own extras): one file name each.
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let stripped =
                std::env::temp_dir().join(format!("oomreap-vm-strip-{}-{n}", std::process::id()));
            let objcopy = self.objcopy.unwrap_or("objcopy");
            let status = Command::new(objcopy)
                .arg("--strip-debug")
                .arg(host)
                .arg(&stripped)
                .status()
                .with_context(|| format!("failed to run {objcopy}"))?;
            if !status.success() {
                bail!("objcopy --strip-debug {} failed", host.display());
            }
            let bytes = std::fs::read(&stripped);
            let _ = std::fs::remove_file(&stripped);
            bytes
        } else {
            std::fs::read(host)
        }
        .with_context(|| format!("failed to read {}", host.display()))?;
        self.file(guest, &contents, 0o755);
        Ok(())
    }

    /// Adds the shared libraries `binary` loads (as `ldd` lists them), at their own paths.
    pub fn libraries_of(&mut self, binary: &Path) -> anyhow::Result<()> {
        for library in shared_libraries(binary)? {
            let guest = library.to_string_lossy().into_owned();
            if !self.has_file(&guest) {
                self.host_file(&library, &guest, false)?;
            }
        }
        Ok(())
    }

    fn has_file(&self, path: &str) -> bool {
        self.files.contains(path.trim_start_matches('/'))
    }

    /// The archive, closed with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.next_inode += 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

/// A kernel module's bytes, uncompressed (Debian ships `.ko.xz`; every kernel loads a
/// plain `.ko`).
pub fn module_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.extension().is_none_or(|e| e != "xz") {
        return std::fs::read(path).with_context(|| format!("failed to read {}", path.display()));
    }
    let out = Command::new("xz")
        .arg("-dc")
        .arg(path)
        .output()
        .context("failed to run xz")?;
    if !out.status.success() {
        bail!("xz -dc {} failed", path.display());
    }
    Ok(out.stdout)
}

/// The libraries `ldd` resolves for `binary`, including the dynamic loader.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("failed to run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_parents_come_first() {
        let mut archive = Archive::default();
        archive.file("/a/b/c", b"hello", 0o644);
        archive.symlink("/bin/sh", "busybox");
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let order: Vec<usize> = [
            "a\0",
            "a/b\0",
            "a/b/c\0",
            "bin\0",
            "bin/sh\0",
            "TRAILER!!!\0",
        ]
        .iter()
        .map(|name| text.find(name).expect(name))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // Every header starts at a multiple of four.
        let mut offset = 0;
        while offset < bytes.len() {
            assert_eq!(&bytes[offset..offset + 6], b"070701");
            let field = |i: usize| {
                let start = offset + 6 + i * 8;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16)
                    .unwrap() as usize
            };
            let (size, name) = (field(6), field(11));
            let data = (offset + 110 + name).next_multiple_of(4);
            offset = (data + size).next_multiple_of(4);
        }
        assert_eq!(offset, bytes.len());
    }
}
