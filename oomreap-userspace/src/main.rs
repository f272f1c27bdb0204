//! The `oomreap` binary: parse flags, dispatch, map the outcome to an exit status.
//!
//! Exit status: 0 success; 1 the command ran but events were lost or a recording was damaged
//! (each is reported on stderr), or for `doctor`, oomreap cannot trace here; 2 error (bad
//! flags, missing privileges or kernel features, I/O failure).

mod cli;
mod commands;
mod generate;
mod logging;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{Cli, Command};
use commands::{
    run_doctor, run_helper, run_inject, run_record, run_run, run_serve, run_top, run_trace,
};
use logging::{LogTarget, init_logging};

// Every exit status, in one table (the command's own status passes through `run`).
/// The command ran, but events were lost or a recording was damaged; for `doctor`, oomreap
/// cannot trace here.
const EXIT_LOST_EVENTS: u8 = 1;
/// Bad flags, missing privileges or kernel features, I/O failure.
const EXIT_ERROR: u8 = 2;
/// `run`: an expectation failed.
const EXIT_EXPECTATION_FAILED: u8 = 90;
/// `run`: oomreap itself failed (kept apart from any status the command could return).
const EXIT_RUN_ERROR: u8 = 91;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The dashboard owns the terminal: its log lines go to --log FILE or nowhere.
    let log_target = match &cli.command {
        Command::Top(args) => match &args.log {
            Some(path) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => LogTarget::File(file),
                Err(err) => {
                    eprintln!(
                        "oomreap: error: failed to open log file {:?}: {err}",
                        path.display()
                    );
                    return ExitCode::from(EXIT_ERROR);
                }
            },
            None => LogTarget::Nowhere,
        },
        _ => LogTarget::Stderr,
    };
    init_logging(cli.verbose, log_target);
    let is_run = matches!(cli.command, Command::Run(_));
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oomreap: error: {err:#}");
            ExitCode::from(if is_run { EXIT_RUN_ERROR } else { EXIT_ERROR })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Top(args) => run_top(&args),
        Command::Trace(args) => run_trace(&args),
        Command::Record(args) => run_record(&args),
        Command::Doctor(args) => run_doctor(&args),
        Command::Serve(args) => run_serve(&args),
        Command::Run(args) => run_run(&args),
        Command::Inject(args) => run_inject(&args),
        Command::Helper(args) => run_helper(args.role),
        Command::Hog(args) => {
            oomreap::inject::hog::run(args.mib, args.wait_for_go).context("hog failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            generate::run(args.what, &args.dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
