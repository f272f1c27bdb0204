//! `oomreap trace` and `oomreap record`.
use std::process::ExitCode;

use oomreap::trace::{self, Format};

use super::{exit_code, live_intake, open_recording, shutdown_signal, with_runtime};
use crate::cli::{RecordArgs, TraceArgs};

pub(crate) fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    if let Some(path) = &args.replay {
        let recording = open_recording(path)?;
        let summary = trace::run_replay(
            &recording,
            format,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )?;
        return Ok(exit_code(&summary));
    }
    let record = args.record.as_deref();
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), record, true, true)?;
        let summary = trace::run(
            intake,
            format,
            shutdown_signal(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )
        .await?;
        Ok(exit_code(&summary))
    })
}

/// `oomreap record`: the live intake writing the raw stream and its annotations, with
/// nothing shown but losses.
pub(crate) fn run_record(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), Some(&args.file), true, true)?;
        let summary = trace::run(
            intake,
            Format::Text,
            shutdown_signal(),
            &mut std::io::sink(),
            &mut std::io::stderr(),
        )
        .await?;
        eprintln!(
            "oomreap: recorded {} victims to {}",
            summary.victims,
            args.file.display()
        );
        Ok(exit_code(&summary))
    })
}
