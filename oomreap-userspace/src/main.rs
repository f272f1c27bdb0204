//! The `oomreap` binary: parse flags, dispatch, map the outcome to an exit status.
//!
//! Exit status: 0 success; 1 the command ran but events were lost (each loss is reported on
//! stderr); 2 error (bad flags, missing privileges or kernel features, I/O failure).

mod cli;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{Cli, Command, TraceArgs};
use oomreap::{capture::Capture, trace};

const EXIT_LOST_EVENTS: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oomreap: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Trace(args) => run_trace(&args),
        Command::Hog(args) => {
            oomreap::hog::run(args.mib, args.wait_for_go).context("hog failed")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let capture = Capture::start(&args.into())?;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr();
        let summary = trace::run(capture, shutdown_signal(), &mut out, &mut err).await?;
        Ok(if summary.lost_events() {
            ExitCode::from(EXIT_LOST_EVENTS)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. If a handler cannot be installed the trace runs
/// until the other signal (or SIGKILL) ends it.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let term = async {
        match terminate.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr as `oomreap: LEVEL: message`: warnings by default; -v adds our info
/// lines, -vv our debug lines and the kernel programs' own, -vvv aya's internals too.
/// `OOMREAP_LOG` (env_logger syntax) overrides all of that.
fn init_logging(verbose: u8) {
    use std::io::Write as _;

    use log::LevelFilter::{Debug, Info, Warn};
    let (ours, others) = match verbose {
        0 => (Warn, Warn),
        1 => (Info, Warn),
        2 => (Debug, Warn),
        _ => (Debug, Debug),
    };
    env_logger::Builder::new()
        .filter_level(others)
        .filter_module("oomreap", ours)
        .filter_module("oomreap_ebpf", ours)
        .parse_env("OOMREAP_LOG")
        .format(|buf, record| {
            let level = record.level().to_string().to_lowercase();
            writeln!(buf, "oomreap: {level}: {}", record.args())
        })
        .init();
}
