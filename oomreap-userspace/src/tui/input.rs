//! Keys to intents, by mode.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Mode};

/// Rows a PgUp/PgDn moves.
const PAGE: usize = 10;

/// What a key asks of the loop beyond changing `App`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Quit,
    /// `p`: the loop pauses or resumes the intake.
    TogglePause,
}

pub fn handle(app: &mut App, key: KeyEvent) -> Outcome {
    if key.kind == KeyEventKind::Release {
        return Outcome::Continue;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Outcome::Quit;
    }
    match app.mode {
        Mode::Filter => match key.code {
            KeyCode::Enter => app.finish_filter(),
            KeyCode::Esc => {
                app.filter.clear();
                app.finish_filter();
            }
            KeyCode::Backspace => app.erase_filter(),
            KeyCode::Char(c) => app.type_filter(c),
            _ => {}
        },
        Mode::Help => match key.code {
            KeyCode::Char('q') => return Outcome::Quit,
            KeyCode::Char('?') | KeyCode::Esc => app.toggle_help(),
            _ => {}
        },
        // In the timeline, the page keys scroll it; the arrows still pick the victim.
        Mode::Detail if matches!(key.code, KeyCode::PageUp | KeyCode::PageDown) => {
            let page = PAGE as i32;
            app.scroll_detail(if key.code == KeyCode::PageUp {
                -page
            } else {
                page
            });
        }
        Mode::Table | Mode::Detail => match key.code {
            KeyCode::Char('q') => return Outcome::Quit,
            KeyCode::Up | KeyCode::Char('k') => app.previous(),
            KeyCode::Down | KeyCode::Char('j') => app.next(),
            KeyCode::PageUp => app.page_up(PAGE),
            KeyCode::PageDown => app.page_down(PAGE),
            KeyCode::Home => app.first(),
            KeyCode::End => app.last(),
            KeyCode::Enter => app.open_detail(),
            KeyCode::Esc => app.back(),
            KeyCode::Char('/') => app.start_filter(),
            KeyCode::Char('s') => app.cycle_sort(),
            KeyCode::Char('p') => return Outcome::TogglePause,
            KeyCode::Char('c') => app.clear_finished(),
            KeyCode::Char('?') => app.toggle_help(),
            _ => {}
        },
    }
    Outcome::Continue
}
