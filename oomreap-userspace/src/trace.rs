//! `oomreap trace`: one line per event, as it happens.
//!
//! Like every front end it only reads the tracker: events go capture → decoder → tracker,
//! and a line is printed for each change the tracker reports.
use std::io::Write;

use oomreap_common::event::AttachKind;

use crate::{
    capture::{Capture, CaptureError, KernelCounters},
    display::{WallClock, kib},
    tracker::{Change, Tracker, Victim},
};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("failed to write output")]
    Output(#[from] std::io::Error),
}

/// What a finished trace saw.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub victims: u64,
    pub undecodable_records: u64,
    pub kernel: KernelCounters,
}

impl TraceSummary {
    /// Returns true if and only if any event was lost or unreadable.
    pub fn lost_events(&self) -> bool {
        self.undecodable_records > 0
            || self.kernel.ring_buffer_full > 0
            || self.kernel.read_failed > 0
    }
}

/// Column headings matching [`victim_line`].
pub fn header() -> String {
    format!(
        "{:<12} {:<7} {:>7} {:>7} {:<16} {:>6} {:>7} {:>7} {:>7} {:>7} {:>5}  {}",
        "TIME",
        "EVENT",
        "PID",
        "TID",
        "COMM",
        "UID",
        "ANON",
        "FILE",
        "SHMEM",
        "PGTBL",
        "ADJ",
        "TRIGGER"
    )
}

/// One line for a newly marked victim: what it was, what it held, who hit the OOM.
pub fn victim_line(clock: &WallClock, victim: &Victim) -> String {
    let unknown = || "-".to_string();
    let memory = victim.memory_at_kill;
    let mem = |f: fn(&crate::wire::VictimMemory) -> u64| {
        memory.as_ref().map_or_else(unknown, |m| kib(f(m)))
    };
    let trigger = &victim.trigger;
    format!(
        "{:<12} {:<7} {:>7} {:>7} {:<16} {:>6} {:>7} {:>7} {:>7} {:>7} {:>5}  {} {}",
        clock.time_of_day(victim.killed_at_ns),
        "victim",
        victim.tgid.map_or_else(unknown, |t| t.to_string()),
        victim.pid,
        victim.comm.clone().unwrap_or_else(unknown),
        victim.uid.map_or_else(unknown, |u| u.to_string()),
        mem(|m| m.anon_rss_kib),
        mem(|m| m.file_rss_kib),
        mem(|m| m.shmem_rss_kib),
        mem(|m| m.pgtables_kib),
        victim.oom_score_adj.map_or_else(unknown, |a| a.to_string()),
        trigger.tgid.unwrap_or(trigger.pid),
        trigger.comm.clone().unwrap_or_else(unknown),
    )
}

/// A short description of how a hook is attached.
pub fn attach_description(kind: AttachKind) -> &'static str {
    match kind {
        AttachKind::BtfTracePoint => "BTF tracepoint",
        AttachKind::TracePoint => "classic tracepoint, reduced detail",
    }
}

/// Prints events until `shutdown` completes, then reports losses on `err`.
pub async fn run(
    mut capture: Capture,
    shutdown: impl Future<Output = ()>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<TraceSummary, TraceError> {
    let clock = WallClock::now();
    let mut tracker = Tracker::default();
    let mut summary = TraceSummary::default();
    for hook in capture.hooks() {
        writeln!(
            err,
            "oomreap: tracing {} ({}); Ctrl-C to stop",
            hook.name,
            attach_description(hook.attach)
        )?;
    }
    writeln!(out, "{}", header())?;
    out.flush()?;
    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            () = &mut shutdown => break,
            batch = capture.next_batch() => batch?,
        };
        for record_error in &batch.errors {
            summary.undecodable_records += 1;
            writeln!(
                err,
                "oomreap: warning: skipped a kernel record: {record_error}"
            )?;
        }
        for event in &batch.events {
            if let Some(Change::VictimMarked(id)) = tracker.apply(event)
                && let Some(victim) = tracker.victim(id)
            {
                writeln!(out, "{}", victim_line(&clock, victim))?;
            }
        }
        out.flush()?;
    }
    summary.victims = tracker.totals().victims;
    summary.kernel = capture.counters()?;
    drop(capture);
    report_losses(&summary, err)?;
    Ok(summary)
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
mod tests {
    use super::*;
    use crate::{
        testing::mark_victim_raw,
        wire::{decode, encode},
    };

    fn victim_from(raw: oomreap_common::event::MarkVictimEvent) -> Victim {
        let mut tracker = Tracker::default();
        let Some(Change::VictimMarked(id)) = tracker.apply(&decode(&encode(&raw)).unwrap()) else {
            panic!("mark_victim must mark a victim");
        };
        tracker.victim(id).unwrap().clone()
    }

    #[test]
    fn a_victim_line_has_every_column() {
        let clock = WallClock::with_offset_ns(0);
        let line = victim_line(
            &clock,
            &victim_from(mark_victim_raw(4242, "hog", 256 * 1024)),
        );
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &columns[1..],
            [
                "victim", "4242", "4242", "hog", "1000", "256.0M", "1.0M", "0", "600K", "0",
                "4242", "hog"
            ]
        );
        assert_eq!(header().split_whitespace().count(), columns.len() - 1);
    }

    #[test]
    fn unknown_fields_print_as_dashes() {
        let mut raw = mark_victim_raw(7, "x", 1);
        raw.fields = 0;
        let line = victim_line(&WallClock::with_offset_ns(0), &victim_from(raw));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &columns[2..11],
            ["-", "7", "-", "-", "-", "-", "-", "-", "-"]
        );
    }

    #[test]
    fn losses_are_reported_only_when_non_zero() {
        let mut err = Vec::new();
        report_losses(&TraceSummary::default(), &mut err).unwrap();
        assert!(err.is_empty());
        let summary = TraceSummary {
            kernel: KernelCounters {
                ring_buffer_full: 3,
                read_failed: 0,
            },
            ..TraceSummary::default()
        };
        report_losses(&summary, &mut err).unwrap();
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "oomreap: 3 events lost: the ring buffer was full\n"
        );
        assert!(summary.lost_events());
    }
}
