//! A minimal ustar writer for the image's layer and its OCI archive: regular files and
//! folders owned by root, every timestamp the same, so the same inputs give the same bytes.
use anyhow::bail;

pub struct Tar {
    bytes: Vec<u8>,
    mtime: u64,
}

const BLOCK: usize = 512;

impl Tar {
    pub fn new(mtime: u64) -> Self {
        Self {
            bytes: Vec::new(),
            mtime,
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> anyhow::Result<()> {
        self.header(&format!("{}/", path.trim_end_matches('/')), mode, 0, b'5')
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> anyhow::Result<()> {
        self.header(path, mode, data.len() as u64, b'0')?;
        self.bytes.extend_from_slice(data);
        let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.resize(self.bytes.len() + padding, 0);
        Ok(())
    }

    /// The archive, closed by its two empty blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        self.bytes
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8) -> anyhow::Result<()> {
        if path.len() > 100 || !path.is_ascii() {
            bail!("tar: {path:?} is not a short ASCII name");
        }
        let mut h = [0u8; BLOCK];
        let mut put = |at: usize, field: &[u8]| h[at..at + field.len()].copy_from_slice(field);
        put(0, path.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{size:011o}\0").as_bytes());
        put(136, format!("{:011o}\0", self.mtime).as_bytes());
        put(148, b"        ");
        put(156, &[kind]);
        put(257, b"ustar\x0000");
        put(265, b"root");
        put(297, b"root");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&h);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU tar, where the machine has it, reads back what we wrote.
    #[test]
    fn gnu_tar_lists_what_we_wrote() {
        let mut tar = Tar::new(1_700_000_000);
        tar.dir("usr", 0o755).expect("dir");
        tar.file("usr/hello", 0o644, b"hello\n").expect("file");
        let bytes = tar.finish();
        assert_eq!(bytes.len() % BLOCK, 0);
        let path = std::env::temp_dir().join(format!("xtask-tar-{}.tar", std::process::id()));
        std::fs::write(&path, &bytes).expect("write");
        let listing = std::process::Command::new("tar")
            .args(["-tvf"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let Ok(listing) = listing else {
            eprintln!("skipped gnu_tar_lists_what_we_wrote: no tar on this machine");
            return;
        };
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        assert!(
            text.contains("drwxr-xr-x root/root         0 2023-11-14"),
            "{text}"
        );
        assert!(
            text.contains("-rw-r--r-- root/root         6 2023-11-14"),
            "{text}"
        );
        assert!(text.contains("usr/hello"), "{text}");
    }

    #[test]
    fn long_names_are_refused() {
        let mut tar = Tar::new(0);
        assert!(tar.file(&"x".repeat(101), 0o644, b"").is_err());
    }
}
