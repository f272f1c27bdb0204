//! Builds the kernel programs (oomreap-ebpf) with the nightly toolchain and leaves the object in
//! OUT_DIR, where `capture` embeds it. When the eBPF toolchain is missing, stops with one line
//! naming the command that installs it. Also stamps the binary with its git revision and build
//! date (`oomreap --version`, `oomreap_build_info`).
//!
//! The programs are built as aya-build builds them (`cargo build -Z build-std=core --target
//! bpfel-unknown-none` with `bpf_target_arch` set to this crate's target architecture, full
//! debug info and BTF), with one difference: the nested build's target directory is shared,
//! `target/ebpf/ARCH`, not one per OUT_DIR. Every profile, target and feature set of this crate
//! runs this script in an OUT_DIR of its own (a test run makes about ten), and each would
//! otherwise rebuild core and the programs from scratch: about 40 s and 190 MB each. Cargo
//! locks the shared directory, so concurrent builds wait for each other and then find it fresh.
use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The kernel crate, beside this one in the workspace.
const EBPF_PACKAGE: &str = "oomreap-ebpf";

fn main() -> anyhow::Result<()> {
    stamp_version();
    if let Some(missing) = missing_toolchain_part() {
        println!("cargo::error={missing}; run `cargo xtask setup` to install it");
        return Ok(());
    }
    build_kernel_programs()
}

/// Builds `EBPF_PACKAGE`'s binary and copies it to `OUT_DIR/oomreap`.
fn build_kernel_programs() -> anyhow::Result<()> {
    let var = |name: &str| env::var(name).with_context(|| format!("cargo did not set {name}"));
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("the crate has no parent directory")?
        .join(EBPF_PACKAGE);
    // The library build-dependency on the kernel crate reruns this script when its library or
    // oomreap-common changes; this catches its binary's sources too.
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());

    let target = match var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported endianness {other}"),
    };
    // aya-ebpf reads kprobe arguments through the registers of `bpf_target_arch`: the
    // architecture this crate is built for, not the host's.
    let arch = var("CARGO_CFG_TARGET_ARCH")?;
    let target_dir = shared_target_dir(&out_dir).join("ebpf").join(&arch);

    let mut rustflags = OsString::new();
    for (i, flag) in [
        &format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    // Held over the build and the copy: another checkout sharing this target directory (one
    // CARGO_TARGET_DIR for several work trees) could otherwise relink the object in between.
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("failed to create {}", target_dir.display()))?;
    let lock_path = target_dir.join(".oomreap-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("failed to create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        EBPF_PACKAGE,
    ])
    .args(["--bins", "--release", "-Z", "build-std=core"])
    .args(["--target", target])
    .arg("--target-dir")
    .arg(&target_dir)
    // A configured `build.build-dir` would put the nested build's intermediates where the
    // outer build holds its lock (cargo#6412): they go beside its output instead.
    .env("CARGO_BUILD_BUILD_DIR", &target_dir)
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
    // Set for this script by the stable cargo: they would pin its compiler and wrapper.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("RUSTUP_TOOLCHAIN");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let messages = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{messages}", out.status);
    }
    // Its progress lines are noise in this build's output; its warnings are not.
    if messages.contains("warning") {
        for line in messages.lines() {
            println!("cargo:warning={line}");
        }
    }
    // Where cargo leaves a binary of a `--target` build.
    let object = target_dir.join(target).join("release").join("oomreap");
    let dst = out_dir.join("oomreap");
    std::fs::copy(&object, &dst)
        .with_context(|| format!("failed to copy {} to {}", object.display(), dst.display()))?;
    Ok(())
}

/// The target directory this build writes to, read off `out_dir`'s place in cargo's layout
/// (`TARGET_DIR/[TRIPLE/]PROFILE/build/PACKAGE-HASH/out`), else `out_dir` itself (no sharing,
/// but a correct build).
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    let mut up = out_dir.ancestors();
    let (Some(build), Some(profile)) = (up.nth(2), up.next()) else {
        return out_dir.to_path_buf();
    };
    let Some(above) = profile
        .parent()
        .filter(|_| build.file_name() == Some("build".as_ref()))
    else {
        return out_dir.to_path_buf();
    };
    // A `--target` build has the triple's directory in between.
    let triple = env::var_os("TARGET");
    match above.file_name() == triple.as_deref() {
        true => above.parent().unwrap_or(above).to_path_buf(),
        false => above.to_path_buf(),
    }
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
