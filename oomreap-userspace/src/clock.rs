//! The clocks: kernel event timestamps are CLOCK_MONOTONIC nanoseconds
//! (`bpf_ktime_get_ns`); people read wall-clock times.
use chrono::{DateTime, Local};

/// Turns kernel CLOCK_MONOTONIC timestamps (`bpf_ktime_get_ns`) into wall-clock times.
#[derive(Copy, Clone, Debug)]
pub struct WallClock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, sampled once.
    offset_ns: i128,
}

impl WallClock {
    /// Samples both clocks now.
    pub fn now() -> Self {
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: realtime - monotonic,
        }
    }

    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, as sampled; recordings store it.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// A fixed offset, for deterministic output in tests and replays.
    pub fn with_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// The local time of a monotonic timestamp.
    pub fn local(&self, monotonic_ns: u64) -> DateTime<Local> {
        let ns = i64::try_from(self.offset_ns + i128::from(monotonic_ns)).unwrap_or(i64::MAX);
        DateTime::from_timestamp_nanos(ns).with_timezone(&Local)
    }

    /// `HH:MM:SS.mmm`, local time.
    pub fn time_of_day(&self, monotonic_ns: u64) -> String {
        self.local(monotonic_ns).format("%H:%M:%S%.3f").to_string()
    }
}

/// Nanoseconds on `clock`.
fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds on CLOCK_MONOTONIC now: the clock of kernel event timestamps.
pub fn monotonic_now_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_adds_the_offset() {
        let clock = WallClock::with_offset_ns(1_700_000_000_000_000_000);
        let t = clock.local(1_500_000_000);
        assert_eq!(t.timestamp(), 1_700_000_001);
        assert_eq!(t.timestamp_subsec_millis(), 500);
    }

    #[test]
    fn monotonic_now_runs_forward() {
        let a = monotonic_now_ns();
        let b = monotonic_now_ns();
        assert!(b >= a && a > 0);
    }
}
