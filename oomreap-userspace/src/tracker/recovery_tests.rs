//! The recovery verdict and the loop rules over event streams with the domain readings a
//! live intake would hand in.
use super::*;
use crate::{
    testing::fixtures::{exit_at, kill_at},
    wire::{Event, decode, encode},
};

const MM: u64 = 0xffff_8880_0000_1000;

fn event<T: aya::Pod>(raw: &T) -> Event {
    decode(&encode(raw)).unwrap()
}

/// A reading `after_ms` after a kill at `killed_ms`: `usage` and `shmem` KiB of the
/// fixtures' 128 MiB limit.
fn reading(at: ReadAt, after_ms: u64, usage: u64, shmem: u64) -> DomainMemory {
    DomainMemory {
        memcg: Some(4026),
        at,
        read_after_ns: after_ms * 1_000_000,
        kib: Ok([
            ("usage".to_owned(), usage),
            ("limit".to_owned(), 131_072),
            ("shmem".to_owned(), shmem),
            ("anon".to_owned(), usage.saturating_sub(shmem)),
        ]
        .into()),
    }
}

/// A victim killed at `ms` that exits 50 ms later, with the domain at `usage`/`shmem` then.
fn kill_and_exit(t: &mut Tracker, ms: u64, pid: u32, usage: u64, shmem: u64) -> Vec<Change> {
    let mut changes = t.apply(&event(&kill_at(ms, pid, "hog")));
    let id = t.victims().last().unwrap().id;
    t.domain_read(id, reading(ReadAt::Kill, 1, 131_000, shmem), &mut changes);
    changes.extend(t.apply(&event(&exit_at(ms + 50, pid, MM))));
    t.domain_read(
        id,
        reading(ReadAt::ExitMmap, 51, usage, shmem),
        &mut changes,
    );
    changes
}

fn verdict(t: &Tracker, pid: u32) -> Verdict {
    let v = t.victims().rev().find(|v| v.pid == pid).unwrap();
    v.recovery.as_ref().expect("judged").verdict.clone()
}

#[test]
fn a_victim_whose_exit_empties_the_domain_recovered() {
    let mut t = Tracker::default();
    let changes = kill_and_exit(&mut t, 1_000, 7, 2_000, 0);
    let v = t.victims().last().unwrap();
    assert_eq!(
        changes
            .iter()
            .filter(|c| **c == Change::Recovery(v.id))
            .count(),
        1
    );
    let r = v.recovery.as_ref().unwrap();
    assert_eq!(r.verdict, Verdict::Recovered);
    assert_eq!(r.got_back_kib, Some(131_000 - 2_000));
    assert_eq!(r.read_at, Some(ReadAt::ExitMmap));
    assert_eq!(r.took_ns, Some(51_000_000));
}

#[test]
fn shmem_still_charged_past_half_the_limit_is_not_recovered_and_loops() {
    let mut t = Tracker::default();
    // The private part is freed, but 96 MiB of shmem stays.
    let first = kill_and_exit(&mut t, 1_000, 7, 100_000, 98_304);
    assert_eq!(verdict(&t, 7), Verdict::NotRecovered(Cause::Shmem));
    assert!(!first.iter().any(|c| matches!(c, Change::OomLoop { .. })));
    // The next kill in the domain within the window starts a loop, once.
    let second = kill_and_exit(&mut t, 5_000, 8, 100_000, 98_304);
    let starts = |c: &[Change]| {
        c.iter()
            .filter(|c| matches!(c, Change::OomLoop { started: true, .. }))
            .count()
    };
    assert_eq!(starts(&second), 1);
    let third = kill_and_exit(&mut t, 9_000, 9, 100_000, 98_304);
    assert_eq!(starts(&third), 0, "a loop is counted once");
    let l = t.oom_loop(Some(4026)).unwrap();
    // The kill that did not recover is the loop's first.
    assert_eq!(
        (l.kill_count, l.cause, l.ended_ns),
        (3, Some("shmem"), None)
    );
    assert_eq!(t.totals().oom_loops, 1);
    // Once the region is gone, a kill recovers the domain and ends the loop.
    let fourth = kill_and_exit(&mut t, 12_000, 10, 1_000, 0);
    assert!(fourth.contains(&Change::OomLoop {
        domain: Some(4026),
        started: false
    }));
    let l = t.oom_loop(Some(4026)).unwrap();
    assert!(l.recovered && l.ended_ns.is_some(), "{l:?}");
    assert_eq!(t.active_loops().count(), 0);
}

#[test]
fn three_kills_within_the_window_loop_even_when_each_recovered() {
    let mut t = Tracker::default();
    kill_and_exit(&mut t, 1_000, 7, 60_000, 0);
    kill_and_exit(&mut t, 20_000, 8, 60_000, 0);
    let third = kill_and_exit(&mut t, 40_000, 9, 60_000, 0);
    // The third kill starts it; its own recovery then ends it.
    assert!(third.contains(&Change::OomLoop {
        domain: Some(4026),
        started: true
    }));
    assert!(third.contains(&Change::OomLoop {
        domain: Some(4026),
        started: false
    }));
    assert_eq!(t.totals().oom_loops, 1);
}

#[test]
fn a_loop_ends_after_a_quiet_window() {
    let mut t = Tracker::default();
    kill_and_exit(&mut t, 1_000, 7, 100_000, 98_304);
    kill_and_exit(&mut t, 5_000, 8, 100_000, 98_304);
    assert_eq!(t.active_loops().count(), 1);
    let quiet_end = 5_000_000_000 + LOOP_WINDOW_NS + 1;
    assert!(t.next_deadline().is_some_and(|d| d <= quiet_end));
    assert!(t.tick(quiet_end - 1).is_empty());
    assert_eq!(t.next_deadline(), Some(quiet_end));
    let ended = t.tick(quiet_end);
    assert_eq!(
        ended,
        vec![Change::OomLoop {
            domain: Some(4026),
            started: false
        }]
    );
    assert!(!t.oom_loop(Some(4026)).unwrap().recovered);
}

#[test]
fn a_full_domain_names_what_fills_it_and_unknowns_say_why() {
    let mut t = Tracker::default();
    // 130 000 of 131 072 KiB still charged, mostly anon, and the victim gave back 1 000 KiB
    // of its 65 MiB: the rest of the domain filled it again.
    kill_and_exit(&mut t, 1_000, 7, 130_000, 0);
    assert_eq!(verdict(&t, 7), Verdict::NotRecovered(Cause::Anon));
    // A reading that failed.
    let mut changes = t.apply(&event(&kill_at(90_000, 8, "hog")));
    let id = t.victims().last().unwrap().id;
    changes.extend(t.apply(&event(&exit_at(90_050, 8, MM))));
    let failed = DomainMemory {
        kib: Err("memory cgroup 4026 was removed".into()),
        ..reading(ReadAt::ExitMmap, 50, 0, 0)
    };
    t.domain_read(id, failed, &mut changes);
    assert!(matches!(verdict(&t, 8), Verdict::Unknown(why) if why.contains("was removed")));
}

#[test]
fn a_better_reading_replaces_a_worse_until_the_verdict() {
    let mut t = Tracker::default();
    let mut changes = t.apply(&event(&kill_at(1_000, 7, "hog")));
    let id = t.victims().last().unwrap().id;
    t.domain_read(id, reading(ReadAt::Reap, 2_100, 120_000, 0), &mut changes);
    assert!(t.wants_reading(id, ReadAt::ExitMmap));
    assert!(
        !t.wants_reading(id, ReadAt::Settled),
        "a reap's reading beats the settle's"
    );
    t.domain_read(id, reading(ReadAt::ExitMmap, 2_200, 1_000, 0), &mut changes);
    changes.extend(t.apply(&event(&exit_at(3_200, 7, MM))));
    assert_eq!(
        t.victim(id)
            .unwrap()
            .recovery
            .as_ref()
            .unwrap()
            .usage_after_kib,
        Some(1_000)
    );
    assert!(
        !t.wants_reading(id, ReadAt::ExitMmap),
        "judged: nothing more is read"
    );
}

#[test]
fn a_victims_mappings_make_its_unreapable_exact_and_only_at_the_kill() {
    let mut t = Tracker::default();
    t.apply(&event(&kill_at(1_000, 7, "hog")));
    let id = t.victims().last().unwrap().id;
    // Before its mappings are read: from the RSS counters, hugetlb and PFN maps unknown.
    let inferred = t.victim(id).unwrap().unreapable_at_kill().unwrap();
    assert!(inferred.inferred);
    assert_eq!((inferred.hugetlb_kib, inferred.pfnmap_kib), (None, None));
    let classes = VmaClasses {
        vmas: 12,
        anon_kib: 60_000,
        shmem_kib: 96_000,
        file_kib: 900,
        hugetlb_kib: 2048,
        pfnmap_kib: 24,
    };
    t.vmas_read(
        id,
        VictimVmas {
            read_after_ns: 1_000_000,
            classes: Ok(classes),
        },
    );
    let exact = t.victim(id).unwrap().unreapable_at_kill().unwrap();
    assert!(!exact.inferred);
    assert_eq!(
        (
            exact.shmem_kib,
            exact.shared_file_kib,
            exact.hugetlb_kib,
            exact.pfnmap_kib
        ),
        (96_000, 900, Some(2048), Some(24))
    );
    // A read that failed leaves the counters' figures.
    t.vmas_read(
        id,
        VictimVmas {
            read_after_ns: 1_000_000,
            classes: Err("gone".into()),
        },
    );
    assert!(t.victim(id).unwrap().unreapable_at_kill().unwrap().inferred);
}
