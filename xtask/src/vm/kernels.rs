//! Debian kernels for the matrix, fetched with `apt-get download` through a private apt
//! configuration (its own sources list, package lists and cache under the xtask cache), so the
//! machine's own apt sources and state are never changed.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};

use super::guest::{AARCH64, Guest, X86_64};
use crate::command::run as run_cmd;

/// One kernel line of the matrix: the newest Debian package whose name is
/// `{prefix}{version}{suffix}`, `version` being digits and dots.
#[derive(Copy, Clone, Debug)]
pub struct KernelLine {
    /// Short name, as on the command line and in the results: `6.1`, `7.x`.
    pub name: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    /// The function attach modes its `scenarios` rows run in (where the kernel allows them).
    /// kprobe mode runs on the oldest line, on the two with soft-RoCE, whose ODP scenarios
    /// must pass in every mode, and on arm64, whose kprobes read other registers; elsewhere
    /// it would repeat what fentry shows of the same userspace, within CI's hour.
    pub modes: &'static [&'static str],
    /// The once-suites it leaves to other lines, within CI's hour. `run`: `oomreap run`'s
    /// reports and verdicts depend on the kernel only through the scenarios suite's steps,
    /// so it runs on the oldest line and on the soft-RoCE ones (where `--fail-on notifier`
    /// and `partial` meet a real refusal). `privileged`: its tests check attaching, the CLI
    /// and the gate, which the same kernel version shows elsewhere (7.x-rt's by 7.x; 6.12's
    /// by 6.18, both 3-argument mmap_lock tracepoints, cgroup v2 and FUSE built in).
    pub left_to_others: &'static [&'static str],
    /// The architecture it is built for, and how such a guest boots.
    pub guest: &'static Guest,
}

/// Every function attach mode: tracepoints only, fentry, kprobe.
const ALL_MODES: &[&str] = &["off", "fentry", "kprobe"];
/// Tracepoints only and fentry.
const NO_KPROBE: &[&str] = &["off", "fentry"];
/// The once-suites some lines leave to others ([`KernelLine::left_to_others`]).
const RUN: &[&str] = &["run"];
const RUN_AND_PRIVILEGED: &[&str] = &["run", "privileged"];

/// Every line the matrix knows: x86_64's oldest first, then arm64's.
pub const LINES: [KernelLine; 7] = [
    // bullseye-security: the oldest long-term line in wide use (no mmap_lock tracepoints, no
    // exit_mmap tracepoint, no process_mrelease); cloud, as its generic rdma_rxe has no ODP.
    KernelLine {
        name: "5.10",
        prefix: "linux-image-5.10.0-",
        suffix: "-cloud-amd64",
        modes: ALL_MODES,
        left_to_others: &[],
        guest: &X86_64,
    },
    // bookworm
    KernelLine {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
        modes: NO_KPROBE,
        left_to_others: RUN,
        guest: &X86_64,
    },
    // bookworm-security
    KernelLine {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64-unsigned",
        modes: NO_KPROBE,
        left_to_others: RUN_AND_PRIVILEGED,
        guest: &X86_64,
    },
    // trixie-backports, the generic flavour: it has rdma_rxe with ODP (the cloud one has no
    // rdma_rxe), for the mmu notifier that refuses the reaper.
    KernelLine {
        name: "6.18",
        prefix: "linux-image-6.18.",
        suffix: "+deb13-amd64",
        modes: ALL_MODES,
        left_to_others: &[],
        guest: &X86_64,
    },
    // trixie-backports, generic, as 6.18.
    KernelLine {
        name: "7.x",
        prefix: "linux-image-7.",
        suffix: "+deb13-amd64",
        modes: ALL_MODES,
        left_to_others: &[],
        guest: &X86_64,
    },
    // trixie-backports: PREEMPT_RT, where rw_semaphore is built on an rtmutex.
    KernelLine {
        name: "7.x-rt",
        prefix: "linux-image-7.",
        suffix: "+deb13-rt-amd64",
        modes: NO_KPROBE,
        left_to_others: RUN_AND_PRIVILEGED,
        guest: &X86_64,
    },
    // trixie-backports, arm64 under qemu-system-aarch64: the programs built for aarch64
    // (aya's register access, pt_regs from BTF), fentry through arm64's BPF trampolines. The
    // cloud flavour: soft-RoCE needs libibverbs, which the guest's static binaries cannot
    // load, so the generic one's rdma_rxe would add nothing.
    KernelLine {
        name: "7.x-arm64",
        prefix: "linux-image-7.",
        suffix: "+deb13-cloud-arm64",
        modes: ALL_MODES,
        left_to_others: RUN,
        guest: &AARCH64,
    },
];

/// Modules the guest loads, in this order (each one's dependencies first), where the kernel
/// has them as modules: FUSE (a module before 6.12) and soft-RoCE with what it needs. Names
/// as in `modules.dep`, without `.ko`.
pub const GUEST_MODULES: [&str; 8] = [
    "fuse",
    "udp_tunnel",
    "ip6_udp_tunnel",
    "ib_core",
    // 7.x split the verbs support out of ib_uverbs.
    "ib_uverbs_support",
    "ib_uverbs",
    "rdma_rxe",
    "dummy",
];

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub line: &'static str,
    /// The line's function attach modes ([`KernelLine::modes`]).
    pub modes: &'static [&'static str],
    /// [`KernelLine::left_to_others`].
    pub left_to_others: &'static [&'static str],
    /// [`KernelLine::guest`].
    pub guest: &'static Guest,
    /// The Debian package it came from.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// The package's own modules of [`GUEST_MODULES`] that it has (`.ko` or `.ko.xz`), in
    /// load order.
    pub modules: Vec<PathBuf>,
}

impl Kernel {
    /// Returns true if and only if its package has rdma_rxe, so the ODP scenarios run.
    pub fn has_soft_roce(&self) -> bool {
        self.modules.iter().any(|m| {
            m.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rdma_rxe."))
        })
    }
}

/// The private apt configuration and where packages are unpacked.
pub struct KernelCache {
    root: PathBuf,
}

/// The architectures of the private package lists: the guests'.
const ARCHITECTURES: [&str; 2] = ["amd64", "arm64"];

/// Package lists older than this are refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Debian's archive signing keys, as the debian-archive-keyring package installs them.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl KernelCache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Resolves and unpacks the newest kernel of each line.
    pub fn fetch(&self, lines: &[KernelLine]) -> anyhow::Result<Vec<Kernel>> {
        self.configure()?;
        self.refresh_lists()?;
        let names = self.package_names()?;
        lines
            .iter()
            .map(|line| {
                let package = newest(line, &names).with_context(|| {
                    format!(
                        "no Debian package {}<version>{} in the private package lists",
                        line.prefix, line.suffix
                    )
                })?;
                self.unpack(line, &package)
            })
            .collect()
    }

    fn apt_dir(&self) -> PathBuf {
        self.root.join("apt")
    }

    /// Options that point apt at the private configuration.
    fn apt(&self, program: &str) -> Command {
        let dir = self.apt_dir();
        let mut cmd = Command::new(program);
        for (key, value) in [
            ("Dir::Etc::SourceList", dir.join("sources.list")),
            ("Dir::Etc::SourceParts", dir.join("sources.list.d")),
            ("Dir::Etc::Preferences", dir.join("preferences")),
            ("Dir::Etc::PreferencesParts", dir.join("preferences.d")),
            ("Dir::State::Lists", dir.join("lists")),
            ("Dir::Cache", dir.join("cache")),
        ] {
            cmd.arg("-o").arg(format!("{key}={}", value.display()));
        }
        // Downloads land in folders of ours, which apt's unprivileged _apt user cannot write.
        cmd.args(["-o", "APT::Sandbox::User=root", "-qq"]);
        // The guests' architectures: arm64 packages by name, where only arm64 has them.
        cmd.args([
            "-o",
            &format!("APT::Architectures={}", ARCHITECTURES.join(",")),
        ]);
        cmd
    }

    /// Writes the private sources list: the machine's own Debian mirror, with the suites the
    /// matrix needs.
    fn configure(&self) -> anyhow::Result<()> {
        let dir = self.apt_dir();
        for sub in [
            "sources.list.d",
            "preferences.d",
            "lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("failed to create {}", dir.join(sub).display()))?;
        }
        let (archive, security) = debian_mirrors()?;
        let entry = |uri: &str, suite: &str, arches: &[&str]| {
            let arches = arches.join(",");
            format!("deb [arch={arches} signed-by={KEYRING}] {uri} {suite} main\n")
        };
        let amd64 = &ARCHITECTURES[..1];
        let sources = [
            entry(&archive, "bullseye", amd64),
            entry(&security, "bullseye-security", amd64),
            // Also arm64's busybox-static.
            entry(&archive, "bookworm", &ARCHITECTURES),
            entry(&security, "bookworm-security", amd64),
            entry(&archive, "trixie-backports", &ARCHITECTURES),
        ]
        .concat();
        let path = dir.join("sources.list");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(sources.as_str()) {
            std::fs::write(&path, sources)
                .with_context(|| format!("failed to write {}", path.display()))?;
            // New sources: the lists are stale.
            let _ = std::fs::remove_file(self.apt_dir().join("lists/updated"));
        }
        Ok(())
    }

    fn refresh_lists(&self) -> anyhow::Result<()> {
        let stamp = self.apt_dir().join("lists/updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        eprintln!("xtask vm-test: updating the private package lists");
        run_cmd(self.apt("apt-get").arg("update"))?;
        std::fs::write(&stamp, b"").context("failed to stamp the package lists")
    }

    fn package_names(&self) -> anyhow::Result<Vec<String>> {
        let out = self
            .apt("apt-cache")
            .args(["pkgnames", "linux-image-"])
            .output()
            .context("failed to run apt-cache")?;
        if !out.status.success() {
            bail!(
                "apt-cache pkgnames failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Downloads and unpacks `package` (and, where the image package holds no kernel, the
    /// `linux-binary-*` package it depends on) once; later runs reuse the unpacked tree.
    fn unpack(&self, line: &KernelLine, package: &str) -> anyhow::Result<Kernel> {
        let tree = self.root.join("kernels").join(package);
        let done = tree.join(".unpacked");
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&tree);
            std::fs::create_dir_all(&tree)?;
            let deb = self.download(package)?;
            extract(&deb, &tree)?;
            if find_file(&tree, |n| n.starts_with("vmlinuz")).is_none() {
                // Since 7.0 the image package is empty: the kernel and its modules come in
                // packages of their own.
                let binary = depends_on(&deb, "linux-binary-")?.with_context(|| {
                    format!("{package} holds no vmlinuz and names no linux-binary package")
                })?;
                extract(&self.download(&binary)?, &tree)?;
                if let Some(modules) = depends_on(&deb, "linux-modules-")? {
                    extract(&self.download(&modules)?, &tree)?;
                }
            }
            std::fs::write(&done, b"")?;
        }
        let vmlinuz = find_file(&tree, |n| n.starts_with("vmlinuz"))
            .with_context(|| format!("no vmlinuz in {}", tree.display()))?;
        let modules = GUEST_MODULES
            .iter()
            .filter_map(|name| {
                find_file(&tree, |n| {
                    n == format!("{name}.ko") || n == format!("{name}.ko.xz")
                })
            })
            .collect();
        Ok(Kernel {
            line: line.name,
            modes: line.modes,
            left_to_others: line.left_to_others,
            guest: line.guest,
            package: package.to_owned(),
            vmlinuz,
            modules,
        })
    }

    /// busybox-static for `guest`'s architecture, unpacked once: its `busybox`.
    pub fn busybox(&self, guest: &Guest) -> anyhow::Result<PathBuf> {
        self.configure()?;
        self.refresh_lists()?;
        let package = format!("busybox-static:{}", guest.name());
        let tree = self.root.join("busybox").join(guest.name());
        let busybox = tree.join("bin/busybox");
        if !busybox.exists() {
            let _ = std::fs::remove_dir_all(&tree);
            std::fs::create_dir_all(&tree)?;
            extract(&self.download(&package)?, &tree)?;
        }
        Ok(busybox)
    }

    /// Downloads `package` (`name` or `name:arch`) into the cache once.
    fn download(&self, package: &str) -> anyhow::Result<PathBuf> {
        let debs = self.root.join("debs");
        std::fs::create_dir_all(&debs)?;
        // Files are `name_version_arch.deb`.
        let (name, arch) = package.split_once(':').unwrap_or((package, ""));
        let existing = |debs: &Path| {
            std::fs::read_dir(debs)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{name}_")) && n.ends_with(&format!("{arch}.deb"))
                    })
                })
        };
        if let Some(deb) = existing(&debs) {
            return Ok(deb);
        }
        eprintln!("xtask vm-test: downloading {package}");
        run_cmd(
            self.apt("apt-get")
                .current_dir(&debs)
                .args(["download", package]),
        )?;
        existing(&debs).with_context(|| format!("apt-get download {package} left no .deb"))
    }
}

/// The machine's Debian archive and security mirrors, from its apt sources (deb822 `URIs:`
/// lines or one-line `deb URI suite` entries).
fn debian_mirrors() -> anyhow::Result<(String, String)> {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.filter_map(Result::ok) {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e == "sources" || e == "list")
            {
                texts.push(std::fs::read_to_string(path).unwrap_or_default());
            }
        }
    }
    let uris: Vec<String> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|line| {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("URIs:") {
                return Some(
                    rest.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                );
            }
            let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
            (words.next() == Some("deb"))
                .then(|| words.next().map(str::to_owned).into_iter().collect())
        })
        .flatten()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    let archive = uris
        .iter()
        .find(|u| u.ends_with("/debian"))
        .cloned()
        .context("no Debian archive (a URI ending in /debian) in the machine's apt sources")?;
    let security = uris
        .iter()
        .find(|u| u.ends_with("/debian-security"))
        .cloned()
        .unwrap_or_else(|| format!("{archive}-security"));
    Ok((archive, security))
}

/// The newest package of a line: versions compare as lists of numbers.
fn newest(line: &KernelLine, names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| {
            let version = name.strip_prefix(line.prefix)?.strip_suffix(line.suffix)?;
            let parts: Option<Vec<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
            Some((parts?, name))
        })
        .max()
        .map(|(_, name)| name.clone())
}

fn extract(deb: &Path, into: &Path) -> anyhow::Result<()> {
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(deb).arg(into))
}

/// The first package in `deb`'s Depends whose name starts with `prefix`.
fn depends_on(deb: &Path, prefix: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Depends")
        .output()
        .context("failed to run dpkg-deb")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|name| name.starts_with(prefix))
        .map(str::to_owned))
}

/// The first file under `dir` whose name satisfies `wanted`.
fn find_file(dir: &Path, wanted: impl Fn(&str) -> bool + Copy) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        let file_type = entry.file_type().ok()?;
        if file_type.is_dir() {
            if let Some(found) = find_file(&path, wanted) {
                return Some(found);
            }
        } else if file_type.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(wanted)
        {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_wins_numerically() {
        let names: Vec<String> = [
            "linux-image-7.2.12+deb13-cloud-amd64",
            "linux-image-7.10.1+deb13-cloud-amd64",
            "linux-image-7.3.4+deb13-cloud-amd64",
            "linux-image-7.3.4+deb13-cloud-amd64-dbg",
            "linux-image-7.9.0+deb13-rt-amd64",
            "linux-image-7.3.4+deb13-amd64",
            "linux-image-7.3.4+deb13-arm64",
            "linux-image-7.3.4+deb13-cloud-arm64",
        ]
        .map(String::from)
        .to_vec();
        let line = |name| LINES.iter().find(|l| l.name == name).unwrap();
        assert_eq!(
            newest(line("7.x"), &names).as_deref(),
            Some("linux-image-7.3.4+deb13-amd64")
        );
        assert_eq!(
            newest(line("7.x-rt"), &names).as_deref(),
            Some("linux-image-7.9.0+deb13-rt-amd64")
        );
        assert_eq!(
            newest(line("7.x-arm64"), &names).as_deref(),
            Some("linux-image-7.3.4+deb13-cloud-arm64")
        );
        assert_eq!(newest(line("6.1"), &names), None);
    }
}
