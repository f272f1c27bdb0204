//! The intake: the one path from a source of events to the tracker's changes, under every
//! front end.
//!
//! A source (a live [`Capture`], or a [`Recording`] played at a speed or at once) gives raw
//! records; the intake writes them to the recording being made, if any, decodes them, ticks
//! the tracker only when one of its deadlines is due, applies each event, resolves what the
//! changes name by number ([`Annotations`]; live only, and written to the recording when
//! first seen) and hands the changes over as a [`Step`]. Losses — ring buffer overruns,
//! failed kernel reads, records that do not decode, a damaged recording — are counted here
//! and nowhere else. trace, top, serve and run read the tracker, the annotations and the
//! losses through it, and never see the capture.
pub mod annotations;
mod readings;

use std::{collections::VecDeque, time::Duration};

pub use annotations::{Annotations, HolderStacks, user_frame_json};

use crate::{
    capture::{Capture, CaptureError},
    clock::{WallClock, monotonic_now_ns},
    enrich::Enricher,
    recording::{RecordKind, RecordWriter, RecordingError},
    tracker::{
        AttemptResult, CandidatesRead, Change, DomainMemory, ReadAt, Tracker, VictimId, VictimVmas,
    },
    wire::{DecodeError, Event, decode},
};
pub use crate::{
    capture::{HookStatus, KernelCounters},
    enrich::{CgroupInfo, UserFrame, UserStack},
    recording::Recording,
};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("failed to write the recording")]
    Record(#[source] std::io::Error),
}

/// What a live intake does besides folding events.
#[derive(Default)]
pub struct IntakeOptions {
    /// Write the raw stream and the annotations here.
    pub record: Option<RecordWriter<std::fs::File>>,
    /// Read what a victim's detail shows: lock holders' kernel stacks when a contended
    /// attempt names new ones, the trigger's user stack and the victim's mappings (trace and
    /// top; not serve, which keeps ten thousand victims within a fixed memory budget).
    pub stacks: bool,
    /// Read the processes of each kill's domain for its candidates (trace, top and run).
    pub candidates: bool,
}

/// What one call of [`Intake::next`] brought.
#[derive(Debug, Default)]
pub struct Step {
    /// The tracker's changes, in order.
    pub changes: Vec<Change>,
    /// The times of the events applied (CLOCK_MONOTONIC ns), for rates.
    pub event_times: Vec<u64>,
    /// Records skipped, each with why (already counted in [`Losses`]).
    pub warnings: Vec<String>,
}

/// Everything lost on the way, counted once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// The kernel programs' own counters (live).
    pub kernel: KernelCounters,
    /// Records that did not decode, or context records that did not parse.
    pub undecodable: u64,
    /// Why a replay stopped early, if it did.
    pub recording_error: Option<RecordingError>,
}

impl Losses {
    /// Events lost, as one number (a damaged recording counts as one).
    pub fn dropped(&self) -> u64 {
        self.kernel.ring_buffer_full
            + self.kernel.read_failed
            + self.undecodable
            + u64::from(self.recording_error.is_some())
    }

    /// Returns true if and only if anything was lost or unreadable.
    pub fn any(&self) -> bool {
        self.dropped() > 0
    }
}

/// A recording being played.
struct Replay {
    recording: Recording,
    speed: Option<f64>,
    next: usize,
    /// When, and from which event time, paced playback started.
    started: Option<(tokio::time::Instant, u64)>,
    /// Set once the end was reached and every victim settled.
    finished: bool,
}

enum Input {
    Live(Box<Capture>),
    Replay(Replay),
}

/// Events in, changes out; see the module's documentation.
pub struct Intake {
    input: Input,
    tracker: Tracker,
    annotations: Annotations,
    /// Resolves numbers live; `None` for a replay, whose annotations are recorded.
    enricher: Option<Enricher>,
    stacks: bool,
    candidates: bool,
    record: Option<RecordWriter<std::fs::File>>,
    losses: Losses,
    clock: WallClock,
    /// Decoded events held while paused, applied on resume.
    held: Option<VecDeque<Event>>,
    /// Raw records the capture gave that are not yet taken, one a step.
    unread: VecDeque<Vec<u8>>,
    /// An event recorded and decoded, whose step comes after the tick step before it.
    due: Option<Event>,
    /// Domain readings a replay read after a wire record, handed to the tracker once that
    /// record's event is applied, as they were live.
    readings: Vec<(VictimId, readings::Reading)>,
}

impl Intake {
    /// An intake over an attached capture; `clock` must be the one `options.record` (if
    /// any) was created with, so a replay shows the same times.
    pub fn live(
        capture: Capture,
        clock: WallClock,
        options: IntakeOptions,
    ) -> Result<Self, IntakeError> {
        let mut annotations = Annotations::default();
        annotations.kernel = crate::kernel::release();
        annotations.hooks = capture.hooks().to_vec();
        let mut intake = Self {
            input: Input::Live(Box::new(capture)),
            tracker: Tracker::default(),
            enricher: Some(Enricher::live()),
            stacks: options.stacks,
            candidates: options.candidates,
            record: options.record,
            losses: Losses::default(),
            clock,
            held: None,
            unread: VecDeque::new(),
            due: None,
            readings: Vec::new(),
            annotations,
        };
        let source = intake.annotations.source_record();
        intake.write_context(&source)?;
        Ok(intake)
    }

    /// An intake playing a recording.
    pub fn replay(recording: Recording, speed: Option<f64>) -> Self {
        let losses = Losses {
            recording_error: recording.error.clone(),
            ..Losses::default()
        };
        Self {
            clock: WallClock::with_offset_ns(recording.wall_offset_ns),
            input: Input::Replay(Replay {
                recording,
                speed: speed.filter(|s| *s > 0.0),
                next: 0,
                started: None,
                finished: false,
            }),
            tracker: Tracker::default(),
            annotations: Annotations::default(),
            enricher: None,
            stacks: false,
            candidates: false,
            record: None,
            losses,
            held: None,
            unread: VecDeque::new(),
            due: None,
            readings: Vec::new(),
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    pub fn losses(&self) -> &Losses {
        &self.losses
    }

    /// The wall clock event times are shown in.
    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// Returns true if and only if events come from a recording.
    pub fn is_replay(&self) -> bool {
        matches!(self.input, Input::Replay(_))
    }

    /// Waits for the next step. `None` when a replay has ended (after a last step that
    /// settles every victim); a live intake never ends by itself.
    ///
    /// A step holds what one event changed, or what one tick settled, never more: a front end
    /// that words a change from the tracker's state right away sees the state that change
    /// left (a pass's start still in progress, before its finish in the same batch).
    pub async fn next(&mut self) -> Result<Option<Step>, IntakeError> {
        if let Some(step) = self.step_ready()? {
            return Ok(Some(step));
        }
        let mut step = Step::default();
        match &mut self.input {
            Input::Live(capture) => {
                let due = self.tracker.next_deadline().filter(|_| self.held.is_none());
                tokio::select! {
                    records = capture.next_records() => {
                        self.unread.extend(records?);
                        self.losses.kernel = capture.counters()?;
                    }
                    () = sleep_until_monotonic(due), if due.is_some() => {
                        // Records already in the ring buffer happened before now: they go
                        // first, or a slow reader (a busy machine, a TCG guest) would settle a
                        // victim whose next steps wait to be read.
                        let pending = capture.records_now();
                        if pending.is_empty() {
                            step.changes = self.tracker.tick(monotonic_now_ns());
                            self.annotate(0, &mut step)?;
                            return Ok(Some(step));
                        }
                        self.unread.extend(pending);
                        self.losses.kernel = capture.counters()?;
                    }
                }
                // A wake-up may bring no record (an empty step, as before).
                return Ok(Some(self.step_ready()?.unwrap_or_default()));
            }
            Input::Replay(replay) => {
                if replay.next == replay.recording.records.len() {
                    if replay.finished {
                        return Ok(None);
                    }
                    step.changes = self.end_replay();
                    return Ok(Some(step));
                }
                if let Some(at) = replay.due_at() {
                    tokio::time::sleep_until(at).await;
                }
                self.replay_one(&mut step);
            }
        }
        Ok(Some(step))
    }

    /// What the kernel already emitted but was not read yet, one step per record, without
    /// waiting or settling anything: taken when tracing stops, so a reader that lags (a busy
    /// machine, a TCG guest) loses none of it. Empty for a replay.
    pub fn drain(&mut self) -> Result<Vec<Step>, IntakeError> {
        if let Input::Live(capture) = &mut self.input {
            self.unread.extend(capture.records_now());
            self.losses.kernel = capture.counters()?;
        } else {
            return Ok(Vec::new());
        }
        let mut steps = Vec::new();
        while let Some(step) = self.step_ready()? {
            steps.push(step);
        }
        Ok(steps)
    }

    /// The step of an event already in hand, without waiting: one whose tick came first
    /// (`due`), else the next record read but not yet taken; `None` when there is neither.
    fn step_ready(&mut self) -> Result<Option<Step>, IntakeError> {
        let mut step = Step::default();
        if let Some(event) = self.due.take() {
            self.apply(event, &mut step)?;
        } else if let Some(raw) = self.unread.pop_front() {
            self.take_wire(raw, None, &mut step)?;
        } else {
            return Ok(None);
        }
        Ok(Some(step))
    }

    /// Plays the rest of a replay at once, settling every victim at its end, as one step
    /// (for tests and tools that want the end state; a live intake gives an empty step).
    pub fn play_to_end(&mut self) -> Step {
        let mut step = Step::default();
        while let Some(next) = self.next_now() {
            step.changes.extend(next.changes);
            step.event_times.extend(next.event_times);
            step.warnings.extend(next.warnings);
        }
        if matches!(&self.input, Input::Replay(r) if !r.finished) {
            step.changes.extend(self.end_replay());
        }
        step
    }

    /// Marks a replay ended and settles every victim, as a long silence would; while paused,
    /// `resume` settles them after the held events.
    fn end_replay(&mut self) -> Vec<Change> {
        if let Input::Replay(replay) = &mut self.input {
            replay.finished = true;
        }
        if self.held.is_some() {
            return Vec::new();
        }
        self.tracker.finish_all()
    }

    /// The next step of a replay at once, unpaced, without settling at its end; `None` once
    /// every record was played, and always for a live intake.
    pub fn next_now(&mut self) -> Option<Step> {
        let mut step = Step::default();
        if let Some(event) = self.due.take() {
            // Replays write nothing, so this cannot fail.
            let _ = self.apply(event, &mut step);
            return Some(step);
        }
        let Input::Replay(replay) = &self.input else {
            return None;
        };
        if replay.next == replay.recording.records.len() {
            return None;
        }
        self.replay_one(&mut step);
        Some(step)
    }

    /// The annotations, to set up a test's view.
    #[cfg(test)]
    pub(crate) fn annotations_mut(&mut self) -> &mut Annotations {
        &mut self.annotations
    }

    /// Holds decoded events instead of applying them (top's pause); the source is still
    /// read and recorded, so nothing is lost.
    pub fn pause(&mut self) {
        self.held.get_or_insert_with(VecDeque::new);
    }

    /// Applies what was held during a pause.
    pub fn resume(&mut self) -> Result<Step, IntakeError> {
        let mut step = Step::default();
        for event in self.held.take().unwrap_or_default() {
            let start = step.changes.len();
            step.changes.extend(self.tick_due(event.timestamp_ns()));
            self.annotate(start, &mut step)?;
            self.apply(event, &mut step)?;
        }
        let ended = matches!(&self.input, Input::Replay(r) if r.finished);
        if ended {
            step.changes.extend(self.tracker.finish_all());
        }
        Ok(step)
    }

    /// Returns true if and only if events are held (top's pause).
    pub fn is_paused(&self) -> bool {
        self.held.is_some()
    }

    /// Events waiting for the pause to end.
    pub fn held_events(&self) -> usize {
        self.held.as_ref().map_or(0, VecDeque::len)
    }

    /// The kernel's counters, refreshed now (live); a top-level view polls this.
    pub fn refresh_counters(&mut self) {
        if let Input::Live(capture) = &self.input
            && let Ok(counters) = capture.counters()
        {
            self.losses.kernel = counters;
        }
    }

    /// Plays the next wire record and the context records that follow it (they annotate
    /// its changes, so they must be known before the changes are shown).
    fn replay_one(&mut self, step: &mut Step) {
        let Input::Replay(replay) = &mut self.input else {
            return;
        };
        let mut wire = None;
        while let Some(record) = replay.recording.records.get(replay.next) {
            match record.kind {
                RecordKind::Context => {
                    let annotations = &mut self.annotations;
                    let readings = &mut self.readings;
                    match serde_json::from_slice(&record.bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|value| match readings::from_record(&value)? {
                            Some(reading) => {
                                readings.push(reading);
                                Ok(())
                            }
                            None => annotations.apply_record(&value),
                        }) {
                        Ok(()) => {}
                        Err(why) => {
                            self.losses.undecodable += 1;
                            step.warnings.push(format!(
                                "context record {} at byte offset {} skipped: {why}",
                                replay.next, record.offset
                            ));
                        }
                    }
                }
                RecordKind::Wire if wire.is_some() => break,
                RecordKind::Wire => wire = Some((replay.next, record.offset, record.bytes.clone())),
            }
            replay.next += 1;
        }
        if let Some((index, offset, bytes)) = wire {
            // Replays write nothing, so this cannot fail.
            let _ = self.take_wire(bytes, Some((index, offset)), step);
        }
    }

    /// Records, decodes and applies (or holds) one wire record. `at` locates a replayed one.
    fn take_wire(
        &mut self,
        raw: Vec<u8>,
        at: Option<(usize, usize)>,
        step: &mut Step,
    ) -> Result<(), IntakeError> {
        if let Some(record) = self.record.as_mut() {
            record.write(&raw).map_err(IntakeError::Record)?;
        }
        match decode(&raw) {
            Ok(event) => match self.held.as_mut() {
                Some(held) => held.push_back(event),
                None => {
                    // What silence settled before this event is a step of its own.
                    let settled = self.tick_due(event.timestamp_ns());
                    if settled.is_empty() {
                        self.apply(event, step)?;
                    } else {
                        step.changes = settled;
                        self.annotate(0, step)?;
                        self.due = Some(event);
                    }
                }
            },
            Err(error) => {
                self.losses.undecodable += 1;
                step.warnings.push(skipped(at, &error));
            }
        }
        Ok(())
    }

    /// Ticks the tracker to `at` if a deadline is due by then.
    fn tick_due(&mut self, at: u64) -> Vec<Change> {
        if self.tracker.next_deadline().is_some_and(|due| due <= at) {
            self.tracker.tick(at)
        } else {
            Vec::new()
        }
    }

    /// Applies one event (any tick it needed came first) and annotates its changes.
    fn apply(&mut self, event: Event, step: &mut Step) -> Result<(), IntakeError> {
        let at = event.timestamp_ns();
        let start = step.changes.len();
        self.tracker.apply_into(&event, &mut step.changes);
        step.event_times.push(at);
        for (victim, reading) in std::mem::take(&mut self.readings) {
            reading.hand_to(&mut self.tracker, victim, &mut step.changes);
        }
        self.annotate(start, step)
    }

    /// Resolves, live, what the changes from `start` on name by number and nobody resolved
    /// yet, and records it.
    fn annotate(&mut self, start: usize, step: &mut Step) -> Result<(), IntakeError> {
        let Some(enricher) = self.enricher.as_mut() else {
            return Ok(());
        };
        let mut records = Vec::new();
        // Victims' mappings read since the last step (asked for at their kills).
        for (victim, vmas) in enricher.vmas_read() {
            let reading = readings::Reading::Vmas(vmas);
            records.push(reading.to_record(victim));
            reading.hand_to(&mut self.tracker, victim, &mut step.changes);
        }
        // Readings may add changes (a recovery, a loop): those are annotated too.
        let mut next = start;
        while let Some(change) = step.changes.get(next).cloned() {
            next += 1;
            if let Some((victim, at)) = reading_wanted(&self.tracker, &change) {
                let memory = read_domain(enricher, &self.tracker, victim, at);
                if let Some(memory) = memory {
                    records.push(readings::to_record(victim, &memory));
                    self.tracker.domain_read(victim, memory, &mut step.changes);
                }
            }
            match &change {
                Change::VictimMarked(id) => {
                    // Not where the OOM killer's own evaluation came with the kill.
                    let exact = self
                        .tracker
                        .victim(*id)
                        .is_some_and(|v| v.candidates.is_some());
                    if let Some(read) = (self.candidates && !exact)
                        .then(|| read_candidates(enricher, &self.tracker, *id))
                        .flatten()
                    {
                        let reading = readings::Reading::Candidates(read);
                        records.push(reading.to_record(*id));
                        reading.hand_to(&mut self.tracker, *id, &mut step.changes);
                    }
                    if self.stacks {
                        ask_vmas(
                            enricher,
                            &mut self.tracker,
                            *id,
                            &mut records,
                            &mut step.changes,
                        );
                    }
                    let Some(v) = self.tracker.victim(*id) else {
                        continue;
                    };
                    let domain = v
                        .kill
                        .as_ref()
                        .and_then(|k| k.domain.as_ref()?.memcg)
                        .map(|m| m.id);
                    // The candidates' own cgroups, named where shown (a pod's containers).
                    let candidates: Vec<u64> = match v.candidates.as_deref() {
                        Some(Ok(c)) => c.listed.iter().filter_map(|c| c.process.memcg).collect(),
                        _ => Vec::new(),
                    };
                    for memcg in v.memcg_id().into_iter().chain(domain).chain(candidates) {
                        resolve_cgroup(enricher, &mut self.annotations, memcg, &mut records);
                    }
                    let callbacks = v.notifiers().into_iter().flat_map(|n| n.callbacks.iter());
                    resolve_symbols(enricher, &mut self.annotations, callbacks, &mut records);
                    if let Some(k) = v.kill.as_ref().filter(|_| self.stacks)
                        && let (Some(stacks), Some(tgid)) = (&k.trigger_stacks, k.trigger.tgid)
                        && !stacks.user.is_empty()
                    {
                        let stack = enricher.user_stack(tgid, &stacks.user);
                        records.push(self.annotations.add_user_stack(*id, stack));
                    }
                }
                Change::Mrelease { call, .. } => {
                    if let Some(memcg) = call.target.memcg_id {
                        resolve_cgroup(enricher, &mut self.annotations, memcg, &mut records);
                    }
                }
                Change::NotifierRefused { refusal, .. } => {
                    let callbacks = refusal.notifiers.callbacks.iter();
                    resolve_symbols(enricher, &mut self.annotations, callbacks, &mut records);
                }
                Change::Attempt { victim, index } if self.stacks => {
                    let Some(v) = self.tracker.victim(*victim) else {
                        continue;
                    };
                    if let Some(pids) = v.new_lock_holders(*index) {
                        let stacks = pids.iter().map(|&pid| (pid, enricher.stack(pid))).collect();
                        records.push(self.annotations.add_stacks(*victim, *index, stacks));
                    }
                }
                _ => {}
            }
        }
        for record in &records {
            self.write_context(record)?;
        }
        Ok(())
    }

    fn write_context(&mut self, record: &serde_json::Value) -> Result<(), IntakeError> {
        if let Some(writer) = self.record.as_mut() {
            writer.write_context(record).map_err(IntakeError::Record)?;
            writer.flush().map_err(IntakeError::Record)?;
        }
        Ok(())
    }
}

impl Replay {
    /// When the next record is due, for paced playback: event i plays at
    /// start + (t_i − t_0) / speed.
    fn due_at(&mut self) -> Option<tokio::time::Instant> {
        let speed = self.speed?;
        let at = self.recording.records[self.next..]
            .iter()
            .find(|r| r.kind == RecordKind::Wire)
            .and_then(|r| decode(&r.bytes).ok())?
            .timestamp_ns();
        let (start, first) = *self
            .started
            .get_or_insert_with(|| (tokio::time::Instant::now(), at));
        let offset = at.saturating_sub(first);
        Some(start + Duration::from_nanos((offset as f64 / speed) as u64))
    }
}

/// The domain reading `change` calls for, if the tracker still wants it: as the kill
/// arrives, and once the victim's memory is gone (exit_mmap; else a reap pass of the
/// reaper's; else its outcome).
fn reading_wanted(tracker: &Tracker, change: &Change) -> Option<(VictimId, ReadAt)> {
    let (victim, at) = match *change {
        Change::VictimMarked(id) => (id, ReadAt::Kill),
        Change::MmFreed(id) => (id, ReadAt::ExitMmap),
        Change::Attempt { victim, index } => {
            let attempt = tracker.victim(victim)?.attempts.get(index)?;
            if !matches!(attempt.result, AttemptResult::Reaped { .. }) {
                return None;
            }
            (victim, ReadAt::Reap)
        }
        Change::Finished(id) if tracker.victim(id)?.domain_after.is_none() => (id, ReadAt::Settled),
        _ => return None,
    };
    let wanted = match at {
        ReadAt::Kill => tracker
            .victim(victim)
            .is_some_and(|v| v.oom_domain().is_some() && v.domain_at_kill.is_none()),
        _ => tracker.wants_reading(victim, at),
    };
    wanted.then_some((victim, at))
}

/// Reads victim `victim`'s OOM domain now (a memory cgroup, or none: the machine).
fn read_domain(
    enricher: &mut Enricher,
    tracker: &Tracker,
    victim: VictimId,
    at: ReadAt,
) -> Option<DomainMemory> {
    let v = tracker.victim(victim)?;
    let memcg = v.oom_domain()?.memcg.map(|m| m.id);
    let killed_at = v.killed_at_ns()?;
    let kib = enricher
        .domain_memory(memcg)
        .map(|kinds| kinds.into_iter().map(|(k, n)| (k.to_owned(), n)).collect());
    Some(DomainMemory {
        memcg,
        at,
        read_after_ns: monotonic_now_ns().saturating_sub(killed_at),
        kib,
    })
}

/// Asks for a victim's mappings as its kill arrives (read off this thread, joined later),
/// unless its mmap_lock would make the read wait: then the reading says why, at once.
fn ask_vmas(
    enricher: &mut Enricher,
    tracker: &mut Tracker,
    victim: VictimId,
    records: &mut Vec<serde_json::Value>,
    changes: &mut Vec<Change>,
) {
    let Some(v) = tracker.victim(victim) else {
        return;
    };
    let kill = v.kill.as_ref();
    if kill.and_then(|k| k.mmap_lock_blocks_readers) == Some(true) {
        // smaps would queue on the lock holding a reference to the victim's mm: its teardown
        // (and the reap it does of an OOM victim) would then run in our reader, once the
        // lock is free, instead of in the victim or the OOM reaper.
        let reading = readings::Reading::Vmas(VictimVmas {
            read_after_ns: 0,
            classes: Err(LOCK_BLOCKS_SMAPS.into()),
        });
        records.push(reading.to_record(victim));
        reading.hand_to(tracker, victim, changes);
    } else if let (Some(tgid), Some(killed_at)) =
        (kill.and_then(|k| k.victim.tgid), v.killed_at_ns())
    {
        enricher.ask_vmas(victim, tgid, killed_at);
    }
}

/// Why a victim's mappings were not read: see [`ask_vmas`].
const LOCK_BLOCKS_SMAPS: &str = "not read: at the kill a writer held or waited for the \
    victim's mmap_lock, and reading its smaps would have queued behind it";

/// Reads the processes of a victim's OOM domain as its kill arrives, for its candidates.
fn read_candidates(
    enricher: &mut Enricher,
    tracker: &Tracker,
    victim: VictimId,
) -> Option<CandidatesRead> {
    let v = tracker.victim(victim)?;
    let memcg = v.oom_domain()?.memcg.map(|m| m.id);
    let killed_at = v.killed_at_ns()?;
    let tgid = v.kill.as_ref().and_then(|k| k.victim.tgid).unwrap_or(v.pid);
    let (processes, machine_pages) = enricher.domain_processes(memcg, tgid);
    let (processes, unread) = match processes {
        Ok((list, unread)) => (Ok(list), unread),
        Err(why) => (Err(why), 0),
    };
    Some(CandidatesRead {
        read_after_ns: monotonic_now_ns().saturating_sub(killed_at),
        machine_pages,
        unread,
        processes,
    })
}

/// Resolves a memory cgroup's path (and pod) the first time it is named, and records it.
fn resolve_cgroup(
    enricher: &mut Enricher,
    annotations: &mut Annotations,
    memcg: u64,
    records: &mut Vec<serde_json::Value>,
) {
    if !annotations.knows_cgroup(memcg)
        && let Some(info) = enricher.cgroup(memcg).cloned()
    {
        records.push(annotations.add_cgroup(memcg, info));
    }
}

/// Resolves the notifier callbacks at `addresses` not resolved yet, adding each symbol's
/// context record to `records` (an unresolvable one is shown by its address).
fn resolve_symbols<'a>(
    enricher: &mut Enricher,
    annotations: &mut Annotations,
    addresses: impl Iterator<Item = &'a u64>,
    records: &mut Vec<serde_json::Value>,
) {
    for &address in addresses {
        if !annotations.knows_symbol(address)
            && let Ok(symbol) = enricher.symbol(address)
        {
            records.push(annotations.add_symbol(address, symbol));
        }
    }
}

/// A skipped record's warning; `at` is (index, byte offset) in a recording.
fn skipped(at: Option<(usize, usize)>, error: &DecodeError) -> String {
    match at {
        Some((index, offset)) => format!("record {index} at byte offset {offset} skipped: {error}"),
        None => format!("skipped a kernel record: {error}"),
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `at` ns (at once if it has); never without one.
async fn sleep_until_monotonic(at: Option<u64>) {
    match at {
        Some(at) => {
            let wait = Duration::from_nanos(at.saturating_sub(monotonic_now_ns()));
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
