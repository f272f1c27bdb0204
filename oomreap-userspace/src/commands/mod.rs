//! The commands `main` dispatches to, one file each, and what they share: the async runtime,
//! shutdown on a signal, the live intake and recordings.
mod doctor;
mod inject;
mod run;
mod serve;
mod top;
mod trace;

use std::process::ExitCode;

use anyhow::Context as _;
pub(crate) use doctor::run_doctor;
pub(crate) use inject::{run_helper, run_inject};
use oomreap::{
    capture::{Capture, CaptureOptions},
    clock::WallClock,
    intake::{Intake, IntakeOptions},
    kernel::privilege,
    recording::{self, RecordWriter},
    trace::TraceSummary,
};
pub(crate) use run::run_run;
pub(crate) use serve::run_serve;
pub(crate) use top::run_top;
pub(crate) use trace::{run_record, run_trace};

use crate::EXIT_LOST_EVENTS;

/// Attaches and starts a live intake, recording to `record` if given; `stacks` and
/// `candidates` read what a victim's detail and its candidates need (see `IntakeOptions`).
pub(crate) fn live_intake(
    options: &CaptureOptions,
    record: Option<&std::path::Path>,
    stacks: bool,
    candidates: bool,
) -> anyhow::Result<Intake> {
    let clock = WallClock::now();
    let record = record
        .map(|path| create_recording(path, &clock))
        .transpose()?;
    let capture = Capture::start(options)?;
    Ok(Intake::live(
        capture,
        clock,
        IntakeOptions {
            record,
            stacks,
            candidates,
        },
    )?)
}

/// Reads and parses a recording for replay.
pub(crate) fn open_recording(path: &std::path::Path) -> anyhow::Result<recording::Recording> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("failed to read recording {:?}", path.display()))?;
    recording::parse(&bytes).with_context(|| format!("cannot replay {:?}", path.display()))
}

/// Creates a new recording file; never overwrites one (a recording may be all that is left of
/// an incident).
pub(crate) fn create_recording(
    path: &std::path::Path,
    clock: &WallClock,
) -> anyhow::Result<RecordWriter<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create recording {:?}", path.display()))?;
    RecordWriter::new(file, clock.offset_ns())
        .with_context(|| format!("failed to write recording {:?}", path.display()))
}

pub(crate) fn exit_code(summary: &TraceSummary) -> ExitCode {
    if summary.lost_events() {
        ExitCode::from(EXIT_LOST_EVENTS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Once attached, keeps only the capabilities in `keep`: a bug later cannot load programs
/// or touch what root may. Failure is logged, not fatal: the capture already works.
pub(crate) fn drop_capabilities(keep: &[u32]) {
    match privilege::keep_only(keep) {
        Ok(now) => log::debug!("capabilities after attach: {now:?}"),
        Err(err) => log::warn!("could not drop capabilities after attach: {err}"),
    }
}

pub(crate) fn with_runtime<T>(
    future: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(future)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal that arrives after "tracing" is printed but
/// before the loop starts must still stop us cleanly. If a handler cannot be installed, only
/// the other signal (or SIGKILL) ends us.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => {}
            () = received(terminate.as_mut()) => {}
        }
    }
}

/// Completes when `signal` arrives; never, without a handler.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
