//! The memory cgroup hierarchy: cgroup v1's memory controller or cgroup v2, whichever has
//! memory control here. oomreap reads it; only `inject` creates cgroups in it
//! ([`crate::inject::cgroup`]).
use std::path::{Path, PathBuf};

/// The cgroup v1 memory hierarchy's usual mount point.
pub const V1_MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no memory cgroup controller found: neither {V1_MEMORY_ROOT} (v1) nor a cgroup2 mount \
         with the memory controller enabled for children"
    )]
    NoMemoryController,
    #[error("failed to create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The memory cgroup hierarchy: where cgroups are found (and where `inject` makes its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryHierarchy {
    pub root: PathBuf,
    pub version: CgroupVersion,
}

impl MemoryHierarchy {
    /// Finds a hierarchy with memory control: cgroup v1's memory controller first (its
    /// presence means v2 cannot have it), then the cgroup2 mount, if memory is enabled for
    /// its children.
    pub fn detect() -> Result<Self, CgroupError> {
        let v1 = Path::new(V1_MEMORY_ROOT);
        if v1.join("memory.limit_in_bytes").exists() {
            return Ok(Self {
                root: v1.to_owned(),
                version: CgroupVersion::V1,
            });
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        cgroup2_mounts(&mountinfo)
            .into_iter()
            .find(|root| {
                std::fs::read_to_string(root.join("cgroup.subtree_control"))
                    .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"))
            })
            .map(|root| Self {
                root,
                version: CgroupVersion::V2,
            })
            .ok_or(CgroupError::NoMemoryController)
    }
}

/// Mount points of cgroup2 file systems in a `/proc/self/mountinfo` text.
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    crate::kernel::mountinfo::mounts(mountinfo)
        .filter(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mounts() {
        let mountinfo = "\
25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw
35 25 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 25 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mounts(mountinfo),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
    }
}
