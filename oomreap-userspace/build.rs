//! Builds the kernel programs (oomreap-ebpf) with aya-build and leaves the object in OUT_DIR,
//! where `capture` embeds it. When the eBPF toolchain is missing, stops with one line naming
//! the command that installs it.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_none()
        && let Some(missing) = missing_toolchain_part()
    {
        println!("cargo::error={missing}; run `cargo xtask setup` to install it");
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|p| p.name.as_str() == "oomreap-ebpf")
        .ok_or_else(|| anyhow!("oomreap-ebpf package not found"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf_package.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf_package.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}

/// What the kernel build lacks, if anything: bpf-linker, the nightly toolchain, or its
/// rust-src component (needed for `-Z build-std=core`).
fn missing_toolchain_part() -> Option<&'static str> {
    if which::which("bpf-linker").is_err() {
        return Some("bpf-linker is not installed");
    }
    let sysroot = std::process::Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(sysroot) = sysroot else {
        return Some("the nightly Rust toolchain is not installed");
    };
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let core = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    (!core.exists()).then_some("rust-src for the nightly toolchain is not installed")
}
