//! `oomreap trace`: a line per lifecycle step as it happens (text or JSON Lines), live or from
//! a recording.
//!
//! Like every front end it only reads the tracker: events go capture → decoder → tracker, and
//! lines are printed for the changes the tracker reports.

pub mod json;
pub mod text;

use std::{io::Write, time::Duration};

use crate::{
    capture::{Capture, CaptureError, HookStatus, KernelCounters},
    display::{WallClock, monotonic_now_ns},
    enrich::Enricher,
    recording::{RecordWriter, Recording, RecordingError},
    tracker::{Change, SETTLE_NS, Tracker},
    wire::{DecodeError, decode},
};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("failed to write output")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Recording(#[from] RecordingError),
}

/// How lines look.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    /// JSON Lines, schema in docs/events.md.
    Json,
}

/// What the line printers need besides the tracker.
pub struct Context {
    pub clock: WallClock,
    /// Live runs resolve cgroups, symbols and stacks; replays cannot.
    pub enricher: Option<Enricher>,
    /// Read lock holders' stacks (live only: the tasks are gone in a replay).
    pub stacks: bool,
}

/// What a finished trace saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub victims: u64,
    pub undecodable_records: u64,
    pub kernel: KernelCounters,
    /// Why a replay stopped early, if it did.
    pub recording_error: Option<RecordingError>,
}

impl TraceSummary {
    /// Returns true if and only if any event was lost or unreadable.
    pub fn lost_events(&self) -> bool {
        self.undecodable_records > 0
            || self.kernel.ring_buffer_full > 0
            || self.kernel.read_failed > 0
            || self.recording_error.is_some()
    }
}

/// Prints changes in one format.
struct Printer<'a, W: Write> {
    format: Format,
    cx: Context,
    out: &'a mut W,
}

impl<W: Write> Printer<'_, W> {
    fn header(&mut self) -> std::io::Result<()> {
        if self.format == Format::Text {
            writeln!(self.out, "{}", text::header())?;
        }
        Ok(())
    }

    fn print(&mut self, tracker: &Tracker, changes: &[Change]) -> std::io::Result<()> {
        for change in changes {
            match self.format {
                Format::Text => {
                    for line in text::lines(tracker, change, &mut self.cx) {
                        writeln!(self.out, "{line}")?;
                    }
                }
                Format::Json => {
                    if let Some(object) = json::object(tracker, change, &mut self.cx) {
                        writeln!(self.out, "{object}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Traces live until `shutdown` completes, optionally recording the raw stream, then reports
/// losses on `err`. `clock` must be the one the recording's header was written with, so a
/// replay shows the same times.
pub async fn run_live(
    mut capture: Capture,
    format: Format,
    clock: WallClock,
    mut record: Option<RecordWriter<std::fs::File>>,
    shutdown: impl Future<Output = ()>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<TraceSummary, TraceError> {
    let mut tracker = Tracker::default();
    let mut summary = TraceSummary::default();
    announce(capture.hooks(), err)?;
    let mut printer = Printer {
        format,
        cx: Context {
            clock,
            enricher: Some(Enricher::live()),
            stacks: true,
        },
        out,
    };
    printer.header()?;
    printer.out.flush()?;
    tokio::pin!(shutdown);
    loop {
        // Outcomes settled by silence need a clock tick, but only while a victim is open.
        let settle = tracker.has_active();
        let batch = tokio::select! {
            () = &mut shutdown => break,
            batch = capture.next_batch() => batch?,
            () = tokio::time::sleep(Duration::from_nanos(SETTLE_NS / 4)), if settle => {
                let changes = tracker.tick(monotonic_now_ns());
                printer.print(&tracker, &changes)?;
                printer.out.flush()?;
                continue;
            }
        };
        if let Some(writer) = record.as_mut() {
            for raw in &batch.records {
                writer.write(raw)?;
            }
            writer.flush()?;
        }
        for record_error in &batch.errors {
            summary.undecodable_records += 1;
            writeln!(
                err,
                "oomreap: warning: skipped a kernel record: {record_error}"
            )?;
        }
        for event in &batch.events {
            let changes = tracker.tick(event.timestamp_ns());
            printer.print(&tracker, &changes)?;
            let changes = tracker.apply(event);
            printer.print(&tracker, &changes)?;
        }
        printer.out.flush()?;
    }
    summary.victims = tracker.totals().victims;
    summary.kernel = capture.counters()?;
    drop(capture);
    report_losses(&summary, err)?;
    Ok(summary)
}

/// Replays a recording through the tracker, as `run_live` would have printed it. Records up
/// to a damaged one are replayed; the damage is then reported.
pub fn run_replay(
    recording: &Recording,
    format: Format,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<TraceSummary, TraceError> {
    let mut tracker = Tracker::default();
    let mut summary = TraceSummary::default();
    let mut printer = Printer {
        format,
        cx: Context {
            clock: WallClock::with_offset_ns(recording.wall_offset_ns),
            enricher: None,
            stacks: false,
        },
        out,
    };
    printer.header()?;
    for (index, (offset, raw)) in recording.records.iter().enumerate() {
        let event = match decode(raw) {
            Ok(event) => event,
            Err(error) => {
                summary.undecodable_records += 1;
                writeln!(
                    err,
                    "oomreap: warning: {}",
                    bad_record(index, *offset, &error)
                )?;
                continue;
            }
        };
        let changes = tracker.tick(event.timestamp_ns());
        printer.print(&tracker, &changes)?;
        let changes = tracker.apply(&event);
        printer.print(&tracker, &changes)?;
    }
    let changes = tracker.finish_all();
    printer.print(&tracker, &changes)?;
    printer.out.flush()?;
    summary.victims = tracker.totals().victims;
    if let Some(error) = &recording.error {
        writeln!(
            err,
            "oomreap: error: recording damaged: {error}; everything before it was replayed"
        )?;
        summary.recording_error = Some(error.clone());
    }
    report_losses(&summary, err)?;
    Ok(summary)
}

fn bad_record(index: usize, offset: usize, error: &DecodeError) -> String {
    format!("record {index} at byte offset {offset} skipped: {error}")
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
        .filter(|h| h.attach.is_none())
        .map(|h| h.name)
        .collect();
    let classic = hooks
        .iter()
        .any(|h| h.attach == Some(oomreap_common::event::AttachKind::TracePoint));
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

fn report_losses(summary: &TraceSummary, err: &mut impl Write) -> std::io::Result<()> {
    let k = summary.kernel;
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
    if summary.undecodable_records > 0 {
        writeln!(
            err,
            "oomreap: {} kernel records could not be decoded",
            summary.undecodable_records
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
