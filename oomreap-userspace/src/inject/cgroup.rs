//! Memory cgroups with a hard limit, for OOM experiments that must never touch the host.
//!
//! [`MemoryCgroup::create`] makes a fresh child of the memory hierarchy, sets its limit, and
//! removes it again on drop. It never writes to a cgroup it did not create.
use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::cgroup::{CgroupError, CgroupVersion, MemoryHierarchy};

/// A memory cgroup we created; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    path: PathBuf,
    version: CgroupVersion,
}

impl MemoryCgroup {
    /// Creates `<hierarchy>/<prefix>-<pid>-<n>` with a hard memory limit and no swap.
    pub fn create(prefix: &str, limit_bytes: u64) -> Result<Self, CgroupError> {
        Self::create_in(&MemoryHierarchy::detect()?, prefix, limit_bytes)
    }

    /// As [`MemoryCgroup::create`], in a given hierarchy.
    pub fn create_in(
        hierarchy: &MemoryHierarchy,
        prefix: &str,
        limit_bytes: u64,
    ) -> Result<Self, CgroupError> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = hierarchy
            .root
            .join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            source,
        })?;
        // From here on, drop removes the directory even if setting the limit fails.
        let cgroup = Self {
            path,
            version: hierarchy.version,
        };
        let limit = limit_bytes.to_string();
        match cgroup.version {
            CgroupVersion::V1 => {
                cgroup.write("memory.limit_in_bytes", &limit)?;
                // With swap accounting, memsw must be capped too or the limit only moves
                // memory to swap. It must not be below the memory limit.
                if cgroup.path.join("memory.memsw.limit_in_bytes").exists() {
                    cgroup.write("memory.memsw.limit_in_bytes", &limit)?;
                }
            }
            CgroupVersion::V2 => {
                cgroup.write("memory.max", &limit)?;
                if cgroup.path.join("memory.swap.max").exists() {
                    cgroup.write("memory.swap.max", "0")?;
                }
            }
        }
        Ok(cgroup)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `name` inside this cgroup with no limit of its own, so its tasks are held by
    /// this one's. Drop it before this one.
    pub fn child(&self, name: &str) -> Result<Self, CgroupError> {
        if self.version == CgroupVersion::V2 {
            // v2 hands the memory controller down only when asked to.
            self.write("cgroup.subtree_control", "+memory")?;
        }
        let path = self.path.join(name);
        std::fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            version: self.version,
        })
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The id the kernel reports for this cgroup (`kernfs_node::id`): the inode number of
    /// its directory, for v1 and v2 alike on 64-bit kernels.
    pub fn id(&self) -> Result<u64, CgroupError> {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&self.path)
            .map(|m| m.ino())
            .map_err(|source| CgroupError::Read {
                path: self.path.clone(),
                source,
            })
    }

    /// Moves process `pid` into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// How many times the OOM killer killed a task of this cgroup or of one inside it.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        oom_kills_below(&self.path, self.version)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.path.join(file);
        std::fs::write(&path, value).map_err(|source| CgroupError::Write {
            path,
            value: value.to_owned(),
            source,
        })
    }
}

/// The OOM kills counted at `dir` and below. v2's `memory.events` already counts the
/// subtree; v1's `memory.oom_control` counts the kills of its own tasks only (the kernel
/// charges a kill to the victim's own cgroup), so its children's are added.
fn oom_kills_below(dir: &Path, version: CgroupVersion) -> Result<u64, CgroupError> {
    let file = match version {
        CgroupVersion::V1 => "memory.oom_control",
        CgroupVersion::V2 => "memory.events",
    };
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::Read {
        path: path.clone(),
        source,
    })?;
    let own = text
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if version == CgroupVersion::V2 {
        return Ok(own);
    }
    let mut total = own;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            total += oom_kills_below(&entry.path(), version)?;
        }
    }
    Ok(total)
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A killed task leaves the cgroup only once it has fully exited; rmdir fails with
        // EBUSY until then, so retry for a while.
        for _ in 0..250 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(err) if err.kind() == ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        log::warn!(
            "could not remove cgroup {}: it still holds processes",
            self.path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_hierarchy_gets_a_limited_child_that_is_removed_on_drop() {
        let root = std::env::temp_dir().join(format!("oomreap-cgroup-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let hierarchy = MemoryHierarchy {
            root: root.clone(),
            version: CgroupVersion::V2,
        };
        let path = {
            let cgroup = MemoryCgroup::create_in(&hierarchy, "t", 64 << 20).unwrap();
            let limit = std::fs::read_to_string(cgroup.path().join("memory.max")).unwrap();
            assert_eq!(limit, (64u64 << 20).to_string());
            // A plain directory cannot be rmdir'ed while it holds files: remove them first,
            // as the kernel does for a real cgroup.
            std::fs::remove_file(cgroup.path().join("memory.max")).unwrap();
            cgroup.path().to_owned()
        };
        assert!(!path.exists(), "cgroup left behind at {}", path.display());
        std::fs::remove_dir(&root).unwrap();
    }
}
