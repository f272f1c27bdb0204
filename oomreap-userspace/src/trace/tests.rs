//! Rendering tests: recorded streams replayed into text and JSON.
use oomreap_common::event::EventKind;
use serde_json::Value;

use super::*;
use crate::{
    recording::{RecordWriter, parse},
    testing::fixtures::{contended_skip_at, exit_at, kill_at, reaper_at},
    wire::encode,
};

/// A recording file's bytes holding `records`, with wall clock = monotonic clock.
fn recording(records: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    for record in records {
        writer.write(record).unwrap();
    }
    bytes
}

fn replay(bytes: &[u8], format: Format) -> (Vec<String>, String, TraceSummary) {
    let recording = parse(bytes).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run_replay(&recording, format, &mut out, &mut err).unwrap();
    let out = String::from_utf8(out).unwrap();
    (
        out.lines().map(String::from).collect(),
        String::from_utf8(err).unwrap(),
        summary,
    )
}

/// Victim 4242 hit its limit and exited 7 ms later: the quick-exit lifecycle.
fn quick_exit() -> Vec<Vec<u8>> {
    let kill = kill_at(1_000, 4242, "hog");
    vec![encode(&kill), encode(&exit_at(1_007, 4242, kill.victim_mm))]
}

/// Victim 7 woken, then ten contended attempts.
fn gave_up() -> Vec<Vec<u8>> {
    let mut records = vec![
        encode(&kill_at(1_000, 7, "stuck")),
        encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)),
    ];
    records.extend((0..10).map(|i| encode(&contended_skip_at(3_000 + i * 100, 7))));
    records
}

fn step(line: &str) -> &str {
    line.split_whitespace().nth(4).unwrap_or_default()
}

#[test]
fn quick_exit_in_text() {
    let (lines, err, summary) = replay(&recording(&quick_exit()), Format::Text);
    assert_eq!(lines[0], text::header());
    let steps: Vec<&str> = lines[1..].iter().map(|l| step(l)).collect();
    assert_eq!(steps, ["kill", "exit_mmap", "outcome"], "{lines:#?}");
    let kill: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&kill[1..4], ["4242", "4242", "hog"]);
    assert!(
        lines[1].contains("anon 64.0M file 1.0M shmem 0 pgtables 600K"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("+7ms after kill"), "{}", lines[2]);
    assert!(
        lines[3].ends_with("exited before the reaper woke; kill→freed 7ms"),
        "{}",
        lines[3]
    );
    assert_eq!((err.as_str(), summary.victims), ("", 1));
}

#[test]
fn quick_exit_in_json() {
    let (lines, _, _) = replay(&recording(&quick_exit()), Format::Json);
    let objects: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&str> = objects
        .iter()
        .map(|o| o["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["kill", "exit_mmap", "outcome"]);
    for o in &objects {
        assert_eq!(o["schema"], 1);
        assert_eq!(o["victim"]["tid"], 4242);
    }
    assert_eq!(objects[0]["memory"]["anon_rss_kib"], 64 * 1024);
    assert_eq!(objects[0]["attach"], "btf_tracepoint");
    assert_eq!(objects[1]["since_kill_ns"], 7_000_000);
    assert_eq!(objects[2]["outcome"], "exited");
    assert_eq!(objects[2]["inferred"], false);
    assert_eq!(objects[2]["kill_to_mm_freed_ns"], 7_000_000);
    // Wall clock = monotonic here, so 1 s after the epoch, in the local time zone.
    let expected = chrono::DateTime::from_timestamp(1, 0)
        .unwrap()
        .with_timezone(&chrono::Local)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
    assert_eq!(objects[0]["time"], expected);
    assert!(
        expected.contains(":01.000000000"),
        "nine digits: {expected}"
    );
}

#[test]
fn contended_lock_names_holder_and_waiters_then_gives_up() {
    let (lines, _, _) = replay(&recording(&gave_up()), Format::Text);
    let skips: Vec<&String> = lines.iter().filter(|l| step(l) == "skip").collect();
    assert_eq!(skips.len(), 10);
    assert!(
        skips[0].contains(
            "attempt 1: mmap_lock contended; writer-locked, waiters queued; owner 50 (holder, writer); waiters 51 (waiter, write)"
        ),
        "{}",
        skips[0]
    );
    let outcome = lines.last().unwrap();
    assert!(
        outcome.contains("reaper gave up (oom_reaper: unable to reap) (inferred); 10 attempts, 10 failed; because the mmap_lock was contended at every attempt; kill→wake 2.000s"),
        "{outcome}"
    );
}

#[test]
fn a_damaged_recording_replays_what_came_before() {
    let mut bytes = recording(&gave_up());
    bytes.truncate(bytes.len() - 10);
    let (lines, err, summary) = replay(&bytes, Format::Text);
    assert_eq!(lines.iter().filter(|l| step(l) == "skip").count(), 9);
    assert!(
        err.contains("recording damaged: record 11 at byte offset"),
        "{err}"
    );
    assert!(summary.lost_events());
}

#[test]
fn an_undecodable_record_is_named_and_skipped() {
    let mut records = quick_exit();
    records.insert(1, vec![0xff; 20]);
    let (lines, err, summary) = replay(&recording(&records), Format::Text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    // The header (28 bytes), then the mark_victim record with its 4-byte length.
    let offset = 28 + 4 + size_of::<oomreap_common::event::MarkVictimEvent>();
    let expected =
        format!("record 1 at byte offset {offset} skipped: record has unknown event kind");
    assert!(err.contains(&expected), "{err}");
    assert_eq!(summary.losses.undecodable, 1);
}
