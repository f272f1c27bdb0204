//! Builds the kernel programs (oomreap-ebpf) with aya-build and leaves the object in OUT_DIR,
//! where `capture` embeds it. When the eBPF toolchain is missing, stops with one line naming
//! the command that installs it. Also stamps the binary with its git revision and build date
//! (`oomreap --version`, `oomreap_build_info`).
use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    stamp_version();
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

/// Sets `OOMREAP_REVISION` (12 hex digits of the commit, or `unknown` outside a git checkout)
/// and `OOMREAP_BUILD_DATE` (`SOURCE_DATE_EPOCH` when set, for reproducible builds, else
/// today, UTC) for the crate. Reruns when HEAD moves.
fn stamp_version() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // HEAD names the branch; the branch's file (or packed-refs) moves on commit. Only files
    // that exist are watched: a missing one would rerun this script on every build.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            let path = std::fs::canonicalize(&path).unwrap_or_else(|_| path.into());
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    println!("cargo:rustc-env=OOMREAP_REVISION={revision}");
    println!("cargo:rustc-env=OOMREAP_BUILD_DATE={}", civil_date(seconds));
}

/// `YYYY-MM-DD` of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn civil_date(unix_seconds: i64) -> String {
    let z = unix_seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
