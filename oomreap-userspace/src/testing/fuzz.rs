//! A mutation fuzzer for everything that reads untrusted bytes: the wire decoder (ring buffer
//! records), the recording parser (replay files) and the tracker behind them.
//!
//! It is not coverage-guided: it mutates valid records and recordings (bit flips, random bytes,
//! truncation, extension, splices, wrong kinds and lengths) with a seeded generator, and
//! checks that nothing panics and that what parses is consistent. Unit tests run a few
//! thousand cases; `cargo xtask fuzz --seconds N` runs [`run_for`] as long as asked and prints
//! the seed of any failure, which [`run_cases`] replays.
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use oomreap_common::event::{
    EventKind, ExitMmapEvent, FinishReapingEvent, LockAttemptEvent, MarkVictimEvent, MreleaseEvent,
    NotifierRefusedEvent, OomCandidatesEvent, ReapCallEvent, ReaperEvent, RetryCountsEvent,
    ScoreAdjEvent, SkipReapingEvent,
};

use crate::{recording, testing::fixtures, tracker::Tracker, wire};

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One valid record of every kind, some fully populated.
fn seeds() -> Vec<Vec<u8>> {
    fn zeroed<T>(kind: EventKind) -> Vec<u8> {
        let mut bytes = vec![0; size_of::<T>()];
        bytes[..4].copy_from_slice(&(kind as u32).to_ne_bytes());
        bytes
    }
    vec![
        wire::encode(&fixtures::mark_victim_raw(4242, "hog", 65_536)),
        wire::encode(&fixtures::reaper_at(EventKind::WakeReaper, 2_000, 4242)),
        wire::encode(&fixtures::reaper_at(EventKind::StartReaping, 2_001, 4242)),
        wire::encode(&fixtures::contended_skip_at(2_100, 4242)),
        wire::encode(&fixtures::exit_at(2_200, 4242, 0xffff_8880_0000_1000)),
        zeroed::<MarkVictimEvent>(EventKind::MarkVictim),
        zeroed::<ReaperEvent>(EventKind::StartReaping),
        zeroed::<FinishReapingEvent>(EventKind::FinishReaping),
        zeroed::<SkipReapingEvent>(EventKind::SkipReaping),
        zeroed::<LockAttemptEvent>(EventKind::LockAttempt),
        zeroed::<ExitMmapEvent>(EventKind::ExitMmap),
        zeroed::<MreleaseEvent>(EventKind::Mrelease),
        zeroed::<ScoreAdjEvent>(EventKind::ScoreAdjUpdate),
        zeroed::<RetryCountsEvent>(EventKind::RetryCounts),
        zeroed::<ReapCallEvent>(EventKind::ReapCall),
        zeroed::<NotifierRefusedEvent>(EventKind::NotifierRefused),
        zeroed::<OomCandidatesEvent>(EventKind::OomCandidates),
    ]
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, seeds: &[Vec<u8>]) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            3 => bytes.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(bytes.len() + 1).min(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[at..]);
            }
            // A kind that does not match the length, or none at all.
            5 if bytes.len() >= 4 => {
                let kind = rng.below(16) as u32;
                bytes[..4].copy_from_slice(&kind.to_ne_bytes());
            }
            // Interesting integers in a random aligned field.
            6 if bytes.len() >= 8 => {
                let at = rng.below(bytes.len() / 4) * 4;
                let value = [0u32, 1, u32::MAX, i32::MAX as u32, 0x8000_0000][rng.below(5)];
                let end = (at + 4).min(bytes.len());
                bytes[at..end].copy_from_slice(&value.to_ne_bytes()[..end - at]);
            }
            _ => {}
        }
    }
    bytes
}

/// A recording of some mutated seeds, sometimes mutated as a whole (so lengths and framing
/// break too).
fn recording_case(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(recording::MAGIC);
    bytes.extend_from_slice(&recording::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(rng.next() as i128).to_le_bytes());
    for _ in 0..rng.below(8) {
        let seed = seeds[rng.below(seeds.len())].clone();
        let record = mutate(rng, seed, seeds);
        bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&record);
    }
    if rng.below(2) == 0 {
        bytes = mutate(rng, bytes, seeds);
    }
    bytes
}

/// Feeds one record to the decoder and, if it decodes, to a tracker.
fn check_record(tracker: &mut Tracker, bytes: &[u8]) {
    if let Ok(event) = wire::decode(bytes) {
        let _ = tracker.apply(&event);
        let _ = tracker.tick(event.timestamp_ns().saturating_add(10_000_000_000));
    }
}

/// Parses a recording and replays what it holds; checks the parser's own promises.
fn check_recording(bytes: &[u8]) {
    let Ok(parsed) = recording::parse(bytes) else {
        return;
    };
    let mut end = 28;
    for record in &parsed.records {
        assert_eq!(record.offset, end, "records are contiguous");
        end = record.offset + 4 + record.bytes.len();
        assert!(end <= bytes.len(), "a record inside the file");
    }
    if parsed.error.is_none() {
        assert_eq!(end, bytes.len(), "without an error every byte was read");
    }
    let mut tracker = Tracker::default();
    for record in &parsed.records {
        check_record(&mut tracker, &record.bytes);
    }
    let _ = tracker.finish_all();
}

/// Runs cases from `seed` until `keep_going` says stop; returns the number run. A panic is
/// reported with the seed and case that caused it.
fn run(seed: u64, mut keep_going: impl FnMut(u64) -> bool) -> u64 {
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let mut tracker = Tracker::default();
    let mut cases = 0;
    while keep_going(cases) {
        let seed_record = seeds[rng.below(seeds.len())].clone();
        let record = mutate(&mut rng, seed_record, &seeds);
        let file = recording_case(&mut rng, &seeds);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_record(&mut tracker, &record);
            check_recording(&file);
        }));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!(
                "fuzz case {cases} of seed {seed:#x} panicked: {why}\nrecord: {record:02x?}\nrecording: {file:02x?}"
            );
        }
        cases += 1;
    }
    cases
}

/// Runs `cases` cases from `seed` (to replay a failure).
pub fn run_cases(seed: u64, cases: u64) -> u64 {
    run(seed, |n| n < cases)
}

/// Runs cases from `seed` for `duration`; returns how many.
pub fn run_for(seed: u64, duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    run(seed, |n| n % 256 != 0 || Instant::now() < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_cover_every_kind_and_the_populated_ones_decode() {
        let seeds = seeds();
        let kinds: std::collections::BTreeSet<u32> = seeds
            .iter()
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
            .collect();
        // Every kind the decoder knows: a new kind fails here until it has a seed.
        let known = (0..=u32::from(u8::MAX)).filter(|k| EventKind::try_from(*k).is_ok());
        assert_eq!(kinds, known.collect());
        for seed in &seeds[..5] {
            assert!(wire::decode(seed).is_ok(), "{seed:02x?}");
        }
    }

    #[test]
    fn a_few_thousand_mutations_break_nothing() {
        assert_eq!(run_cases(0x00ee_d5ee_d001, 3_000), 3_000);
    }

    /// `cargo xtask fuzz` runs this with OOMREAP_FUZZ_SECONDS (and OOMREAP_FUZZ_SEED to
    /// replay a failure).
    #[test]
    #[ignore = "time-boxed fuzzing: run by `cargo xtask fuzz`"]
    fn fuzz_for_a_while() {
        let seconds = std::env::var("OOMREAP_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let seed = std::env::var("OOMREAP_FUZZ_SEED")
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(crate::clock::monotonic_now_ns);
        let cases = run_for(seed, Duration::from_secs(seconds));
        // Written directly: libtest hides a passing test's output, and the count must show.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "fuzz: {cases} cases in {seconds} s from seed {seed:#x}, no failure"
        );
    }
}
