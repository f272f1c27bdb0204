//! Best-effort context from /proc and /sys for what the kernel events name by number: memory
//! cgroup ids become paths (and Kubernetes pods), notifier callbacks become symbols, lock
//! holders get their kernel stacks. Front ends use it; the tracker never does, so it stays
//! pure. Every lookup may fail (the task exited, no root, no kallsyms) and says so.
mod bounded;
mod candidates;
pub mod memory;
mod pods;
mod user_stack;
mod vmas;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

pub use pods::{PodDirectory, PodIdentity};
pub use user_stack::{UserFrame, UserStack, UserStacks};

use crate::{
    cgroup::MemoryHierarchy,
    tracker::{VictimId, VictimVmas},
};

/// How many folders a cgroup id search visits at most, so a huge hierarchy cannot stall us.
const MAX_CGROUP_DIRS: usize = 100_000;

/// Resolved cgroup ids kept; the cache starts over beyond this.
const MAX_CACHED_CGROUPS: usize = 4096;

/// Reads from /proc; a seam so tests can inject failures.
pub trait ProcSource {
    /// `/proc/PID/stack` of a task.
    fn stack(&self, pid: u32) -> std::io::Result<String>;
    /// `/proc/kallsyms`.
    fn kallsyms(&self) -> std::io::Result<String>;
}

/// The real /proc.
pub struct Proc;

impl ProcSource for Proc {
    fn stack(&self, pid: u32) -> std::io::Result<String> {
        if let Some(why) = crate::faults::stacks_unreadable() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            ));
        }
        std::fs::read_to_string(format!("/proc/{pid}/stack"))
    }

    fn kallsyms(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/kallsyms")
    }
}

/// A memory cgroup, resolved from its kernel id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Path relative to the hierarchy's root, starting with `/`.
    pub path: String,
    /// Kubernetes pod UID, when the path has one.
    pub pod_uid: Option<String>,
    /// Container id, when the path has one.
    pub container_id: Option<String>,
    /// Namespace, pod and container names, when kubelet's log folders know the pod.
    pub pod: Option<PodIdentity>,
}

impl CgroupInfo {
    /// How people see it: `namespace/pod/container` for a known pod, else the pod's uid, else
    /// the path.
    pub fn display_name(&self) -> String {
        match (&self.pod, &self.pod_uid) {
            (Some(p), _) => match &p.container {
                Some(container) => format!("{}/{}/{container}", p.namespace, p.pod),
                None => format!("{}/{}", p.namespace, p.pod),
            },
            (None, Some(uid)) => format!("pod {uid}"),
            (None, None) => self.path.clone(),
        }
    }
}

/// A kernel stack, or why there is none.
pub type Stack = Result<Vec<String>, String>;

/// Caches lookups for the life of a front end.
pub struct Enricher<P: ProcSource = Proc> {
    proc: P,
    hierarchy: Option<MemoryHierarchy>,
    pods: PodDirectory,
    cgroups: HashMap<u64, Option<CgroupInfo>>,
    symbols: Option<Result<HashMap<u64, String>, String>>,
    user_stacks: UserStacks,
    vmas: vmas::VmaReader,
}

impl Enricher<Proc> {
    /// An enricher over the real /proc and this machine's memory cgroup hierarchy.
    pub fn live() -> Self {
        let hierarchy = if crate::faults::cgroups_unresolved().is_some() {
            None
        } else {
            MemoryHierarchy::detect().ok()
        };
        Self::new(Proc, hierarchy)
    }
}

impl<P: ProcSource> Enricher<P> {
    pub fn new(proc: P, hierarchy: Option<MemoryHierarchy>) -> Self {
        Self {
            proc,
            hierarchy,
            pods: PodDirectory::from_env(),
            cgroups: HashMap::new(),
            symbols: None,
            user_stacks: UserStacks::default(),
            vmas: vmas::VmaReader::default(),
        }
    }

    /// Asks for victim `id`'s mappings by class (process `tgid`, killed at `killed_at_ns`),
    /// read off the caller's thread (see `vmas`); false if they will not be read.
    pub fn ask_vmas(&mut self, id: VictimId, tgid: u32, killed_at_ns: u64) -> bool {
        self.vmas.ask(id, tgid, killed_at_ns)
    }

    /// The mappings read since the last call.
    pub fn vmas_read(&mut self) -> Vec<(VictimId, VictimVmas)> {
        self.vmas.answers()
    }

    /// A user stack of process `tgid` as modules, offsets and symbols (see `user_stack`).
    pub fn user_stack(&mut self, tgid: u32, addresses: &[u64]) -> UserStack {
        self.user_stacks.resolve(tgid, addresses)
    }

    /// The memory cgroup with kernel id `id` (its directory's inode number), if found.
    pub fn cgroup(&mut self, id: u64) -> Option<&CgroupInfo> {
        if !self.cgroups.contains_key(&id) {
            // Cgroups come and go (a pod each): a long-running exporter must not remember
            // every one it ever saw.
            if self.cgroups.len() >= MAX_CACHED_CGROUPS {
                self.cgroups.clear();
            }
            let pods = &mut self.pods;
            let found = self
                .hierarchy
                .as_ref()
                .and_then(|h| find_cgroup(&h.root, id))
                .map(|path| {
                    let mut info = cgroup_info(&path);
                    info.pod = info
                        .pod_uid
                        .as_deref()
                        .and_then(|uid| pods.lookup(uid, info.container_id.as_deref()));
                    info
                });
            self.cgroups.insert(id, found);
        }
        self.cgroups.get(&id).and_then(Option::as_ref)
    }

    /// The processes of an OOM domain (memory cgroup `memcg` and its descendants, or the
    /// machine), as the OOM killer weighs them, and how many were left unread; for the
    /// machine also the pages it weighs against. The victim (process `victim`) is not read.
    pub fn domain_processes(
        &mut self,
        memcg: Option<u64>,
        victim: u32,
    ) -> (candidates::Processes, Option<u64>) {
        let Some(id) = memcg else {
            return (candidates::on_machine(victim), candidates::machine_pages());
        };
        let root = self.hierarchy.as_ref().map(|h| h.root.clone());
        let dir = match (root, self.cgroup(id)) {
            (Some(root), Some(info)) => root.join(info.path.trim_start_matches('/')),
            _ => return (Err(format!("memory cgroup {id} was removed")), None),
        };
        // A cgroup removed right after its kill: said as the domain readings say it.
        let processes = candidates::in_cgroup(&dir, victim).map_err(|why| match why.as_str() {
            candidates::GONE => format!("memory cgroup {id} was removed"),
            _ => why,
        });
        (processes, None)
    }

    /// What the OOM domain's memory is made of now: the memory cgroup `memcg`'s
    /// (`memory.stat`), or the machine's (`/proc/meminfo`) for a machine-wide OOM.
    pub fn domain_memory(&mut self, memcg: Option<u64>) -> Result<memory::MemoryByKind, String> {
        let Some(id) = memcg else {
            return memory::read_machine();
        };
        let version = self
            .hierarchy
            .as_ref()
            .map(|h| h.version)
            .ok_or("no memory cgroup hierarchy")?;
        // A cgroup removed right after its kill (a pod deleted, a test's cgroup) is gone
        // before it can be read again: said the same whichever lookup finds out.
        let removed = || format!("memory cgroup {id} was removed");
        let relative = self
            .cgroup(id)
            .map(|info| info.path.trim_start_matches('/').to_owned())
            .ok_or_else(removed)?;
        let root = self
            .hierarchy
            .as_ref()
            .map(|h| h.root.clone())
            .unwrap_or_default();
        let dir = root.join(relative);
        memory::read_cgroup(&dir, version).map_err(|why| if dir.exists() { why } else { removed() })
    }

    /// `symbol [module]` for a kernel address, from /proc/kallsyms.
    pub fn symbol(&mut self, address: u64) -> Result<String, String> {
        let symbols = self.symbols.get_or_insert_with(|| {
            self.proc
                .kallsyms()
                .map(|text| parse_kallsyms(&text))
                .map_err(|err| format!("cannot read /proc/kallsyms: {err}"))
        });
        match symbols {
            Ok(map) => map
                .get(&address)
                .cloned()
                .ok_or_else(|| format!("no symbol at {address:#x} (kallsyms hidden? needs root)")),
            Err(err) => Err(err.clone()),
        }
    }

    /// The kernel stack of task `pid`, one frame a line.
    pub fn stack(&self, pid: u32) -> Stack {
        match self.proc.stack(pid) {
            Ok(text) => Ok(text
                .lines()
                .map(|l| l.split_once("] ").map_or(l, |(_, f)| f).to_owned())
                .collect()),
            Err(err) => Err(format!("/proc/{pid}/stack unavailable: {err}")),
        }
    }
}

/// The subsystem a notifier callback belongs to: its module, or its symbol's first word.
pub fn notifier_owner(symbol: &str) -> String {
    if let Some(module) = symbol.split_once('[').and_then(|(_, m)| m.split_once(']')) {
        return module.0.to_owned();
    }
    symbol
        .split('_')
        .next()
        .unwrap_or(symbol)
        .trim_start_matches("__")
        .to_owned()
}

/// Address → `name [module]` for text symbols.
fn parse_kallsyms(text: &str) -> HashMap<u64, String> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let address = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            if address == 0 || !matches!(kind, "t" | "T") {
                return None;
            }
            let label = match parts.next() {
                Some(module) => format!("{name} {module}"),
                None => name.to_owned(),
            };
            Some((address, label))
        })
        .collect()
}

/// Whether process `tgid` has begun to exit (PF_EXITING, from /proc/PID/stat, which takes no
/// mmap_lock), or is gone.
fn exiting(tgid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{tgid}/stat")) else {
        return true;
    };
    // `pid (comm) state ppid pgrp session tty_nr tpgid flags …`; comm may hold anything.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// The folders directly in `dir` (none where it cannot be read).
fn subdirectories(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

/// Finds the folder under `root` whose inode number is `id`.
fn find_cgroup(root: &Path, id: u64) -> Option<PathBuf> {
    let mut stack = vec![root.to_owned()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > MAX_CGROUP_DIRS {
            return None;
        }
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
            return Some(
                dir.strip_prefix(root)
                    .map(Path::to_owned)
                    .unwrap_or_default(),
            );
        }
        stack.extend(subdirectories(&dir));
    }
    None
}

/// Path text plus the pod and container ids a Kubernetes path carries, e.g.
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
/// (systemd driver, `-` in the uid written `_`) or `/kubepods/burstable/pod<uid>/<id>`.
pub fn cgroup_info(relative: &Path) -> CgroupInfo {
    let path = format!("/{}", relative.display());
    let mut pod_uid = None;
    let mut container_id = None;
    for segment in path.split('/') {
        let name = segment
            .strip_suffix(".slice")
            .or_else(|| segment.strip_suffix(".scope"))
            .unwrap_or(segment);
        if let Some(index) = name.rfind("pod") {
            let uid = &name[index + 3..];
            if uid.len() >= 32
                && uid
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_')
            {
                pod_uid = Some(uid.replace('_', "-"));
                continue;
            }
        }
        let id = name.rsplit('-').next().unwrap_or(name);
        if pod_uid.is_some() && id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            container_id = Some(id.to_owned());
        }
    }
    CgroupInfo {
        path,
        pod_uid,
        container_id,
        pod: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeProc;

    impl ProcSource for FakeProc {
        fn stack(&self, pid: u32) -> std::io::Result<String> {
            match pid {
                1 => Ok("[<0>] rwsem_down_write_slowpath+0x2f1/0x590\n[<0>] clear_refs_write+0x1e0/0x3f0\n".into()),
                _ => Err(std::io::Error::from_raw_os_error(libc::EACCES)),
            }
        }

        fn kallsyms(&self) -> std::io::Result<String> {
            Ok(
                "ffffffffc0a01230 t kvm_mmu_notifier_invalidate_range_start\t[kvm]\n\
                ffffffff81000000 T _text\n\
                0000000000000000 t hidden\n"
                    .into(),
            )
        }
    }

    #[test]
    fn stacks_lose_their_addresses() {
        let enricher = Enricher::new(FakeProc, None);
        assert_eq!(
            enricher.stack(1).unwrap(),
            [
                "rwsem_down_write_slowpath+0x2f1/0x590",
                "clear_refs_write+0x1e0/0x3f0"
            ]
        );
        let err = enricher.stack(2).unwrap_err();
        assert!(
            err.contains("/proc/2/stack") && err.contains("denied"),
            "{err}"
        );
    }

    #[test]
    fn we_are_not_exiting_and_a_reaped_child_is_gone() {
        assert!(!exiting(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(exiting(pid));
    }

    #[test]
    fn notifier_symbols_and_owners() {
        let mut enricher = Enricher::new(FakeProc, None);
        let symbol = enricher.symbol(0xffffffffc0a01230).unwrap();
        assert_eq!(symbol, "kvm_mmu_notifier_invalidate_range_start [kvm]");
        assert_eq!(notifier_owner(&symbol), "kvm");
        assert_eq!(notifier_owner("hmm_invalidate_range_start"), "hmm");
        assert!(enricher.symbol(0x1234).unwrap_err().contains("0x1234"));
    }

    #[test]
    fn kubernetes_paths_name_pod_and_container() {
        let systemd = cgroup_info(Path::new(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_1111_2222_3333_444455556666.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
        ));
        assert_eq!(
            systemd.pod_uid.as_deref(),
            Some("1b2c3d4e-1111-2222-3333-444455556666")
        );
        assert_eq!(
            systemd.container_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        let cgroupfs = cgroup_info(Path::new(
            "kubepods/burstable/pod1b2c3d4e-1111-2222-3333-444455556666/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ));
        assert_eq!(
            cgroupfs.pod_uid.as_deref(),
            Some("1b2c3d4e-1111-2222-3333-444455556666")
        );
        assert!(cgroupfs.container_id.is_some());
        let plain = cgroup_info(Path::new("system.slice/cron.service"));
        assert_eq!(
            (plain.path.as_str(), plain.pod_uid),
            ("/system.slice/cron.service", None)
        );
    }

    #[test]
    fn finds_a_cgroup_folder_by_inode() {
        let root = std::env::temp_dir().join(format!("oomreap-enrich-{}", std::process::id()));
        let leaf = root.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        let id = std::fs::metadata(&leaf).unwrap().ino();
        let mut enricher = Enricher::new(
            FakeProc,
            Some(MemoryHierarchy {
                root: root.clone(),
                version: crate::cgroup::CgroupVersion::V2,
            }),
        );
        let path = enricher.cgroup(id).map(|c| c.path.clone());
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(path.as_deref(), Some("/a/b"));
        assert!(enricher.cgroup(1).is_none());
    }
}
