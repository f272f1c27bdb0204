//! Draws the dashboard from `&App`: header, victims table or detail pane, charts when the
//! terminal is tall enough, and the key line; the help overlay on top.
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{
        Bar, BarChart, BarGroup, Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table,
        TableState, Wrap,
    },
};

use super::app::{App, Mode};
use crate::{
    tracker::{Attempt, AttemptResult, Cause, Outcome, SkipCause, Verdict, Victim},
    wording::{
        candidates_text, domain_memory_text, duration, kib, lock_text, notifier_names,
        oom_domain_text, oom_loop_text, recovery_text, skip_cause_brief, summary,
        trigger_stacks_text,
    },
};

/// Rows a terminal needs before the charts get a panel of their own.
const CHARTS_MIN_HEIGHT: u16 = 30;
const CHARTS_HEIGHT: u16 = 12;

/// The key line, in table mode.
pub const KEYS: &str = "↑↓ move  Enter detail  / filter  s sort  p pause  c clear  ? help  q quit";

/// Every key, for the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓", "select the previous / next victim"),
    (
        "PgUp PgDn",
        "move a page; in a victim's timeline, scroll it",
    ),
    ("Home End", "first / last victim"),
    ("Enter", "open the selected victim's timeline"),
    (
        "Esc",
        "close the pane or overlay; in the table, clear the filter",
    ),
    (
        "/",
        "filter by comm, cgroup, outcome or pid (Enter to keep, Esc to drop)",
    ),
    (
        "s",
        "cycle the sort: newest, pid, comm, outcome, kill→reaped, rss",
    ),
    (
        "p",
        "pause the view (events are kept and applied on resume)",
    ),
    ("c", "clear finished victims from the table"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let [header, body, keys] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app);
    let (main, charts) = if area.height >= CHARTS_MIN_HEIGHT {
        let [main, charts] =
            Layout::vertical([Constraint::Min(5), Constraint::Length(CHARTS_HEIGHT)]).areas(body);
        (main, Some(charts))
    } else {
        (body, None)
    };
    match app.mode {
        Mode::Detail => draw_detail(frame, main, app),
        _ => draw_table(frame, main, app),
    }
    if let Some(charts) = charts {
        draw_charts(frame, charts, app);
    }
    draw_keys(frame, keys, app);
    if app.mode == Mode::Help {
        draw_help(frame, area, app);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let uptime = app.started_ns.map_or(0, |s| app.now_ns.saturating_sub(s)) / 1_000_000_000;
    let source = match &app.replay {
        Some(file) => format!("replay {file}"),
        None => format!(
            "kernel {}",
            app.intake
                .annotations()
                .kernel
                .as_deref()
                .unwrap_or_default()
        ),
    };
    let first = Line::from(vec![
        Span::styled("oomreap top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {source}  up {:02}:{:02}:{:02}  {} ev/s",
            uptime / 3600,
            uptime / 60 % 60,
            uptime % 60,
            app.events_rate()
        )),
        Span::styled(
            if app.paused() {
                format!("  PAUSED ({} held)", app.intake.held_events())
            } else {
                String::new()
            },
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
    ]);
    let c = app.counts();
    let drops = Span::styled(
        format!("dropped {}", app.dropped()),
        if app.dropped() > 0 {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        },
    );
    let second = Line::from(vec![
        Span::raw(format!(
            "victims {}  being reaped {}  reaped {}  gave up {}  exited {}  other {}  ",
            c.total, c.reaping, c.reaped, c.gave_up, c.exited, c.other
        )),
        drops,
    ]);
    let loops: Vec<String> = app
        .intake
        .tracker()
        .active_loops()
        .map(|l| oom_loop_text(l, app.intake.annotations()))
        .collect();
    let mut second = second;
    if !loops.is_empty() {
        second.spans.push(Span::styled(
            format!("  {}", loops.join("; ")),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    let all = &app.intake.annotations().hooks;
    let hooks: Vec<_> = all.iter().filter(|h| h.not_needed.is_none()).collect();
    let attached = hooks.iter().filter(|h| h.attach.is_some()).count();
    let classic = hooks
        .iter()
        .filter(|h| h.attach == Some(crate::tracker::AttachKind::TracePoint))
        .count();
    let third = if hooks.is_empty() {
        Line::from("hooks: recorded stream")
    } else {
        Line::from(format!(
            "hooks {attached}/{} attached ({} BTF, {classic} classic); `oomreap doctor` says why any is missing",
            hooks.len(),
            attached - classic
        ))
    };
    frame.render_widget(Paragraph::new(vec![first, second, third]), area);
}

/// Whether the kill gave its domain memory back, in four columns: `yes`, the cause that kept
/// it full (`shm`, `kern`, `file`, `anon`, `gave`: the reaper gave up), `?`, or `-` while
/// not yet judged. The detail pane says it in full.
fn recovery_cell(v: &Victim) -> Cell<'static> {
    let (text, color) = match v.recovery.as_ref().map(|r| &r.verdict) {
        None => ("-", Color::DarkGray),
        Some(Verdict::Recovered) => ("yes", Color::Green),
        Some(Verdict::Unknown(_)) => ("?", Color::DarkGray),
        Some(Verdict::NotRecovered(cause)) => (
            match cause {
                Cause::Shmem => "shm",
                Cause::Kernel => "kern",
                Cause::SharedFile => "file",
                Cause::Anon => "anon",
                Cause::ReaperGaveUp => "gave",
            },
            Color::Red,
        ),
    };
    Cell::from(text).style(Style::new().fg(color))
}

fn outcome_cell(v: &Victim) -> Cell<'static> {
    let (text, color) = match v.outcome {
        Outcome::Pending => ("killed".to_owned(), Color::Yellow),
        Outcome::Reaping => (format!("reaping {}/10", v.attempts.len()), Color::Yellow),
        Outcome::ExitedBeforeWake => ("exited".to_owned(), Color::Green),
        Outcome::Reaped => ("reaped".to_owned(), Color::Green),
        Outcome::AlreadyGone => ("gone".to_owned(), Color::Green),
        Outcome::GaveUp => ("GAVE UP".to_owned(), Color::Red),
        Outcome::Released => ("released".to_owned(), Color::Green),
        Outcome::Unknown => ("unknown".to_owned(), Color::DarkGray),
    };
    let text = if v.outcome_inferred {
        format!("{text}*")
    } else {
        text
    };
    Cell::from(text).style(Style::new().fg(color))
}

/// The victims table's columns and their widths; the cgroup's (`None`) takes the rest.
const COLUMNS: [(&str, Option<u16>); 10] = [
    ("TIME", Some(8)),
    ("PID", Some(7)),
    ("COMM", Some(11)),
    ("CGROUP", None),
    ("RSS", Some(7)),
    ("OUTCOME", Some(12)),
    ("RECV", Some(4)),
    ("ATT", Some(3)),
    ("K→REAPED", Some(8)),
    ("NL", Some(2)),
];
const CGROUP_MIN: u16 = 6;

/// `text` cut to its last `width` characters, `…` marking the cut.
fn tail(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let keep = width.saturating_sub(1);
    std::iter::once('…')
        .chain(text.chars().skip(count - keep))
        .collect()
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.rows();
    let title = format!(
        " victims: {} shown, sort {}{} ",
        rows.len(),
        app.sort.name(),
        if app.filter.is_empty() {
            String::new()
        } else {
            format!(", filter {:?}", app.filter)
        }
    );
    let block = Block::new().borders(Borders::TOP).title(title);
    if rows.is_empty() {
        let text = if app.tracker().totals().victims == 0 {
            vec![
                Line::from(""),
                Line::from("No OOM victim yet.").bold(),
                Line::from("To see the dashboard work, run in another terminal:"),
                Line::from("  sudo oomreap inject stuck-victim").fg(Color::Cyan),
            ]
        } else {
            vec![
                Line::from(""),
                Line::from("No victim matches the filter (Esc clears it)."),
            ]
        };
        frame.render_widget(
            Paragraph::new(text)
                .block(block)
                .alignment(Alignment::Center),
            area,
        );
        return;
    }
    let header =
        Row::new(COLUMNS.map(|(name, _)| name)).style(Style::new().add_modifier(Modifier::BOLD));
    // The cgroup column gets what the others leave (one space between columns); a longer
    // path keeps its tail, the leaf that tells victims apart.
    let fixed: u16 = COLUMNS.iter().filter_map(|(_, width)| *width).sum();
    let spacing = COLUMNS.len() as u16 - 1;
    let cgroup_width = usize::from(area.width.saturating_sub(fixed + spacing).max(CGROUP_MIN));
    let body: Vec<Row> = rows
        .iter()
        .map(|v| {
            let rss = v.memory_at_kill().map_or("-".into(), |m| {
                kib(m.anon_rss_kib + m.file_rss_kib + m.shmem_rss_kib)
            });
            let time = v.killed_at_ns().map_or("-".into(), |t| {
                app.intake.clock().local(t).format("%H:%M:%S").to_string()
            });
            let marks = format!(
                "{}{}",
                if v.has_notifiers() { "N" } else { " " },
                if v.lock_contended() { "L" } else { " " }
            );
            Row::new(vec![
                Cell::from(time),
                Cell::from(v.tgid().unwrap_or(v.pid).to_string()),
                Cell::from(v.comm().unwrap_or("-").to_owned()),
                Cell::from(tail(&app.cgroup_of(v), cgroup_width)),
                Cell::from(rss),
                outcome_cell(v),
                recovery_cell(v),
                Cell::from(v.attempts.len().to_string()),
                Cell::from(v.kill_to_reaped_ns().map_or("-".into(), duration)),
                Cell::from(marks).style(Style::new().fg(Color::Magenta)),
            ])
        })
        .collect();
    let widths =
        COLUMNS.map(|(_, width)| width.map_or(Constraint::Min(CGROUP_MIN), Constraint::Length));
    let table = Table::new(body, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App) {
    let Some(v) = app.selected_victim() else {
        return;
    };
    let mut lines = vec![
        Line::from(format!(
            "{} {} (tid {})  memcg {}  uid {}  adj {}",
            v.tgid().map_or("-".into(), |t| t.to_string()),
            v.comm().unwrap_or("-"),
            v.pid,
            app.cgroup_of(v),
            v.kill
                .as_ref()
                .and_then(|k| k.uid)
                .map_or("-".into(), |u| u.to_string()),
            v.kill
                .as_ref()
                .and_then(|k| k.oom_score_adj)
                .map_or("-".into(), |a| a.to_string()),
        ))
        .bold(),
    ];
    if let Some((m, k)) = v.kill.as_ref().and_then(|k| Some((k.memory?, k))) {
        lines.push(Line::from(format!(
            "at kill: anon {} file {} shmem {} pgtables {}; trigger {} ({})",
            kib(m.anon_rss_kib),
            kib(m.file_rss_kib),
            kib(m.shmem_rss_kib),
            kib(m.pgtables_kib),
            k.trigger.tgid.unwrap_or(k.trigger.pid),
            k.trigger.comm.as_deref().unwrap_or("-")
        )));
    }
    if let Some(domain) = v.oom_domain() {
        lines.push(Line::from(oom_domain_text(
            domain,
            app.intake.annotations(),
        )));
    }
    if let Some(memory) = &v.domain_at_kill {
        lines.push(Line::from(domain_memory_text(memory)));
    }
    if let Some(recovery) = &v.recovery {
        lines.push(Line::from(recovery_text(recovery)));
    }
    if let Some(Ok(c)) = v.candidates.as_deref() {
        lines.push(Line::from(format!(
            "why this victim: {}",
            candidates_text(c)
        )));
    }
    if let Some(text) = v
        .kill
        .as_ref()
        .and_then(|k| k.trigger_stacks.as_ref())
        .and_then(|s| trigger_stacks_text(s, app.intake.annotations().user_stack(v.id)))
    {
        lines.push(Line::from(format!("trigger {text}")));
    }
    if let Some(n) = v.notifiers() {
        let names = notifier_names(app.intake.annotations(), n);
        let names = if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join("; "))
        };
        lines.push(Line::from(format!("mmu notifiers: {}{names}", n.count)));
    }
    if let Some(after) = v.rss_after_reap() {
        lines.push(Line::from(format!(
            "after reap: anon {} file {} shmem {}",
            kib(after.anon_kib),
            kib(after.file_kib),
            kib(after.shmem_kib)
        )));
    }
    lines.push(Line::from("timeline:").bold());
    let base = v.killed_at_ns().or(v.woken_at_ns).unwrap_or_default();
    let at = |t: u64| format!("  +{:<9}", duration(t.saturating_sub(base)));
    if let Some(k) = v.killed_at_ns() {
        lines.push(Line::from(format!("{}kill", at(k))));
    }
    if let Some(w) = v.woken_at_ns {
        lines.push(Line::from(format!("{}reaper woke", at(w))));
    }
    // Identical consecutive attempts (ten skips on the same holders) fold into one line.
    let texts: Vec<String> = v.attempts.iter().map(attempt_text).collect();
    let mut i = 0;
    while i < texts.len() {
        let run = texts[i..].iter().take_while(|t| **t == texts[i]).count();
        let which = if run == 1 {
            format!("attempt {}", i + 1)
        } else {
            format!("attempts {}–{} (×{run})", i + 1, i + run)
        };
        lines.push(Line::from(format!(
            "{}{which}: {}",
            at(v.attempts[i].started_ns),
            texts[i]
        )));
        for (pid, stack) in app
            .intake
            .annotations()
            .stacks(v.id, i)
            .into_iter()
            .flatten()
        {
            let text = match stack {
                Ok(frames) => format!("      {pid}: {}", frames.join(" ← ")),
                Err(why) => format!("      {pid}: {why}"),
            };
            lines.push(Line::from(text).fg(Color::DarkGray));
        }
        i += run;
    }
    for call in &v.mreleases {
        lines.push(Line::from(format!(
            "{}process_mrelease by {} → {}",
            at(call.returned_ns),
            call.caller.tgid.unwrap_or(call.caller.pid),
            call.ret
        )));
    }
    if let Some(f) = v.mm_freed_at_ns {
        lines.push(Line::from(format!("{}exit_mmap: memory freed", at(f))));
    }
    lines.push(Line::from(format!("outcome: {}", summary(v))).bold());
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" victim detail (PgUp/PgDn scroll, Esc to close) ");
    // Rows once wrapped (word wrapping may add a few): the scroll stops when the last one is
    // at the bottom of the pane (below its one-row border).
    let width = usize::from(area.width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let visible = usize::from(area.height.saturating_sub(1));
    let furthest = u16::try_from(rows.saturating_sub(visible)).unwrap_or(u16::MAX);
    app.detail_scroll_max.set(furthest);
    let scroll = app.detail_scroll.min(furthest);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}

/// One attempt as the timeline says it, without its time or number.
fn attempt_text(a: &Attempt) -> String {
    match &a.result {
        AttemptResult::InProgress => "reaping…".to_owned(),
        AttemptResult::Reaped {
            finished_ns,
            complete,
            ..
        } => format!(
            "reap pass, {}{}",
            duration(finished_ns.saturating_sub(a.started_ns)),
            if *complete == Some(false) {
                " (partial)"
            } else {
                ""
            }
        ),
        AttemptResult::Skipped {
            reason,
            inferred,
            lock,
            ..
        } => {
            let why = format!("skip: {}", skip_cause_brief(*reason));
            let lock = lock
                .as_ref()
                .map_or(String::new(), |l| format!("; {}", lock_text(l)));
            format!("{why}{}{lock}", if *inferred { " (inferred)" } else { "" })
        }
    }
}

/// Histogram buckets: `(label, upper bound in ns)`; the last bound is open.
fn histogram<'a>(
    values: impl Iterator<Item = u64>,
    buckets: &[(&'a str, u64)],
) -> Vec<(&'a str, u64)> {
    let mut counts: Vec<(&str, u64)> = buckets.iter().map(|(label, _)| (*label, 0)).collect();
    for value in values {
        let index = buckets
            .iter()
            .position(|(_, bound)| value < *bound)
            .unwrap_or(buckets.len() - 1);
        counts[index].1 += 1;
    }
    counts
}

fn bar_chart<'a>(title: &'a str, data: &[(&'a str, u64)]) -> BarChart<'a> {
    let bars: Vec<Bar> = data
        .iter()
        .map(|(label, n)| Bar::default().label(Line::from(*label)).value(*n))
        .collect();
    BarChart::default()
        .block(Block::bordered().title(title))
        .data(BarGroup::default().bars(&bars))
        .bar_width(5)
        .bar_gap(1)
}

fn draw_charts(frame: &mut Frame, area: Rect, app: &App) {
    let [left, middle, right, rates] = Layout::horizontal([Constraint::Ratio(1, 4); 4]).areas(area);
    let victims: Vec<&Victim> = app.tracker().victims().collect();
    let reaped = histogram(
        victims.iter().filter_map(|v| v.kill_to_reaped_ns()),
        &[
            ("<2s", 2_000_000_000),
            ("<2.5", 2_500_000_000),
            ("<3s", 3_000_000_000),
            ("≥3s", u64::MAX),
        ],
    );
    frame.render_widget(bar_chart("kill→reaped", &reaped), left);
    let durations = histogram(
        victims.iter().filter_map(|v| v.reap_duration_ns()),
        &[
            ("<1ms", 1_000_000),
            ("<10", 10_000_000),
            ("<100", 100_000_000),
            ("≥.1s", u64::MAX),
        ],
    );
    frame.render_widget(bar_chart("reap duration", &durations), middle);
    let skips = &app.tracker().totals().skips;
    let causes = [
        ("lock", SkipCause::LockContended),
        ("skip", SkipCause::AlreadySkipped),
        ("?", SkipCause::Unknown),
    ]
    .map(|(label, reason)| (label, skips.get(&reason).copied().unwrap_or(0)));
    frame.render_widget(bar_chart("skip causes", &causes), right);
    let history = app.kill_history();
    let width = rates.width.saturating_sub(2) as usize;
    let recent = &history[history.len().saturating_sub(width)..];
    let retries = victims
        .iter()
        .map(|v| v.retries_by_kind())
        .fold((0, 0), |(r, c), (vr, vc)| (r + vr, c + vc));
    let [spark, text] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(rates);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title("kills/s"))
            .data(recent),
        spark,
    );
    frame.render_widget(
        Paragraph::new(format!(
            "retries before OOMs:\nreclaim {} compaction {}",
            retries.0, retries.1
        )),
        text,
    );
}

fn draw_keys(frame: &mut Frame, area: Rect, app: &App) {
    let line = match app.mode {
        Mode::Filter => Line::from(format!("/ {}█   Enter keep  Esc drop", app.filter)),
        Mode::Detail => Line::from("Esc back  ↑↓ other victims  ? help  q quit"),
        _ => Line::from(KEYS),
    };
    frame.render_widget(
        Paragraph::new(line).style(Style::new().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect, app: &App) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| Line::from(format!("{key:<11}{what}")))
        .collect();
    let hooks = &app.intake.annotations().hooks;
    if !hooks.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from("hooks:").bold());
        for hook in hooks {
            let how = match (hook.attach, &hook.not_needed) {
                (Some(kind), _) => crate::wording::attach_label(kind),
                (None, Some(_)) => "not needed",
                (None, None) => "not attached",
            };
            lines.push(Line::from(format!("  {:<38}{how}", hook.name)));
        }
    }
    let width = area.width.min(76);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (? or Esc to close) ")),
        popup,
    );
}
