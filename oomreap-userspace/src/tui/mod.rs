//! `oomreap top`: a live dashboard over the tracker, or over a recording (`--replay`).
//!
//! The loop waits on three things at once, with no polling: kernel events (or the replay's
//! next event time), terminal input, and a one-second tick that settles outcomes and moves
//! the clock. It redraws only when something changed or the second ticked. A guard restores
//! the terminal on every exit path, a panic included.

pub mod app;
mod input;
pub mod ui;

use std::{io::Stdout, time::Duration};

pub use app::{App, SourceInfo};
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt as _;
use ratatui::{Terminal, backend::CrosstermBackend};

use crate::{
    capture::{Capture, CaptureError},
    display::{WallClock, monotonic_now_ns},
    enrich::Enricher,
    recording::Recording,
    trace::text::lock_pids,
    tracker::{AttemptResult, Change},
    wire::{Event, decode},
};

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("terminal error")]
    Terminal(#[from] std::io::Error),
}

/// Where events come from.
pub enum Feed {
    Live(Box<Capture>),
    Replay {
        events: Vec<Event>,
        /// Playback speed: 2.0 plays twice as fast.
        speed: f64,
    },
}

/// Puts the terminal into raw mode on the alternate screen; `Drop` puts it back.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        // A panic must not leave the user's terminal raw: restore it before the message.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(Self)
    }
}

fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Runs the dashboard until `q`, Ctrl-C or `shutdown`.
pub async fn run(
    mut feed: Feed,
    mut app: App,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TopError> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let mut keys = EventStream::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut enricher = matches!(feed, Feed::Live(_)).then(Enricher::live);
    // Replay: event i plays at start + (t_i - t_0) / speed.
    let replay_start = tokio::time::Instant::now();
    let mut next_replay = 0usize;
    let mut undecodable = 0u64;
    tokio::pin!(shutdown);
    loop {
        if app.dirty {
            terminal.draw(|frame| ui::draw(frame, &app))?;
            app.dirty = false;
            crate::faults::after_draw();
        }
        let replay_due = match &feed {
            Feed::Replay { events, speed } => events.get(next_replay).map(|e| {
                let offset = e.timestamp_ns().saturating_sub(events[0].timestamp_ns());
                replay_start + Duration::from_nanos((offset as f64 / speed) as u64)
            }),
            Feed::Live(_) => None,
        };
        tokio::select! {
            () = &mut shutdown => break,
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) => match input::handle(&mut app, key) {
                    input::Outcome::Quit => break,
                    input::Outcome::Changes(changes) => enrich(&mut app, enricher.as_mut(), &changes),
                    input::Outcome::Continue => {}
                },
                Some(Ok(TermEvent::Resize(..))) => app.dirty = true,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => break,
            },
            batch = next_live(&mut feed) => {
                let batch = batch?;
                undecodable += batch.errors.len() as u64;
                let changes = app.ingest(batch.events);
                enrich(&mut app, enricher.as_mut(), &changes);
            }
            () = sleep_until(replay_due), if replay_due.is_some() => {
                if let Feed::Replay { events, .. } = &feed {
                    let event = events[next_replay].clone();
                    next_replay += 1;
                    app.ingest(vec![event]);
                }
            }
            _ = second.tick() => {
                let now = match &feed {
                    Feed::Live(capture) => {
                        app.dropped = capture.counters().map_or(app.dropped, |c| c.ring_buffer_full + c.read_failed) + undecodable;
                        monotonic_now_ns()
                    }
                    // A replay's clock is the last event played; at the end, settle everything.
                    Feed::Replay { events, .. } if next_replay == events.len() && !events.is_empty() => {
                        let changes = app.tracker.finish_all();
                        app.dirty |= !changes.is_empty();
                        app.now_ns
                    }
                    Feed::Replay { .. } => app.now_ns,
                };
                let changes = app.tick(now);
                enrich(&mut app, enricher.as_mut(), &changes);
            }
        }
    }
    Ok(())
}

async fn next_live(feed: &mut Feed) -> Result<crate::capture::Batch, CaptureError> {
    match feed {
        Feed::Live(capture) => capture.next_batch().await,
        Feed::Replay { .. } => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Live context for what just changed: cgroup paths for new victims, lock holders' stacks
/// for a contended attempt with new holders.
fn enrich(app: &mut App, enricher: Option<&mut Enricher>, changes: &[Change]) {
    let Some(enricher) = enricher else { return };
    for change in changes {
        match change {
            Change::VictimMarked(id) => {
                let callbacks: Vec<u64> = app
                    .tracker
                    .victim(*id)
                    .and_then(|v| v.notifiers.as_ref())
                    .map(|n| n.callbacks.clone())
                    .unwrap_or_default();
                for address in callbacks {
                    if let Ok(symbol) = enricher.symbol(address) {
                        let name = format!("{} ({symbol})", crate::enrich::notifier_owner(&symbol));
                        app.notifier_names.insert(address, name);
                    }
                }
                if let Some(memcg) = app.tracker.victim(*id).and_then(|v| v.memcg_id)
                    && !app.cgroup_names.contains_key(&memcg)
                    && let Some(info) = enricher.cgroup(memcg)
                {
                    app.cgroup_names.insert(memcg, info.display_name());
                }
            }
            Change::Attempt { victim, index } => {
                let Some(v) = app.tracker.victim(*victim) else {
                    continue;
                };
                let Some(AttemptResult::Skipped {
                    lock: Some(lock), ..
                }) = v.attempts.get(*index).map(|a| &a.result)
                else {
                    continue;
                };
                let pids = lock_pids(lock);
                let known = (0..*index).any(|i| {
                    app.stacks.contains_key(&(*victim, i))
                        && app.stacks[&(*victim, i)]
                            .iter()
                            .map(|(p, _)| *p)
                            .collect::<Vec<_>>()
                            == pids
                });
                if !known {
                    let stacks = pids.iter().map(|&pid| (pid, enricher.stack(pid))).collect();
                    app.stacks.insert((*victim, *index), stacks);
                }
            }
            _ => {}
        }
    }
}

/// Decodes a recording for replay; damaged or unknown records are counted as dropped.
pub fn replay_feed(recording: &Recording, speed: f64) -> (Feed, u64) {
    let mut bad = u64::from(recording.error.is_some());
    let events = recording
        .records
        .iter()
        .filter_map(|(_, raw)| decode(raw).map_err(|_| bad += 1).ok())
        .collect();
    (Feed::Replay { events, speed }, bad)
}

/// The wall clock a replay shows: the one the recording was made with.
pub fn replay_clock(recording: &Recording) -> WallClock {
    WallClock::with_offset_ns(recording.wall_offset_ns)
}

#[cfg(test)]
mod tests;
