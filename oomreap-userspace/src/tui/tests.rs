//! Rendering tests: recorded streams drawn into ratatui's test backend at several sizes.
use ratatui::{Terminal, backend::TestBackend};

use super::{app::App, ui};
use crate::{
    intake::Intake,
    recording::{RecordWriter, parse},
    testing::fixtures::quick_and_jammed,
};

/// A stuck victim (pid 7) that the reaper gave up on, and one (4242) that exited at once.
fn stream() -> Vec<Vec<u8>> {
    quick_and_jammed()
}

/// A replaying intake over `records`, with wall clock = monotonic clock.
fn intake(records: &[Vec<u8>]) -> Intake {
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    for record in records {
        writer.write(record).unwrap();
    }
    let mut intake = Intake::replay(parse(&bytes).unwrap(), None);
    intake.annotations_mut().kernel = Some("6.18.0-test".into());
    intake
}

/// The dashboard after every record, as it is before the replay's end settles anything.
fn app_with(records: Vec<Vec<u8>>) -> App {
    let mut app = App::new(intake(&records), None);
    while let Some(step) = app.intake.next_now() {
        app.take(&step);
    }
    app
}

/// The screen as lines of text.
fn render(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn contains(screen: &[String], text: &str) -> bool {
    screen.iter().any(|line| line.contains(text))
}

/// Asserts that one screen line holds all `parts`, in order.
#[track_caller]
fn assert_line(screen: &[String], parts: &[&str]) {
    let found = screen.iter().any(|line| {
        let mut rest = line.as_str();
        parts.iter().all(|part| match rest.find(part) {
            Some(i) => {
                rest = &rest[i + part.len()..];
                true
            }
            None => false,
        })
    });
    assert!(found, "no line with {parts:?}:\n{}", screen.join("\n"));
}

#[track_caller]
fn assert_shows(screen: &[String], text: &str) {
    assert!(
        contains(screen, text),
        "{text:?} not on screen:\n{}",
        screen.join("\n")
    );
}

#[test]
fn the_empty_screen_says_how_to_see_it_work() {
    let screen = render(&app_with(vec![]), 80, 24);
    assert_shows(&screen, "No OOM victim yet.");
    assert_shows(&screen, "sudo oomreap inject stuck-victim");
    assert_shows(&screen, "victims 0");
    assert_shows(&screen, "q quit");
}

#[test]
fn victims_newest_first_at_80_by_24() {
    let screen = render(&app_with(stream()), 80, 24);
    assert_shows(
        &screen,
        "victims 2  being reaped 0  reaped 0  gave up 1  exited 1  other 0  dropped 0",
    );
    let stuck = screen
        .iter()
        .position(|l| l.contains("stuck"))
        .expect("stuck row");
    let quick = screen
        .iter()
        .position(|l| l.contains("quick"))
        .expect("quick row");
    assert!(stuck < quick, "newest first:\n{}", screen.join("\n"));
    assert!(
        screen[stuck].contains("GAVE UP*") && screen[stuck].contains(" 10 "),
        "{}",
        screen[stuck]
    );
    assert!(
        screen[stuck].trim_end().ends_with('L'),
        "lock-contention mark: {}",
        screen[stuck]
    );
    assert!(screen[quick].contains("exited"), "{}", screen[quick]);
    assert!(screen.iter().all(|l| l.chars().count() <= 80));
}

/// In 80 columns the cgroup column is narrow: it keeps the path's tail, the leaf that tells a
/// pod's or a container's victims apart.
#[test]
fn a_long_cgroup_path_keeps_its_tail_in_80_columns() {
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    let path = "/kubepods.slice/kubepods-burstable.slice/cri-containerd-0123456789abcdef.scope";
    writer
        .write_context(&serde_json::json!({"cgroup": {"id": 4026, "path": path}}))
        .unwrap();
    for record in stream() {
        writer.write(&record).unwrap();
    }
    let mut app = App::new(Intake::replay(parse(&bytes).unwrap(), None), None);
    while let Some(step) = app.intake.next_now() {
        app.take(&step);
    }
    let screen = render(&app, 80, 24);
    assert_line(&screen, &["stuck", "…", "ef.scope"]);
    assert!(!contains(&screen, "/kubepods"), "{}", screen.join("\n"));
}

#[test]
fn the_detail_pane_tells_the_whole_path() {
    let mut app = app_with(stream());
    app.open_detail();
    let screen = render(&app, 160, 60);
    assert_shows(&screen, "victim detail");
    assert_line(&screen, &["+2.000s", "reaper woke"]);
    // Ten identical skips on the same holders are one line.
    assert_shows(
        &screen,
        "attempts 1–10 (×10): skip: mmap_lock contended; writer-locked, waiters queued; owner 50 (holder, writer)",
    );
    assert!(!contains(&screen, "attempt 2:"), "{screen:#?}");
    assert_shows(&screen, "outcome: reaper gave up");
    app.back();
    assert_shows(&render(&app, 160, 60), "TIME");
}

#[test]
fn the_detail_pane_scrolls_to_the_end_of_a_long_timeline() {
    let mut app = app_with(stream());
    app.open_detail();
    // Too short for the whole timeline: the outcome is below the fold until scrolled.
    assert!(
        !contains(&render(&app, 80, 12), "outcome: reaper gave up"),
        "{:#?}",
        render(&app, 80, 12)
    );
    app.scroll_detail(100);
    let screen = render(&app, 80, 12);
    assert_shows(&screen, "outcome: reaper gave up");
    // Never past the last line.
    assert!(!contains(&screen, "at kill:"), "{screen:#?}");
    app.scroll_detail(-100);
    assert_shows(&render(&app, 80, 12), "at kill:");
}

#[test]
fn a_tall_terminal_gets_charts() {
    let screen = render(&app_with(stream()), 160, 48);
    for title in [
        "kill→reaped",
        "reap duration",
        "skip causes",
        "kills/s",
        "reclaim 0 compaction 0",
    ] {
        assert_shows(&screen, title);
    }
    assert!(
        !contains(&render(&app_with(stream()), 80, 24), "skip causes"),
        "no charts at 80×24"
    );
}

#[test]
fn the_filter_narrows_the_table() {
    let mut app = app_with(stream());
    app.start_filter();
    for c in "quick".chars() {
        app.type_filter(c);
    }
    let screen = render(&app, 80, 24);
    assert_shows(&screen, "/ quick");
    app.finish_filter();
    let screen = render(&app, 80, 24);
    assert_shows(&screen, "filter \"quick\"");
    assert!(
        contains(&screen, "quick") && !contains(&screen, "stuck"),
        "{}",
        screen.join("\n")
    );
    app.filter = "nothing-matches".into();
    assert_shows(&render(&app, 80, 24), "No victim matches the filter");
}

#[test]
fn help_lists_every_key() {
    let mut app = app_with(stream());
    app.toggle_help();
    let screen = render(&app, 80, 24);
    for (key, _) in ui::HELP {
        assert_shows(&screen, key);
    }
}

#[test]
fn help_shows_each_hook_and_how_it_is_attached() {
    use crate::{intake::HookStatus, wire::AttachKind};
    let mut app = app_with(stream());
    let hook = |name, attach| HookStatus {
        name,
        provides: "",
        attach,
        note: None,
        attached_when: None,
        not_needed: None,
    };
    app.intake.annotations_mut().hooks = vec![
        hook("oom:mark_victim", Some(AttachKind::BtfTracePoint)),
        hook("__oom_reap_task_mm", None),
    ];
    app.toggle_help();
    let screen = render(&app, 80, 40);
    assert_line(&screen, &["oom:mark_victim", "BTF tracepoint"]);
    assert_line(&screen, &["__oom_reap_task_mm", "not attached"]);
}

#[test]
fn pausing_holds_events_and_resuming_applies_them() {
    let mut app = App::new(intake(&stream()), None);
    for _ in 0..2 {
        let step = app.intake.next_now().unwrap();
        app.take(&step);
    }
    app.toggle_pause().unwrap();
    while let Some(step) = app.intake.next_now() {
        app.take(&step);
    }
    let screen = render(&app, 80, 24);
    assert_shows(&screen, "PAUSED (12 held)");
    assert!(!contains(&screen, "stuck"));
    app.toggle_pause().unwrap();
    assert_shows(&render(&app, 80, 24), "stuck");
}

#[test]
fn sorting_and_selection() {
    let mut app = app_with(stream());
    assert_eq!(app.selected_victim().map(|v| v.pid), Some(7));
    app.next();
    assert_eq!(app.selected_victim().map(|v| v.pid), Some(4242));
    app.next();
    assert_eq!(
        app.selected_victim().map(|v| v.pid),
        Some(4242),
        "stays on the last row"
    );
    app.cycle_sort();
    assert_eq!(app.sort.name(), "pid");
    assert_eq!(app.selected_victim().map(|v| v.pid), Some(7));
    app.clear_finished();
    assert_shows(&render(&app, 80, 24), "No victim matches");
}

/// Two kills in one domain that keep 96 MiB of shmem: each `shm` in the RECV column, the
/// loop in the header, the recovery in the detail pane. Recorded as a live run writes them:
/// each reading right after the event it followed.
#[test]
fn verdicts_and_a_loop_show_in_the_table_the_header_and_the_detail() {
    use crate::testing::fixtures::{exit_at, kill_at};
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    for (n, (ms, pid)) in [(1_000u64, 7u32), (5_000, 8)].into_iter().enumerate() {
        writer
            .write(&crate::wire::encode(&kill_at(ms, pid, "db")))
            .unwrap();
        writer
            .write(&crate::wire::encode(&exit_at(
                ms + 10,
                pid,
                0xffff_8880_0000_1000,
            )))
            .unwrap();
        let after = serde_json::json!({"domain_after": {
            "victim": n + 1, "memcg": 4026, "read_after_ns": 10_000_000, "at": "exit_mmap",
            "kib": {"usage": 100_000, "limit": 131_072, "shmem": 98_304},
        }});
        writer.write_context(&after).unwrap();
    }
    let mut app = App::new(Intake::replay(parse(&bytes).unwrap(), None), None);
    while let Some(step) = app.intake.next_now() {
        app.take(&step);
    }
    let screen = render(&app, 120, 30);
    assert_line(&screen, &["db", "exited", "shm"]);
    assert_shows(&screen, "OOM loop in id 4026: 2 kills, cause shmem");
    app.open_detail();
    let screen = render(&app, 120, 30);
    assert_shows(
        &screen,
        "not recovered: domain got 30.3M back in 10ms (usage 97.7M of 128.0M); 96.0M shmem",
    );
}
