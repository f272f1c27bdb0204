//! The intake over recorded streams: pacing aside, a replay is the live path.
use oomreap_common::event::EventKind;

use super::*;
use crate::{
    recording::parse,
    testing::fixtures::{contended_skip_at, kill_at, reaper_at},
    wire::encode,
};

/// Victim 7 jammed until the reaper gives up, with a context record naming its cgroup.
fn recording_with_context() -> Recording {
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    let kill = kill_at(1_000, 7, "stuck");
    writer.write(&encode(&kill)).unwrap();
    writer
        .write_context(&serde_json::json!({"cgroup": {"id": kill.memcg_id, "path": "/jail"}}))
        .unwrap();
    writer
        .write(&encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)))
        .unwrap();
    for i in 0..10 {
        writer
            .write(&encode(&contended_skip_at(3_000 + i * 100, 7)))
            .unwrap();
    }
    writer.write(b"garbage").unwrap();
    parse(&bytes).unwrap()
}

#[test]
fn a_context_record_is_known_when_its_event_is_shown() {
    let mut intake = Intake::replay(recording_with_context(), None);
    let step = intake.next_now().unwrap();
    assert!(matches!(step.changes[..], [Change::VictimMarked(_)]));
    let memcg = intake
        .tracker()
        .victims()
        .next()
        .unwrap()
        .kill
        .as_ref()
        .unwrap()
        .memcg_id
        .unwrap();
    assert_eq!(intake.annotations().cgroup(memcg).unwrap().path, "/jail");
}

#[test]
fn a_replay_ends_with_a_settling_step_and_counts_what_did_not_decode() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut intake = Intake::replay(recording_with_context(), None);
    let mut steps = Vec::new();
    runtime.block_on(async {
        while let Some(step) = intake.next().await.unwrap() {
            steps.push(step);
        }
    });
    let warnings: Vec<&String> = steps.iter().flat_map(|s| &s.warnings).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("record 13 at byte offset"),
        "{warnings:?}"
    );
    assert_eq!(intake.losses().undecodable, 1);
    assert_eq!(intake.losses().dropped(), 1);
    assert_eq!(intake.tracker().totals().victims, 1);
    assert!(intake.tracker().victims().all(|v| v.outcome.is_final()));
}

#[test]
fn a_pause_holds_events_until_resumed() {
    let mut intake = Intake::replay(recording_with_context(), None);
    intake.pause();
    let held = intake.play_to_end();
    assert!(held.changes.is_empty());
    assert_eq!(intake.held_events(), 12);
    let resumed = intake.resume().unwrap();
    assert_eq!(intake.held_events(), 0);
    assert!(
        resumed
            .changes
            .contains(&Change::Finished(crate::tracker::VictimId(1)))
    );
}

#[test]
fn paced_replays_keep_the_recorded_gaps() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // The wake comes 2 s after the kill: 20 ms at speed 100.
    let mut intake = Intake::replay(recording_with_context(), Some(100.0));
    runtime.block_on(async {
        let start = tokio::time::Instant::now();
        intake.next().await.unwrap();
        intake.next().await.unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20), "{took:?}");
    });
}

#[test]
fn what_silence_settled_comes_a_step_before_the_event_that_revealed_it() {
    let mut bytes = Vec::new();
    let mut writer = RecordWriter::new(&mut bytes, 0).unwrap();
    let kill = kill_at(1_000, 4242, "quick");
    writer.write(&encode(&kill)).unwrap();
    // The memory is freed long after the reaper's timer would have found the victim gone.
    writer
        .write(&encode(&crate::testing::fixtures::exit_at(
            9_000,
            4242,
            kill.victim_mm,
        )))
        .unwrap();
    let mut intake = Intake::replay(parse(&bytes).unwrap(), None);
    let kill_step = intake.next_now().unwrap();
    assert!(matches!(kill_step.changes[..], [Change::VictimMarked(_)]));
    let settled = intake.next_now().unwrap();
    assert!(
        matches!(settled.changes[..], [Change::Finished(_)]) && settled.event_times.is_empty(),
        "{settled:?}"
    );
    // The outcome was worded before the exit was applied.
    let victim = intake.tracker().victims().next().unwrap();
    assert_eq!(victim.mm_freed_at_ns, None);
    let exit = intake.next_now().unwrap();
    assert!(matches!(exit.changes[..], [Change::MmFreed(_)]), "{exit:?}");
    assert_eq!(exit.event_times, [9_000_000_000]);
    assert!(intake.next_now().is_none());
}
