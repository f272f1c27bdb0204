//! Sizes, durations and attach kinds, worded for people.
use oomreap_common::event::AttachKind;

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

/// A name for people, as in `doctor` and `top`.
pub fn attach_label(kind: AttachKind) -> &'static str {
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
}
