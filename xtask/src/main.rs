//! oomreap's developer tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! Every task but `setup` and `fuzz` runs `setup` first, so a fresh machine needs no other
//! step. `setup` installs only what building needs; `test` adds the tools only tests use.

mod bench;
mod command;
mod dist;
mod fleet;
mod profile;
mod provenance;
mod setup;
mod tasks;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "oomreap's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build needs and is missing (idempotent; about a second when complete).
    Setup,
    /// Build the `oomreap` binary with its kernel programs.
    Build(tasks::BuildArgs),
    /// Build and run `oomreap ARGS` as root (through `sudo -E` when not root already).
    Run(tasks::RunArgs),
    /// The whole suite: rustfmt, clippy (user space and kernel crate), unit and privileged
    /// integration tests.
    Test(tasks::TestArgs),
    /// What users install, into target/dist/: the static binary, completions, man pages, a
    /// .deb with a systemd unit, the container image (an OCI archive) and SHA256SUMS.
    Dist(dist::DistArgs),
    /// Performance figures, each side by side with its reference, against its goal; written
    /// to docs/performance.md.
    Bench(bench::BenchArgs),
    /// Fuzz the wire decoder, the recording parser and the tracker for a while.
    Fuzz(tasks::FuzzArgs),
    /// The integration tests under qemu inside the newest Debian kernel of each line in
    /// xtask/src/vm/kernels.rs (`--kernels` lists them), once per function attach mode each
    /// kernel allows. A run of the whole matrix writes docs/kernels.md.
    VmTest(vm::VmTestArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workspace = command::workspace_root()?;
    match cli.task {
        Task::Setup => setup::run(),
        Task::Build(args) => {
            setup::run()?;
            tasks::build(&workspace, &args)
        }
        Task::Run(args) => {
            setup::run()?;
            tasks::run(&workspace, &args)
        }
        Task::Test(args) => {
            setup::run()?;
            tasks::test(&workspace, &args)
        }
        Task::Dist(args) => {
            setup::run()?;
            dist::dist(&workspace, &args).map(drop)
        }
        Task::Bench(args) => {
            setup::run()?;
            bench::bench(&workspace, &args)
        }
        Task::Fuzz(args) => tasks::fuzz(&workspace, &args),
        Task::VmTest(args) => {
            setup::run()?;
            let totals = vm::vm_test(&workspace, &args)?;
            println!(
                "xtask vm-test: {} passed, {} failed, {} skipped",
                totals.passed, totals.failed, totals.skipped
            );
            if totals.failed > 0 {
                anyhow::bail!("{} failed in the kernel matrix", totals.failed);
            }
            Ok(())
        }
    }
}
