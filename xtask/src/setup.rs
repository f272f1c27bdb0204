//! `cargo xtask setup`: installs what building oomreap needs, if missing, and nothing else.
//!
//! The steps, each skipped when already done, so a complete machine passes in about a second:
//! 1. the nightly toolchain's rust-src component (for `-Z build-std=core`);
//! 2. a persistent LLVM prefix whose `lib/` links to the nightly toolchain's own libLLVM, so
//!    bpf-linker uses exactly the LLVM that rustc emits bitcode for;
//! 3. bpf-linker, built against that prefix (its runpath points at it).
//!
//! What only the tests use lives in `test_tools`: building or running oomreap never installs a
//! test tool, and no tool is ever left running or enabled as a service.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::command::{nightly_cargo, output, run as run_cmd};

const NIGHTLY: &str = "nightly";

/// Installs what `cargo build` of oomreap needs: the eBPF toolchain.
pub fn run() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    let (prefix, llvm_major) = ensure_llvm_prefix(&sysroot)?;
    ensure_bpf_linker(&prefix, &llvm_major)
}

/// Debian packages only the tests use, each with the program that shows it is installed.
const TEST_PACKAGES: [(&str, &str); 3] = [
    // `oomreap top` is tested in a real terminal: tmux runs it and reads its screen.
    ("tmux", "tmux"),
    // The image is run as the DaemonSet runs it, by a real container runtime.
    ("podman", "podman"),
    // podman's runtime here: crun refuses hosts with hybrid cgroups.
    ("runc", "runc"),
];

/// Installs what only the tests use and returns a folder to put first on PATH, which holds
/// programs taken out of Debian's packages rather than installed with them: `prometheus` and
/// `promtool` (the package enables and starts a Prometheus server on 0.0.0.0:9090), and
/// qemu-user for the other architecture's binary (the package registers it with binfmt_misc,
/// which would change how this machine runs every foreign binary).
pub fn test_tools() -> anyhow::Result<PathBuf> {
    ensure_debian_packages(&TEST_PACKAGES)?;
    let bin = tools_dir()?.join("bin");
    unpack_programs("prometheus", &["prometheus", "promtool"], &bin)?;
    let qemu = if cfg!(target_arch = "aarch64") {
        "qemu-x86_64-static"
    } else {
        "qemu-aarch64-static"
    };
    unpack_programs("qemu-user-static", &[qemu], &bin)?;
    Ok(bin)
}

/// Links each of `programs` from Debian's `package`, unpacked (not installed) under the
/// tools folder, into `bin`, unless they already run from there.
fn unpack_programs(package: &str, programs: &[&str], bin: &Path) -> anyhow::Result<()> {
    if programs
        .iter()
        .all(|p| output(Command::new(bin.join(p)).arg("--version")).is_some())
    {
        return Ok(());
    }
    eprintln!(
        "xtask setup: unpacking {} from Debian's {package}",
        programs.join(" and ")
    );
    let unpacked = tools_dir()?.join(package);
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked)?;
    let download = |dir: &Path| {
        Command::new("apt-get")
            .args(["download", "-qq", package])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download(&unpacked) {
        // An old or missing package list: refresh it once.
        run_cmd(&mut apt(&["update", "-qq"]))?;
        if !download(&unpacked) {
            bail!("apt-get download {package} failed; the tests need it");
        }
    }
    let deb = std::fs::read_dir(&unpacked)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    std::fs::create_dir_all(bin)?;
    for program in programs {
        let link = bin.join(program);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(unpacked.join("usr/bin").join(program), &link)?;
        if output(Command::new(&link).arg("--version")).is_none() {
            bail!("{} from Debian's {package} does not run", link.display());
        }
    }
    Ok(())
}

/// Where unpacked test tools live, outside any checkout so clones share them.
fn tools_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("oomreap/tools"))
}

/// apt-get as root, or through sudo, never asking questions.
fn apt(args: &[&str]) -> Command {
    let mut cmd = if crate::command::is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("apt-get");
        sudo
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Installs the missing `(program, package)` pairs with apt-get (as root, or through sudo).
/// No service is left running or enabled: a policy-rc.d forbids starting any during the
/// install, and whatever the packages enabled is disabled again.
pub fn ensure_debian_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    // A program on PATH, or (an absolute path) a file the package installs.
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(program, _)| {
            if program.starts_with('/') {
                !Path::new(program).exists()
            } else {
                which::which(program).is_err()
            }
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if which::which("apt-get").is_err() {
        eprintln!(
            "xtask setup: no apt-get; install {} yourself (tests that need them will say they were skipped)",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    run_cmd(&mut apt(&["update", "-qq"]))?;
    let enabled_before = enabled_units();
    let policy = Path::new("/usr/sbin/policy-rc.d");
    // Ours only if there was none: 101 tells invoke-rc.d that no service may start.
    let own_policy = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .is_ok();
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    let installed = run_cmd(&mut install);
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    for link in enabled_units().difference(&enabled_before) {
        eprintln!(
            "xtask setup: disabling what the install enabled: {}",
            link.display()
        );
        std::fs::remove_file(link)?;
    }
    installed
}

/// The links that enable systemd units (`/etc/systemd/system/*.wants/*` and the like).
fn enabled_units() -> std::collections::BTreeSet<PathBuf> {
    let mut links = std::collections::BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir("/etc/systemd/system") else {
        return links;
    };
    for dir in dirs.filter_map(Result::ok).map(|e| e.path()) {
        if !dir.is_dir() || dir.is_symlink() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                links.insert(entry.path());
            }
        }
    }
    links
}

/// The nightly toolchain's sysroot; installs the toolchain when rustup lacks it.
fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let query =
        || output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]));
    if let Some(sysroot) = query() {
        return Ok(PathBuf::from(sysroot));
    }
    eprintln!("xtask setup: installing the nightly Rust toolchain");
    run_cmd(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
        .context("the kernel programs need a nightly Rust toolchain")?;
    query()
        .map(PathBuf::from)
        .context("nightly toolchain installed but `rustup run nightly rustc` still fails")
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        return Ok(());
    }
    eprintln!("xtask setup: adding rust-src to the nightly toolchain");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// Links `<prefix>/lib/{libLLVM.so, <versioned name>}` to the nightly toolchain's libLLVM and
/// returns the prefix and LLVM's major version (which picks bpf-linker's `llvm-N` feature).
fn ensure_llvm_prefix(sysroot: &Path) -> anyhow::Result<(PathBuf, String)> {
    let lib_dir = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("failed to list {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    // libLLVM.so.22.1-rust-1.97.0-nightly -> 22
    let major = libllvm
        .trim_start_matches("libLLVM.so.")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .filter(|m| !m.is_empty())
        .with_context(|| format!("cannot read LLVM's version from {libllvm}"))?
        .to_owned();
    let prefix = llvm_prefix()?;
    let target = lib_dir.join(&libllvm);
    for link_name in ["libLLVM.so", libllvm.as_str()] {
        let link = prefix.join("lib").join(link_name);
        if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            continue;
        }
        std::fs::create_dir_all(prefix.join("lib"))?;
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).with_context(|| {
            format!("failed to link {} to {}", link.display(), target.display())
        })?;
    }
    Ok((prefix, major))
}

/// A folder that outlives the build: bpf-linker's runpath points into it.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set")?;
    Ok(base.join("oomreap/llvm-nightly"))
}

/// bpf-linker counts as installed only if it starts (a stale LLVM link makes it fail to load).
fn ensure_bpf_linker(prefix: &Path, llvm_major: &str) -> anyhow::Result<()> {
    if output(Command::new("bpf-linker").arg("--version")).is_some() {
        return Ok(());
    }
    eprintln!(
        "xtask setup: building bpf-linker against the nightly toolchain's LLVM {llvm_major} (a minute or two)"
    );
    run_cmd(
        nightly_cargo()
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", prefix),
    )?;
    if output(Command::new("bpf-linker").arg("--version")).is_none() {
        bail!("bpf-linker was installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}
