//! Decoder + tracker throughput on one core, and the tracker's memory per victim: replays a
//! large synthetic stream (wire records, as the kernel sends them) and prints one JSON object.
//! Run by `cargo xtask bench`; `cargo bench --bench throughput` runs it alone.
use std::time::Instant;

use oomreap::{
    fixtures::{contended_skip_at, exit_at, kill_at, reaper_at},
    tracker::Tracker,
    wire::{decode, encode},
};
use oomreap_common::event::EventKind;

/// Victims in the stream, each with a kill, a wake, three contended attempts, a reap pass and
/// an exit: 8 events.
const VICTIMS: u64 = 250_000;
const ROUNDS: usize = 5;

fn stream() -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(VICTIMS as usize * 8);
    for i in 0..VICTIMS {
        // Victims overlap: a new kill every 2 ms, each lasting about 2.4 s.
        let t = i * 2;
        let pid = 1_000 + (i % 3_000) as u32;
        let kill = kill_at(t, pid, "hog");
        records.push(encode(&kill));
        records.push(encode(&reaper_at(EventKind::WakeReaper, t + 2_000, pid)));
        for k in 0..3 {
            records.push(encode(&contended_skip_at(t + 2_000 + k * 100, pid)));
        }
        records.push(encode(&reaper_at(EventKind::StartReaping, t + 2_300, pid)));
        records.push(encode(&exit_at(t + 2_400, pid, kill.victim_mm)));
        records.push(encode(&reaper_at(
            EventKind::WakeReaper,
            t + 2_401,
            pid + 7_000,
        )));
    }
    // Events arrive in time order, as from the ring buffer.
    let mut timed: Vec<(u64, Vec<u8>)> = records
        .into_iter()
        .map(|r| (u64::from_ne_bytes(r[8..16].try_into().expect("header")), r))
        .collect();
    timed.sort_by_key(|(t, _)| *t);
    timed.into_iter().map(|(_, r)| r).collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix(" kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn main() {
    let records = stream();
    let mut rates = Vec::new();
    let mut victims_kept = 0;
    for _ in 0..ROUNDS {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        for record in &records {
            let event = decode(record).expect("synthetic records decode");
            tracker.tick(event.timestamp_ns());
            tracker.apply(&event);
        }
        rates.push(records.len() as f64 / start.elapsed().as_secs_f64());
        victims_kept = tracker.victims().count();
    }
    rates.sort_by(f64::total_cmp);
    // Memory: a tracker fed 10,000 and then 100,000 victims keeps at most its capacity.
    let before = rss_kib();
    let mut tracker = Tracker::default();
    let mut after_10k = 0;
    for (i, record) in records.iter().enumerate() {
        let event = decode(record).expect("decode");
        tracker.tick(event.timestamp_ns());
        tracker.apply(&event);
        if i == 10_000 * 8 {
            after_10k = rss_kib();
        }
        if i >= 100_000 * 8 {
            break;
        }
    }
    let after_100k = rss_kib();
    println!(
        "{{\"events\":{},\"events_per_second\":{{\"min\":{:.0},\"median\":{:.0},\"max\":{:.0}}},\"victims_kept\":{},\"rss_growth_kib\":{{\"after_10k_victims\":{},\"after_100k_victims\":{}}}}}",
        records.len(),
        rates[0],
        rates[ROUNDS / 2],
        rates[ROUNDS - 1],
        victims_kept,
        after_10k.saturating_sub(before),
        after_100k.saturating_sub(before),
    );
}
