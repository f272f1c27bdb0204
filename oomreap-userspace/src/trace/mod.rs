//! `oomreap trace`: a line per lifecycle step as it happens (text or JSON Lines), live or from
//! a recording.
//!
//! Like every front end it only reads the intake: lines are printed for the changes the
//! tracker reports, worded by [`crate::wording`], with the intake's annotations.

pub mod json;
pub mod text;

use std::io::Write;

use crate::{
    intake::{HookStatus, Intake, IntakeError, Losses, Recording},
    tracker::Change,
};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("failed to write output")]
    Output(#[from] std::io::Error),
}

/// How lines look.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    /// JSON Lines, schema in docs/events.md.
    Json,
}

/// What a finished trace saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub victims: u64,
    pub losses: Losses,
}

impl TraceSummary {
    /// Returns true if and only if any event was lost or unreadable.
    pub fn lost_events(&self) -> bool {
        self.losses.any()
    }
}

/// Prints one step's changes in `format`.
fn print(
    intake: &Intake,
    changes: &[Change],
    format: Format,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for change in changes {
        match format {
            Format::Text => {
                for line in text::lines(intake, change) {
                    writeln!(out, "{line}")?;
                }
            }
            Format::Json => {
                if let Some(object) = json::object(intake, change) {
                    writeln!(out, "{object}")?;
                }
            }
        }
    }
    Ok(())
}

/// Prints a line per change until the intake ends (a replay) or `shutdown` completes, then
/// reports losses on `err`.
pub async fn run(
    mut intake: Intake,
    format: Format,
    shutdown: impl Future<Output = ()>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<TraceSummary, TraceError> {
    if !intake.is_replay() {
        announce(&intake.annotations().hooks, err)?;
    }
    if format == Format::Text {
        writeln!(out, "{}", text::header())?;
    }
    out.flush()?;
    tokio::pin!(shutdown);
    loop {
        let step = tokio::select! {
            () = &mut shutdown => break,
            step = intake.next() => step?,
        };
        let Some(step) = step else { break };
        for warning in &step.warnings {
            writeln!(err, "oomreap: warning: {warning}")?;
        }
        print(&intake, &step.changes, format, out)?;
        out.flush()?;
    }
    for step in intake.drain()? {
        for warning in &step.warnings {
            writeln!(err, "oomreap: warning: {warning}")?;
        }
        print(&intake, &step.changes, format, out)?;
    }
    out.flush()?;
    intake.refresh_counters();
    let summary = TraceSummary {
        victims: intake.tracker().totals().victims,
        losses: intake.losses().clone(),
    };
    drop(intake);
    report_losses(&summary.losses, err)?;
    Ok(summary)
}

/// Replays a recording at once, as `run` would have printed it live. Records up to a
/// damaged one are replayed; the damage is then reported.
pub fn run_replay(
    recording: &Recording,
    format: Format,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<TraceSummary, TraceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?
        .block_on(run(
            Intake::replay(recording.clone(), None),
            format,
            std::future::pending(),
            out,
            err,
        ))
}

/// Says what is attached, and what is not, on stderr.
fn announce(hooks: &[HookStatus], err: &mut impl Write) -> std::io::Result<()> {
    let attached: Vec<&str> = hooks
        .iter()
        .filter(|h| h.attach.is_some())
        .map(|h| h.name)
        .collect();
    let missing: Vec<&str> = hooks
        .iter()
        .filter(|h| h.attach.is_none() && h.not_needed.is_none())
        .map(|h| h.name)
        .collect();
    // Syscall tracepoints have no BTF form: being classic, they lose no detail.
    let classic = hooks
        .iter()
        .filter(|h| !h.name.starts_with("syscalls:"))
        .any(|h| h.attach == Some(crate::tracker::AttachKind::TracePoint));
    let kind = if classic {
        " (some as classic tracepoints: reduced detail)"
    } else {
        ""
    };
    writeln!(
        err,
        "oomreap: tracing {} hooks{kind}; Ctrl-C to stop",
        attached.len()
    )?;
    if !missing.is_empty() {
        writeln!(
            err,
            "oomreap: not attached: {} (see `oomreap doctor`)",
            missing.join(", ")
        )?;
    }
    Ok(())
}

fn report_losses(losses: &Losses, err: &mut impl Write) -> std::io::Result<()> {
    if let Some(error) = &losses.recording_error {
        writeln!(
            err,
            "oomreap: error: recording damaged: {error}; everything before it was replayed"
        )?;
    }
    let k = losses.kernel;
    if k.ring_buffer_full > 0 {
        writeln!(
            err,
            "oomreap: {} events lost: the ring buffer was full",
            k.ring_buffer_full
        )?;
    }
    if k.read_failed > 0 {
        writeln!(
            err,
            "oomreap: {} events dropped: a kernel read failed",
            k.read_failed
        )?;
    }
    if losses.undecodable > 0 {
        writeln!(
            err,
            "oomreap: {} kernel records could not be decoded",
            losses.undecodable
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
