//! The dashboard's state: the intake it reads (tracker, annotations, losses), what the user
//! selected, sorted and filtered, and the rates the tracker does not keep. Methods are named
//! for what the user intends; rendering reads `&App` only.
use std::collections::VecDeque;

use crate::{
    intake::{Intake, IntakeError, Step},
    tracker::{Change, Outcome, Tracker, Victim, VictimId},
    wording::cgroup_name,
};

/// Seconds of history in the kills-per-second sparkline.
pub const RATE_HISTORY: usize = 120;

/// Which key orders the victims table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SortKey {
    Newest,
    Pid,
    Comm,
    Outcome,
    KillToReaped,
    Rss,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Pid => "pid",
            Self::Comm => "comm",
            Self::Outcome => "outcome",
            Self::KillToReaped => "kill→reaped",
            Self::Rss => "rss",
        }
    }

    fn next(self) -> Self {
        match self {
            Self::Newest => Self::Pid,
            Self::Pid => Self::Comm,
            Self::Comm => Self::Outcome,
            Self::Outcome => Self::KillToReaped,
            Self::KillToReaped => Self::Rss,
            Self::Rss => Self::Newest,
        }
    }
}

/// What the keys do right now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Table,
    /// Typing a filter after `/`.
    Filter,
    /// The selected victim's detail pane.
    Detail,
    Help,
}

/// The dashboard's state.
pub struct App {
    pub intake: Intake,
    /// The recording's file name when replaying.
    pub replay: Option<String>,
    /// CLOCK_MONOTONIC ns when the dashboard started (or the recording's first event).
    pub started_ns: Option<u64>,
    /// The latest time seen: now for a live run, the replay position otherwise.
    pub now_ns: u64,
    /// Events counted per second, newest last.
    events_per_second: VecDeque<(u64, u64)>,
    /// Kills per second, newest last, one bucket per second of `now_ns`.
    kills: VecDeque<(u64, u64)>,
    pub mode: Mode,
    pub sort: SortKey,
    pub filter: String,
    /// Index into [`App::rows`].
    pub selected: usize,
    /// Lines the detail pane is scrolled down by (a long timeline with stacks overflows).
    pub detail_scroll: u16,
    /// The furthest the detail pane could scroll when last drawn, so scrolling stops there.
    pub detail_scroll_max: std::cell::Cell<u16>,
    /// Finished victims up to this id are hidden (`c`).
    cleared_up_to: Option<VictimId>,
    /// Set when something visible changed since the last draw.
    pub dirty: bool,
}

impl App {
    pub fn new(intake: Intake, replay: Option<String>) -> Self {
        Self {
            intake,
            replay,
            started_ns: None,
            now_ns: 0,
            events_per_second: VecDeque::new(),
            kills: VecDeque::new(),
            mode: Mode::Table,
            sort: SortKey::Newest,
            filter: String::new(),
            selected: 0,
            detail_scroll: 0,
            detail_scroll_max: std::cell::Cell::new(u16::MAX),
            cleared_up_to: None,
            dirty: true,
        }
    }

    pub fn tracker(&self) -> &Tracker {
        self.intake.tracker()
    }

    /// Returns true if and only if the view is frozen (`p`).
    pub fn paused(&self) -> bool {
        self.intake.is_paused()
    }

    /// Events lost: the kernel's counters plus records that did not decode.
    pub fn dropped(&self) -> u64 {
        self.intake.losses().dropped()
    }

    /// Takes in what the intake brought: rates, the clock, the selection.
    pub fn take(&mut self, step: &Step) {
        for &at in &step.event_times {
            self.advance(at);
            bump(&mut self.events_per_second, at / 1_000_000_000);
        }
        for change in &step.changes {
            if let Change::VictimMarked(id) = change
                && let Some(at) = self.tracker().victim(*id).and_then(|v| v.killed_at_ns())
            {
                bump(&mut self.kills, at / 1_000_000_000);
            }
        }
        if !step.changes.is_empty() {
            self.dirty = true;
        }
        self.clamp_selection();
    }

    /// Moves the clock to `now_ns` (the header's uptime and rates move every second).
    pub fn tick(&mut self, now_ns: u64) {
        if self.paused() {
            return;
        }
        self.advance(now_ns);
        self.dirty = true;
    }

    fn advance(&mut self, now_ns: u64) {
        self.started_ns.get_or_insert(now_ns);
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// Events per second over the last complete second.
    pub fn events_rate(&self) -> u64 {
        let second = self.now_ns / 1_000_000_000;
        self.events_per_second
            .iter()
            .find(|(s, _)| *s + 1 == second)
            .map_or(0, |(_, n)| *n)
    }

    /// Kills per second for the last `RATE_HISTORY` seconds, oldest first.
    pub fn kill_history(&self) -> Vec<u64> {
        let now = self.now_ns / 1_000_000_000;
        let from = now.saturating_sub(RATE_HISTORY as u64 - 1);
        (from..=now)
            .map(|s| {
                self.kills
                    .iter()
                    .find(|(k, _)| *k == s)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }

    /// The victims shown, filtered and sorted.
    pub fn rows(&self) -> Vec<&Victim> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Victim> = self
            .tracker()
            .victims()
            .filter(|v| !(v.outcome.is_final() && self.cleared_up_to.is_some_and(|c| v.id <= c)))
            .filter(|v| needle.is_empty() || self.matches(v, &needle))
            .collect();
        match self.sort {
            SortKey::Newest => rows.reverse(),
            SortKey::Pid => rows.sort_by_key(|v| (v.tgid().unwrap_or(v.pid), v.id)),
            SortKey::Comm => rows.sort_by(|a, b| a.comm().cmp(&b.comm()).then(b.id.cmp(&a.id))),
            SortKey::Outcome => {
                rows.sort_by(|a, b| a.outcome.name().cmp(b.outcome.name()).then(b.id.cmp(&a.id)))
            }
            SortKey::KillToReaped => rows.sort_by_key(|v| {
                (
                    std::cmp::Reverse(v.kill_to_reaped_ns()),
                    std::cmp::Reverse(v.id),
                )
            }),
            SortKey::Rss => rows.sort_by_key(|v| {
                (
                    std::cmp::Reverse(
                        v.memory_at_kill()
                            .map(|m| m.anon_rss_kib + m.file_rss_kib + m.shmem_rss_kib),
                    ),
                    std::cmp::Reverse(v.id),
                )
            }),
        }
        rows
    }

    /// The cgroup column's text for a victim.
    pub fn cgroup_of(&self, v: &Victim) -> String {
        match v.memcg_id() {
            Some(id) => cgroup_name(self.intake.annotations(), id),
            None => "-".into(),
        }
    }

    fn matches(&self, v: &Victim, needle: &str) -> bool {
        v.comm().is_some_and(|c| c.to_lowercase().contains(needle))
            || self.cgroup_of(v).to_lowercase().contains(needle)
            || v.outcome.name().contains(needle)
            || v.pid.to_string() == needle
    }

    /// The selected victim, if any.
    pub fn selected_victim(&self) -> Option<&Victim> {
        self.rows().get(self.selected).copied()
    }

    /// Counts by state, for the header.
    pub fn counts(&self) -> Counts {
        let totals = self.tracker().totals();
        let outcome = |o: Outcome| totals.outcomes.get(&o).copied().unwrap_or(0);
        Counts {
            total: totals.victims,
            reaping: self
                .tracker()
                .victims()
                .filter(|v| !v.outcome.is_final())
                .count() as u64,
            reaped: outcome(Outcome::Reaped),
            gave_up: outcome(Outcome::GaveUp),
            exited: outcome(Outcome::ExitedBeforeWake),
            other: outcome(Outcome::AlreadyGone)
                + outcome(Outcome::Released)
                + outcome(Outcome::Unknown),
        }
    }

    pub fn next(&mut self) {
        self.move_by(1);
    }

    pub fn previous(&mut self) {
        self.move_by(-1);
    }

    pub fn page_down(&mut self, page: usize) {
        self.move_by(page as isize);
    }

    pub fn page_up(&mut self, page: usize) {
        self.move_by(-(page as isize));
    }

    pub fn first(&mut self) {
        self.selected = 0;
        self.dirty = true;
    }

    pub fn last(&mut self) {
        self.selected = self.rows().len().saturating_sub(1);
        self.dirty = true;
    }

    pub fn open_detail(&mut self) {
        if self.selected_victim().is_some() {
            self.mode = Mode::Detail;
            self.detail_scroll = 0;
            self.dirty = true;
        }
    }

    /// Esc: back to the table from any overlay; clears the filter when already there.
    pub fn back(&mut self) {
        if self.mode == Mode::Table {
            self.filter.clear();
        }
        self.mode = Mode::Table;
        self.dirty = true;
    }

    pub fn start_filter(&mut self) {
        self.mode = Mode::Filter;
        self.dirty = true;
    }

    pub fn type_filter(&mut self, c: char) {
        self.filter.push(c);
        self.selected = 0;
        self.dirty = true;
    }

    pub fn erase_filter(&mut self) {
        self.filter.pop();
        self.dirty = true;
    }

    pub fn finish_filter(&mut self) {
        self.mode = Mode::Table;
        self.clamp_selection();
        self.dirty = true;
    }

    pub fn cycle_sort(&mut self) {
        self.sort = self.sort.next();
        self.selected = 0;
        self.dirty = true;
    }

    /// Pauses or resumes; resuming applies the events that arrived meanwhile.
    pub fn toggle_pause(&mut self) -> Result<(), IntakeError> {
        self.dirty = true;
        if !self.paused() {
            self.intake.pause();
        } else {
            let step = self.intake.resume()?;
            self.take(&step);
        }
        Ok(())
    }

    /// Hides the victims that have finished.
    pub fn clear_finished(&mut self) {
        self.cleared_up_to = self
            .tracker()
            .victims()
            .filter(|v| v.outcome.is_final())
            .map(|v| v.id)
            .max();
        self.clamp_selection();
        self.dirty = true;
    }

    pub fn toggle_help(&mut self) {
        self.mode = if self.mode == Mode::Help {
            Mode::Table
        } else {
            Mode::Help
        };
        self.dirty = true;
    }

    fn move_by(&mut self, delta: isize) {
        let len = self.rows().len();
        if len == 0 {
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(len - 1);
        self.detail_scroll = 0;
        self.dirty = true;
    }

    /// Scrolls the detail pane by `delta` lines (the drawing clamps it to the timeline).
    pub fn scroll_detail(&mut self, delta: i32) {
        self.detail_scroll = self
            .detail_scroll
            .saturating_add_signed(delta as i16)
            .min(self.detail_scroll_max.get());
        self.dirty = true;
    }

    fn clamp_selection(&mut self) {
        let len = self.rows().len();
        self.selected = self.selected.min(len.saturating_sub(1));
    }
}

/// Victims by state.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub reaping: u64,
    pub reaped: u64,
    pub gave_up: u64,
    pub exited: u64,
    pub other: u64,
}

fn bump(buckets: &mut VecDeque<(u64, u64)>, second: u64) {
    match buckets.back_mut() {
        Some((s, n)) if *s == second => *n += 1,
        _ => buckets.push_back((second, 1)),
    }
    while buckets.len() > RATE_HISTORY {
        buckets.pop_front();
    }
}
