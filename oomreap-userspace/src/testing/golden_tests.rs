//! Golden outputs: every recording in `tests/golden/` replayed through each front end (trace as
//! text and JSON, top's list and detail screens, serve's /metrics) must give exactly the
//! committed output beside it. A change of output is then a visible diff in review, and a
//! refactor that should change nothing is proven to change nothing.
//!
//! `synthetic.rec` is made here from the fixtures. `live-KERNEL-SCENARIO.rec` were made by
//! `oomreap record` during `oomreap inject SCENARIO` on that kernel (tracefs mounted), so they
//! hold what a real kernel sends and the context only the recording machine knew: cgroup
//! paths, lock holders' stacks, notifier symbols.
//!
//! `OOMREAP_BLESS=1 cargo test -p oomreap-userspace --lib golden` rewrites the outputs (and the
//! synthetic recording): do it only for a change that means to change them, in its own commit.
use std::path::{Path, PathBuf};

use oomreap_common::event::EventKind;
use ratatui::{Terminal, backend::TestBackend};

use crate::{
    exporter::MetricsFeed,
    intake::Intake,
    recording::{RecordWriter, Recording, parse},
    testing::fixtures::{exit_at, kill_at, quick_and_jammed, reaper_at},
    trace::{Format, run_replay},
    tui::app::App,
    wire::encode,
};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blessing() -> bool {
    std::env::var_os("OOMREAP_BLESS").is_some()
}

/// A quick exit, a victim the reaper gave up on after ten contended attempts, and one it
/// reaped, all made by the fixture builders: the golden input that needs no kernel.
fn synthetic() -> Vec<u8> {
    let mut records = quick_and_jammed();
    let reaped = crate::testing::fixtures::with_trigger_stacks(kill_at(5_000, 99, "reaped"));
    records.extend([
        encode(&reaped),
        encode(&reaper_at(EventKind::WakeReaper, 7_000, 99)),
        encode(&reaper_at(EventKind::StartReaping, 7_001, 99)),
        encode(&oomreap_common::event::FinishReapingEvent {
            file_rss_kib: 4,
            fields: oomreap_common::event::finish_fields::RSS,
            ..crate::testing::fixtures::finish_at(7_003, 99)
        }),
        encode(&exit_at(7_010, 99, reaped.victim_mm)),
    ]);
    let mut bytes = Vec::new();
    // Wall clock = 2026-01-01T00:00:00Z at monotonic 0.
    let mut writer = RecordWriter::new(&mut bytes, 1_767_225_600_000_000_000).unwrap();
    for record in &records {
        writer.write(record).unwrap();
    }
    writer.flush().unwrap();
    bytes
}

fn trace(recording: &Recording, format: Format) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_replay(recording, format, &mut out, &mut err).unwrap();
    let mut text = String::from_utf8(out).unwrap();
    if !err.is_empty() {
        text += "--- stderr ---\n";
        text += &String::from_utf8(err).unwrap();
    }
    text
}

/// top after the whole recording: the list, then the first victim's detail pane.
fn top(recording: &Recording) -> String {
    let mut intake = Intake::replay(recording.clone(), None);
    intake.annotations_mut().kernel = Some("golden".into());
    let step = intake.play_to_end();
    let mut app = App::new(intake, None);
    app.take(&step);
    // The clock a minute on, as a dashboard left open shows it.
    let last = step.event_times.last().copied().unwrap_or_default();
    app.tick(last + 60_000_000_000);
    let mut screens = render(&app, 120, 40);
    app.first();
    app.open_detail();
    screens += "--- detail ---\n";
    screens += &render(&app, 120, 40);
    screens
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| crate::tui::ui::draw(frame, app))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        text += line.trim_end();
        text += "\n";
    }
    text
}

/// serve's exposition after the recording, cgroups named by id (no machine to ask), without
/// `oomreap_build_info`, whose revision changes with every commit.
fn metrics(recording: &Recording) -> String {
    // Step by step, as serve feeds them: each change read as the tracker stood right after it.
    let mut intake = Intake::replay(recording.clone(), None);
    let (mut feed, registry) = MetricsFeed::new(crate::exporter::DEFAULT_MAX_CGROUPS, &intake);
    while let Some(step) = intake.next_now() {
        feed.take(&intake, &step);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    // A family's series come out in hash order: sorted within each family, they compare.
    let mut out = String::new();
    let mut samples: Vec<&str> = Vec::new();
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_unstable();
        for sample in samples.drain(..) {
            *out += sample;
            *out += "\n";
        }
    };
    for line in text.lines().filter(|l| !l.contains("oomreap_build_info")) {
        if line.starts_with('#') {
            flush(&mut samples, &mut out);
            out += line;
            out += "\n";
        } else {
            samples.push(line);
        }
    }
    flush(&mut samples, &mut out);
    out
}

/// Compares `actual` with the golden file, or writes it when blessing.
fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if blessing() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        failures.push(format!(
            "{} differs from line {}:\n  expected: {:?}\n  actual:   {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        ));
    }
}

#[test]
fn every_recording_replays_to_its_golden_outputs() {
    // Wall times are shown in local time: the goldens hold UTC.
    if chrono::Local::now().offset().local_minus_utc() != 0 {
        eprintln!(
            "skipped every_recording_replays_to_its_golden_outputs: goldens are in UTC; run with TZ=UTC"
        );
        return;
    }
    let dir = golden_dir();
    let synthetic_path = dir.join("synthetic.rec");
    if blessing() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&synthetic_path, synthetic()).unwrap();
    }
    assert_eq!(
        std::fs::read(&synthetic_path).unwrap(),
        synthetic(),
        "synthetic.rec no longer matches the fixtures that made it"
    );
    let mut recordings: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .collect();
    recordings.sort();
    let mut failures = Vec::new();
    for path in &recordings {
        let recording = parse(&std::fs::read(path).unwrap()).unwrap();
        let out = path.with_extension("");
        if blessing() {
            std::fs::create_dir_all(&out).unwrap();
        }
        check(
            &out.join("trace.txt"),
            &trace(&recording, Format::Text),
            &mut failures,
        );
        check(
            &out.join("trace.jsonl"),
            &trace(&recording, Format::Json),
            &mut failures,
        );
        check(&out.join("top.txt"), &top(&recording), &mut failures);
        check(
            &out.join("metrics.txt"),
            &metrics(&recording),
            &mut failures,
        );
    }
    assert!(!recordings.is_empty(), "no recordings in {}", dir.display());
    assert!(
        failures.is_empty(),
        "golden outputs changed (OOMREAP_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
