//! Small text helpers shared by the front ends: sizes, times, error chains.
use chrono::{DateTime, Local};

/// `error: cause: cause`, the way `anyhow` prints `{:#}`, for typed errors.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A KiB count in the shortest readable unit: `0`, `512K`, `250.1M`, `3.0G`.
pub fn kib(kib: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if kib == 0 {
        return "0".into();
    }
    let mut value = kib as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{kib}K")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

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

/// A duration in the shortest readable unit: `850us`, `14ms`, `2.001s`.
pub fn duration(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{}us", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
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

/// A machine-readable name for an attach kind, as in JSON output and metric labels.
pub fn attach_id(kind: oomreap_common::event::AttachKind) -> &'static str {
    use oomreap_common::event::AttachKind;
    match kind {
        AttachKind::BtfTracePoint => "btf_tracepoint",
        AttachKind::TracePoint => "tracepoint",
        AttachKind::Fentry => "fentry",
        AttachKind::Kprobe => "kprobe",
    }
}

/// A name for people, as in `doctor` and `top`.
pub fn attach_label(kind: oomreap_common::event::AttachKind) -> &'static str {
    use oomreap_common::event::AttachKind;
    match kind {
        AttachKind::BtfTracePoint => "BTF tracepoint",
        AttachKind::TracePoint => "classic tracepoint",
        AttachKind::Fentry => "fentry/fexit",
        AttachKind::Kprobe => "kprobe/kretprobe",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(kib(0), "0");
        assert_eq!(kib(512), "512K");
        assert_eq!(kib(1024), "1.0M");
        assert_eq!(kib(256_100), "250.1M");
        assert_eq!(kib(3 * 1024 * 1024), "3.0G");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(850_000), "850us");
        assert_eq!(duration(14_200_000), "14ms");
        assert_eq!(duration(2_001_000_000), "2.001s");
    }

    #[test]
    fn error_chains_read_outer_to_inner() {
        let inner = std::io::Error::other("disk on fire");
        #[derive(Debug, thiserror::Error)]
        #[error("failed to read x")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(inner)), "failed to read x: disk on fire");
    }

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
