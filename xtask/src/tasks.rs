//! `build`, `run` and `test`.
use std::{ffi::OsString, path::Path, process::Command};

use anyhow::Context as _;
use clap::Args;

use crate::command::{cargo, is_root, nightly_cargo, run as run_cmd};

/// The runner cargo uses for test and run binaries when we are not root.
const SUDO_RUNNER: &str = "sudo -E";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build with optimisations.
    #[arg(long)]
    release: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Build with optimisations.
    #[arg(long)]
    release: bool,
    /// Arguments for `oomreap`.
    #[arg(last = true)]
    args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Only run tests whose names contain this.
    filter: Option<String>,
    /// Run the tests this many times in a row (after one rustfmt and clippy pass), stopping at
    /// the first failure: flaky privileged tests show up here.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Also run the kernel matrix (`cargo xtask vm-test` with its defaults), its guests
    /// booting beside the host's tests, adding its tests to the totals. Without a test filter
    /// it rewrites docs/kernels.md, which says how long it took.
    #[arg(long)]
    vm: bool,
    /// Also run the long tests (a 1,000-victim storm, serve's memory after 10,000 victims,
    /// 30 s of fuzzing): libtest's ignored tests.
    #[arg(long)]
    long: bool,
    /// Everything: --long and --vm.
    #[arg(long)]
    all: bool,
}

/// Tells the packaging tests where `cargo xtask dist` left what they install.
const DIST_ENV: &str = "OOMREAP_DIST_DIR";

/// Seconds of fuzzing in `--long` runs.
const LONG_FUZZ_SECONDS: &str = "30";

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// How long to fuzz.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Replay from this seed (hexadecimal, as a failure prints it).
    #[arg(long)]
    seed: Option<String>,
}

/// Runs the mutation fuzzer of the decoder, the recording parser and the tracker.
pub fn fuzz(workspace: &Path, args: &FuzzArgs) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(workspace)
        .args(["test", "-p", "oomreap-userspace", "--lib", "--release"])
        .args([
            "testing::fuzz::tests::fuzz_for_a_while",
            "--",
            "--ignored",
            "--exact",
        ])
        .env("OOMREAP_FUZZ_SECONDS", args.seconds.to_string());
    if let Some(seed) = &args.seed {
        cmd.env("OOMREAP_FUZZ_SEED", seed);
    }
    run_cmd(&mut cmd)
}

pub fn build(workspace: &Path, args: &BuildArgs) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(workspace)
        .args(["build", "--package", "oomreap-userspace"]);
    if args.release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)
}

pub fn run(workspace: &Path, args: &RunArgs) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(workspace).args([
        "run",
        "--quiet",
        "--package",
        "oomreap-userspace",
        "--bin",
        "oomreap",
    ]);
    if args.release {
        cmd.arg("--release");
    }
    cmd.arg("--").args(&args.args);
    as_root(&mut cmd);
    // Ctrl-C reaches oomreap and cargo alike; what matters is oomreap's own exit status.
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

pub fn test(workspace: &Path, args: &TestArgs) -> anyhow::Result<()> {
    step("rustfmt");
    run_cmd(
        nightly_cargo()
            .current_dir(workspace)
            .args(["fmt", "--all", "--", "--check"]),
    )?;

    // The matrix's guests are kernels of their own, so they boot as soon as what they run is
    // built, while the host's checks and tests go on: the host's privileged tests mostly wait
    // on the reaper's timers, and the guests (one TCG core each) would otherwise double CI's
    // time.
    let matrix = if args.vm || args.all {
        step("the kernel matrix (cargo xtask vm-test): preparing, then booting alongside the rest");
        let mut vm_args = crate::vm::VmTestArgs::defaults();
        vm_args.filter.clone_from(&args.filter);
        let prepared = crate::vm::prepare(workspace, &vm_args)?;
        Some(std::thread::spawn(move || prepared.run()))
    } else {
        None
    };
    let mut totals = TestTotals::default();
    let host = host_checks_and_tests(workspace, args, &mut totals);
    // Whatever the host's result, the guests end before this run does.
    if let Some(matrix) = matrix {
        step("the kernel matrix: waiting for its guests");
        let vm = matrix
            .join()
            .unwrap_or_else(|_| anyhow::bail!("the kernel matrix panicked"))?;
        totals.passed += vm.passed;
        totals.failed += vm.failed;
        totals.ignored += vm.skipped;
        totals.print();
        host?;
        if vm.failed > 0 {
            anyhow::bail!("{} failed in the kernel matrix", vm.failed);
        }
        return Ok(());
    }
    host
}

/// Clippy, the packaging's prerequisites and every host test (`args.repeat` rounds).
fn host_checks_and_tests(
    workspace: &Path,
    args: &TestArgs,
    totals: &mut TestTotals,
) -> anyhow::Result<()> {
    step("clippy (user space, xtask)");
    run_cmd(cargo().current_dir(workspace).args([
        "clippy",
        "--workspace",
        "--exclude",
        "oomreap-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // --all-targets builds the tests, which turn the `testing` feature on: what users run
    // (the library and binary without it) is linted on its own.
    step("clippy (the oomreap binary as shipped: no test support)");
    run_cmd(cargo().current_dir(workspace).args([
        "clippy",
        "--package",
        "oomreap-userspace",
        "--lib",
        "--bins",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("clippy (kernel programs, bpfel-unknown-none)");
    run_cmd(
        nightly_cargo()
            .current_dir(workspace.join("oomreap-ebpf"))
            .args([
                "clippy",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--",
                "-D",
                "warnings",
            ]),
    )?;

    step("cargo xtask run installs nothing beyond the build's toolchain");
    run_installs_no_package(workspace)?;

    step("test tools (tmux, podman, runc; prometheus and promtool unpacked, not installed)");
    let tools = crate::setup::test_tools()?;
    step("dist: the static binary, .deb and image the packaging tests install");
    let dist = crate::dist::dist(workspace, &crate::dist::DistArgs {})?;
    let path = std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;

    for round in 1..=args.repeat {
        step(&format!(
            "tests (unit and privileged integration), round {round} of {}",
            args.repeat
        ));
        let mut cmd = cargo();
        cmd.current_dir(workspace)
            .env("PATH", &path)
            .env(DIST_ENV, &dist)
            // The golden outputs hold wall times in UTC.
            .env("TZ", "UTC")
            .args(["test", "--workspace", "--exclude", "oomreap-ebpf", "--"]);
        if let Some(filter) = &args.filter {
            cmd.arg(filter);
        }
        if args.long || args.all {
            cmd.arg("--include-ignored")
                .env("OOMREAP_FUZZ_SECONDS", LONG_FUZZ_SECONDS);
        }
        as_root(&mut cmd);
        let result = run_counting_tests(&mut cmd, totals);
        totals.print();
        result?;
    }
    Ok(())
}

fn run_installs_no_package(workspace: &Path) -> anyhow::Result<()> {
    let packages = || {
        crate::command::output(Command::new("dpkg-query").args([
            "-W",
            "-f",
            "${Package} ${Version} ${db:Status-Abbrev}\n",
        ]))
    };
    let before = packages();
    run_cmd(
        cargo()
            .current_dir(workspace)
            .args(["xtask", "run", "--", "--version"]),
    )?;
    let after = packages();
    if before != after {
        let before: std::collections::BTreeSet<&str> =
            before.as_deref().unwrap_or_default().lines().collect();
        let changed: Vec<&str> = after
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter(|l| !before.contains(l))
            .collect();
        anyhow::bail!("cargo xtask run changed Debian packages: {changed:?}");
    }
    println!("xtask test: cargo xtask run -- --version installed no Debian package");
    Ok(())
}

/// Runs `cargo test`, passing its output through and adding every test binary's result to
/// `totals` (cargo's own last line is that of the last doc-test binary, often "0 passed", so
/// the caller prints the totals).
fn run_counting_tests(cmd: &mut Command, totals: &mut TestTotals) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("failed to wait for cargo test")?;
    if !status.success() {
        anyhow::bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Sums of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    /// The closing line CI reads.
    fn print(&self) {
        println!(
            "\nxtask test: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        );
    }

    /// Adds a line like `test result: ok. 40 passed; 0 failed; 1 ignored; 0 measured; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

fn step(name: &str) {
    eprintln!("\n=== xtask test: {name}");
}

/// Makes cargo start the binaries it runs through `sudo -E` unless we are root already.
/// Without sudo they run unprivileged, and the privileged tests say they were skipped.
fn as_root(cmd: &mut Command) {
    if is_root() {
        return;
    }
    if which::which("sudo").is_ok() {
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", SUDO_RUNNER);
    } else {
        eprintln!("xtask: not root and no sudo: privileged tests will be skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_result_lines() {
        let mut totals = TestTotals::default();
        totals.add("test result: ok. 40 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.38s");
        totals
            .add("test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        totals.add("running 5 tests");
        assert_eq!(
            totals,
            TestTotals {
                passed: 44,
                failed: 1,
                ignored: 1
            }
        );
    }
}
