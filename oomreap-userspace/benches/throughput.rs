//! Decoder + tracker throughput on one core, and the tracker's memory per victim: replays a
//! large synthetic stream (wire records, as the kernel sends them) and prints one JSON object.
//! Run by `cargo xtask bench`; `cargo bench --bench throughput` runs it alone.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use oomreap::{
    testing::fixtures::{contended_skip_at, exit_at, finish_at, kill_at, reaper_at},
    tracker::Tracker,
    wire::{decode, encode},
};
use oomreap_common::event::EventKind;

/// Victims in the stream (each with a kill, a wake, three contended attempts, a reap pass's
/// start and finish, an exit and a wake for an unknown pid: 9 events), unless
/// OOMREAP_BENCH_VICTIMS says otherwise (profilers want a smaller run).
const VICTIMS: u64 = 250_000;
const ROUNDS: usize = 5;

fn victims() -> u64 {
    std::env::var("OOMREAP_BENCH_VICTIMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VICTIMS)
}

/// Counts live heap bytes, to measure what the tracker keeps.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn stream() -> Vec<Vec<u8>> {
    let count = victims();
    let mut records = Vec::with_capacity(count as usize * 9);
    for i in 0..count {
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
        // The reaper traces every pass's finish; a pass left open would wait PASS_WAIT_NS.
        records.push(encode(&finish_at(t + 2_305, pid)));
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

fn live_kib() -> usize {
    LIVE.load(Ordering::Relaxed) / 1024
}

fn main() {
    let records = stream();
    let mut rates = Vec::new();
    let mut victims_kept = 0;
    for _ in 0..ROUNDS {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        let start = Instant::now();
        for record in &records {
            let event = decode(record).expect("synthetic records decode");
            changes.clear();
            changes.extend(tracker.tick(event.timestamp_ns()));
            tracker.apply_into(&event, &mut changes);
        }
        rates.push(records.len() as f64 / start.elapsed().as_secs_f64());
        victims_kept = tracker.victims().count();
    }
    rates.sort_by(f64::total_cmp);
    let start = Instant::now();
    let mut decoded = 0usize;
    for record in &records {
        decoded += usize::from(decode(record).is_ok());
    }
    let decode_rate = decoded as f64 / start.elapsed().as_secs_f64();
    eprintln!("decode only: {decode_rate:.0} events/s");
    // Memory: the heap a tracker holds after 10,000 and after 100,000 victims; eviction keeps
    // it bounded by its capacity (10,000 finished victims).
    let before = live_kib();
    let mut tracker = Tracker::default();
    let mut after_10k = 0usize;
    for (i, record) in records.iter().enumerate() {
        let event = decode(record).expect("decode");
        tracker.tick(event.timestamp_ns());
        tracker.apply(&event);
        if i == 10_000 * 8 {
            after_10k = live_kib();
        }
        if i >= 100_000 * 8 {
            break;
        }
    }
    let after_100k = live_kib();
    println!(
        "{{\"events\":{},\"events_per_second\":{{\"min\":{:.0},\"median\":{:.0},\"max\":{:.0}}},\"victims_kept\":{},\"tracker_heap_kib\":{{\"after_10k_victims\":{},\"after_100k_victims\":{}}}}}",
        records.len(),
        rates[0],
        rates[ROUNDS / 2],
        rates[ROUNDS - 1],
        victims_kept,
        after_10k.saturating_sub(before),
        after_100k.saturating_sub(before),
    );
}
