//! `oomreap top`: a live dashboard over the tracker, or over a recording (`--replay`).
//!
//! The loop waits on three things at once, with no polling: the intake's next step (kernel
//! events, a replay's next event time, or a due settle deadline), terminal input, and a
//! one-second tick that moves the clock. It redraws only when something changed or the second ticked. A guard restores
//! the terminal on every exit path, a panic included.

pub mod app;
mod input;
pub mod ui;

use std::{io::Stdout, time::Duration};

pub use app::App;
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt as _;
use ratatui::{Terminal, backend::CrosstermBackend};

use crate::{clock::monotonic_now_ns, intake::IntakeError};

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("terminal error")]
    Terminal(#[from] std::io::Error),
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
pub async fn run(mut app: App, shutdown: impl Future<Output = ()>) -> Result<(), TopError> {
    let _guard = TerminalGuard::enter()?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let mut keys = EventStream::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    // A replay's intake ends; the dashboard stays until the user quits.
    let mut flowing = true;
    tokio::pin!(shutdown);
    loop {
        if app.dirty {
            terminal.draw(|frame| ui::draw(frame, &app))?;
            app.dirty = false;
            crate::faults::after_draw();
        }
        tokio::select! {
            () = &mut shutdown => break,
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) => match input::handle(&mut app, key) {
                    input::Outcome::Quit => break,
                    input::Outcome::TogglePause => app.toggle_pause()?,
                    input::Outcome::Continue => {}
                },
                Some(Ok(TermEvent::Resize(..))) => app.dirty = true,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => break,
            },
            step = app.intake.next(), if flowing => match step? {
                Some(step) => app.take(&step),
                None => flowing = false,
            },
            _ = second.tick() => {
                // A replay's clock is the last event played.
                let now = if app.intake.is_replay() {
                    app.now_ns
                } else {
                    app.intake.refresh_counters();
                    monotonic_now_ns()
                };
                app.tick(now);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
