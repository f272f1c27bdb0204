use prometheus_client::encoding::prometheus_text::encode;

use super::*;
use crate::{testing::fixtures::quick_and_jammed, wire::decode};

/// Feeds a recorded stream through a tracker into fresh metrics; returns the exposition.
fn exposition(records: &[Vec<u8>]) -> String {
    let (metrics, registry) = Metrics::new();
    let mut tracker = Tracker::default();
    let mut names = FixedNames;
    for raw in records {
        let event = decode(raw).unwrap();
        let mut changes = tracker.tick(event.timestamp_ns());
        changes.extend(tracker.apply(&event));
        for change in &changes {
            metrics.observe(&tracker, change, &mut names);
        }
    }
    for change in tracker.finish_all() {
        metrics.observe(&tracker, &change, &mut names);
    }
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    text
}

/// Each victim's cgroup named after its pid; every notifier is KVM's.
struct FixedNames;

impl LabelNames for FixedNames {
    fn victim(&mut self, v: &Victim) -> VictimNames {
        VictimNames {
            cgroup: CgroupIdentity::path(format!("/cg{}", v.pid)),
            notifiers: vec!["kvm".into()],
        }
    }

    fn notifier_owners(&mut self, notifiers: &Notifiers) -> Vec<String> {
        vec!["kvm".into(); notifiers.callbacks.len()]
    }
}

#[track_caller]
fn assert_sample(text: &str, sample: &str) {
    assert!(
        text.lines().any(|l| l == sample),
        "no {sample:?} in:\n{text}"
    );
}

#[test]
fn a_reap_after_process_mrelease_counts_no_second_victim() {
    use oomreap_common::event::EventKind;

    use crate::testing::fixtures::{kill_at, mrelease_at, reaper_at};
    let kill = kill_at(1_000, 7, "stuck");
    let text = exposition(&[
        crate::wire::encode(&kill),
        crate::wire::encode(&mrelease_at(1_500, 7, kill.victim_mm, 0)),
        crate::wire::encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)),
        crate::wire::encode(&reaper_at(EventKind::StartReaping, 3_000, 7)),
        crate::wire::encode(&crate::testing::fixtures::finish_at(3_010, 7)),
    ]);
    assert_sample(&text, "oomreap_victims_killed_total 1");
    assert_sample(&text, "oomreap_victims_total{outcome=\"released\"} 1");
    assert_sample(&text, "oomreap_victims_total{outcome=\"reaped\"} 0");
    assert_sample(&text, "oomreap_victims_total{outcome=\"unknown\"} 0");
    // The late pass is counted, once.
    assert_sample(&text, "oomreap_reaper_attempts_total{result=\"reaped\"} 1");
}

#[test]
fn outcomes_attempts_and_contention() {
    let text = exposition(&quick_and_jammed());
    assert_sample(&text, "oomreap_victims_killed_total 2");
    assert_sample(&text, "oomreap_victims_total{outcome=\"gave_up\"} 1");
    assert_sample(&text, "oomreap_victims_total{outcome=\"exited\"} 1");
    assert_sample(
        &text,
        "oomreap_cgroup_victims_total{cgroup=\"/cg7\",namespace=\"\",pod=\"\",container=\"\",pod_uid=\"\",outcome=\"gave_up\"} 1",
    );
    assert_sample(
        &text,
        "oomreap_reaper_attempts_total{result=\"lock_contended\"} 10",
    );
    assert_sample(
        &text,
        "oomreap_reaper_skips_total{cause=\"lock_contended\"} 10",
    );
    assert_sample(&text, "oomreap_lock_contention_events_total 10");
    assert_sample(&text, "oomreap_reaper_gave_up_total{cause=\"lock\"} 1");
    assert_sample(&text, "oomreap_reaper_gave_up_total{cause=\"notifier\"} 0");
    assert_sample(&text, "oomreap_kill_to_wake_seconds_count 1");
    assert_sample(&text, "oomreap_kill_to_mm_freed_seconds_count 1");
    // The recording's reaper woke exactly 2 s after the kill.
    assert_sample(&text, "oomreap_kill_to_wake_seconds_bucket{le=\"1\"} 0");
    assert_sample(&text, "oomreap_kill_to_wake_seconds_bucket{le=\"2\"} 1");
    let build = format!(
        "oomreap_build_info{{version=\"{}\",revision=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::REVISION
    );
    assert!(text.lines().any(|l| l == build), "{build} in\n{text}");
}

#[test]
fn every_family_has_help_and_type() {
    let text = exposition(&quick_and_jammed());
    for family in [
        "victims_total",
        "reaper_attempts_total",
        "kill_to_reaped_seconds",
        "lock_contention_events_total",
    ] {
        assert!(
            text.contains(&format!("# HELP oomreap_{family} ")),
            "no HELP for {family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE oomreap_{family} ")),
            "no TYPE for {family}:\n{text}"
        );
    }
}

#[test]
fn dropped_counters_follow_the_kernel_totals() {
    let (mut metrics, registry) = Metrics::new();
    let kernel = |full| KernelCounters {
        ring_buffer_full: full,
        read_failed: 0,
    };
    metrics.set_dropped(kernel(3), 1);
    metrics.set_dropped(kernel(5), 1);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_sample(
        &text,
        "oomreap_dropped_events_total{reason=\"ring_buffer_full\"} 5",
    );
    assert_sample(
        &text,
        "oomreap_dropped_events_total{reason=\"undecodable\"} 1",
    );
}

#[test]
fn hooks_show_their_mode() {
    let (metrics, registry) = Metrics::new();
    metrics.set_hooks(&[HookStatus {
        name: "oom:mark_victim",
        provides: "",
        attach: Some(crate::wire::AttachKind::BtfTracePoint),
        note: None,
        attached_when: None,
        not_needed: None,
    }]);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_sample(
        &text,
        "oomreap_hook_attached{hook=\"oom:mark_victim\",kind=\"tracepoint\",mode=\"btf_tracepoint\"} 1",
    );
}

#[test]
fn a_notifier_give_up_and_its_refusals_are_labelled() {
    use oomreap_common::event::{EventKind, NotifierRefusedEvent};

    use crate::testing::fixtures::{finish_at, header_at, kill_at, reaper_at};
    let kill = kill_at(1_000, 7, "odp");
    let mut records = vec![
        crate::wire::encode(&kill),
        crate::wire::encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)),
    ];
    // Ten passes, each partial (another follows), with one refusal in the first.
    for i in 0..10 {
        let at = 3_000 + i * 100;
        records.push(crate::wire::encode(&reaper_at(
            EventKind::StartReaping,
            at,
            7,
        )));
        if i == 0 {
            records.push(crate::wire::encode(&NotifierRefusedEvent {
                header: header_at(EventKind::NotifierRefused, at),
                mm: kill.victim_mm,
                start: 0x7f00_0000_0000,
                end: 0x7f00_0400_0000,
                caller_pid: 33,
                victim_pid: 7,
                ret: -11,
                attach: oomreap_common::event::AttachKind::Fentry as u32,
                notifier_count: 1,
                interval_notifiers: 1,
                notifiers: [0xffff_ffff_c0de_0000, 0, 0, 0],
            }));
        }
        records.push(crate::wire::encode(&finish_at(at + 1, 7)));
    }
    let text = exposition(&records);
    assert_sample(&text, "oomreap_reaper_gave_up_total{cause=\"notifier\"} 1");
    assert_sample(&text, "oomreap_reaper_gave_up_total{cause=\"lock\"} 0");
    assert_sample(
        &text,
        "oomreap_reaper_attempts_total{result=\"partial\"} 10",
    );
    assert_sample(&text, "oomreap_notifier_refusals_total{notifier=\"kvm\"} 1");
}

#[test]
fn recoveries_and_loops_exist_at_zero_and_count_each_kill_once() {
    use crate::{
        testing::fixtures::{exit_at, kill_at},
        tracker::{DomainMemory, ReadAt},
    };
    let (metrics, registry) = Metrics::new();
    let text = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
    };
    let fresh = text(&registry);
    for sample in [
        "oomreap_recoveries_total{verdict=\"recovered\",cause=\"\"} 0",
        "oomreap_recoveries_total{verdict=\"not_recovered\",cause=\"shmem\"} 0",
        "oomreap_recoveries_total{verdict=\"unknown\",cause=\"\"} 0",
        "oomreap_oom_loops_total 0",
        "oomreap_oom_loops_active 0",
        "oomreap_recovered_bytes_count 0",
    ] {
        assert_sample(&fresh, sample);
    }
    // Two kills whose domain keeps 96 MiB of shmem: both not recovered, one loop.
    let mut tracker = Tracker::default();
    let mut names = FixedNames;
    for (ms, pid) in [(1_000, 7), (5_000, 8)] {
        let mut changes =
            tracker.apply(&decode(&crate::wire::encode(&kill_at(ms, pid, "hog"))).unwrap());
        let id = tracker.victims().last().unwrap().id;
        changes.extend(
            tracker.apply(
                &decode(&crate::wire::encode(&exit_at(
                    ms + 10,
                    pid,
                    0xffff_8880_0000_1000,
                )))
                .unwrap(),
            ),
        );
        let after = DomainMemory {
            memcg: Some(4026),
            at: ReadAt::ExitMmap,
            read_after_ns: 10_000_000,
            kib: Ok([
                ("usage".to_owned(), 100_000),
                ("limit".to_owned(), 131_072),
                ("shmem".to_owned(), 98_304),
            ]
            .into()),
        };
        tracker.domain_read(id, after, &mut changes);
        for change in &changes {
            metrics.observe(&tracker, change, &mut names);
        }
    }
    let counted = text(&registry);
    assert_sample(
        &counted,
        "oomreap_recoveries_total{verdict=\"not_recovered\",cause=\"shmem\"} 2",
    );
    assert_sample(&counted, "oomreap_recovered_bytes_count 2");
    assert_sample(&counted, "oomreap_oom_loops_total 1");
    assert_sample(&counted, "oomreap_oom_loops_active 1");
    assert_sample(
        &counted,
        "oomreap_cgroup_oom_loops_total{cgroup=\"/cg8\",namespace=\"\",pod=\"\",container=\"\",pod_uid=\"\"} 1",
    );
}
