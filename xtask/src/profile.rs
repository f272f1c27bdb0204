//! Where oomreap's cost in a workload would show, counted rather than timed: CPU samples
//! (`perf record`, the `cpu-clock` software event, so no hardware counters are needed) of
//! the same fork/exec/exit loop with oomreap detached and attached, in interleaved rounds,
//! pooled per side.
//!
//! Timing the loop cannot tell 1 % on a small VM (its rounds vary by 5–10 %). A share of
//! samples can: its noise is binomial, so with tens of thousands of samples a side the
//! standard error of a difference is a few hundredths of a percent. The figure: the samples
//! in what runs only because something is attached (BPF programs, their dispatch and
//! helpers, and the syscall slow path a syscall tracepoint sends every syscall down),
//! attached minus detached, with the symbols of it that grew most.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::command::run as run_cmd;

/// One sample every 100 µs of CPU time (10 kHz).
const SAMPLE_PERIOD_NS: &str = "100000";

/// A shift smaller than this many standard errors is taken for noise.
pub const SIGNIFICANT_Z: f64 = 4.0;

/// The samples of one side, pooled over its rounds.
#[derive(Default)]
pub struct Side {
    pub samples: u64,
    by_symbol: BTreeMap<String, u64>,
    /// Each round's `(samples, counted samples)` (see [`is_bpf`]).
    rounds: Vec<(u64, u64)>,
}

impl Side {
    /// Samples in BPF programs, the kernel's BPF dispatch and the helpers programs call.
    pub fn bpf(&self) -> u64 {
        self.by_symbol
            .iter()
            .filter(|(symbol, _)| is_bpf(symbol))
            .map(|(_, n)| n)
            .sum()
    }

    fn share(&self, count: u64) -> f64 {
        count as f64 / self.samples.max(1) as f64
    }
}

/// Both sides, and what differs between them.
pub struct Profile {
    pub detached: Side,
    pub attached: Side,
}

/// A difference of two shares, with its standard error.
pub struct Shift {
    pub symbol: String,
    pub difference: f64,
    pub standard_error: f64,
}

impl Shift {
    pub fn z(&self) -> f64 {
        if self.standard_error > 0.0 {
            self.difference / self.standard_error
        } else {
            0.0
        }
    }
}

impl Profile {
    /// The counted share attached minus detached. Its standard error is the larger of the
    /// pooled samples' binomial one and the paired rounds' (their differences' spread over
    /// the square root of their number): samples within a run are not independent, and the
    /// shares drift from round to round.
    pub fn bpf_shift(&self) -> Shift {
        let mut pooled = shift(
            "BPF",
            &self.attached,
            self.attached.bpf(),
            &self.detached,
            self.detached.bpf(),
        );
        let share = |(samples, counted): (u64, u64)| counted as f64 / samples.max(1) as f64;
        let differences: Vec<f64> = self
            .attached
            .rounds
            .iter()
            .zip(&self.detached.rounds)
            .map(|(a, d)| share(*a) - share(*d))
            .collect();
        if differences.len() >= 2 {
            let n = differences.len() as f64;
            let mean = differences.iter().sum::<f64>() / n;
            let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
            pooled.standard_error = pooled.standard_error.max((variance / n).sqrt());
        }
        pooled
    }

    /// The counted symbols (see [`is_bpf`]) whose share grew by [`SIGNIFICANT_Z`] standard
    /// errors or more, the largest growth first: where the cost is.
    pub fn grown_bpf(&self) -> Vec<Shift> {
        let symbols: std::collections::BTreeSet<&String> = self
            .attached
            .by_symbol
            .keys()
            .chain(self.detached.by_symbol.keys())
            .filter(|symbol| is_bpf(symbol))
            .collect();
        let mut grown: Vec<Shift> = symbols
            .into_iter()
            .map(|symbol| {
                let count = |side: &Side| side.by_symbol.get(symbol).copied().unwrap_or(0);
                shift(
                    symbol,
                    &self.attached,
                    count(&self.attached),
                    &self.detached,
                    count(&self.detached),
                )
            })
            .filter(|s| s.z() >= SIGNIFICANT_Z)
            .collect();
        grown.sort_by(|a, b| b.difference.total_cmp(&a.difference));
        grown
    }

    pub fn json(&self) -> Value {
        let side = |s: &Side| json!({"samples": s.samples, "counted_samples": s.bpf(), "rounds": s.rounds});
        json!({"detached": side(&self.detached), "attached": side(&self.attached)})
    }
}

fn shift(symbol: &str, a: &Side, a_count: u64, d: &Side, d_count: u64) -> Shift {
    let (pa, pd) = (a.share(a_count), d.share(d_count));
    let variance =
        pa * (1.0 - pa) / a.samples.max(1) as f64 + pd * (1.0 - pd) / d.samples.max(1) as f64;
    Shift {
        symbol: symbol.to_owned(),
        difference: pa - pd,
        standard_error: variance.sqrt(),
    }
}

/// What runs only because something is attached: JIT-compiled programs, the tracepoint and
/// trampoline dispatch, the helpers and map code programs call, and the syscall slow path
/// that any syscall tracepoint sends every task's every syscall down. The LSM hooks' empty
/// stubs (`bpf_lsm_*`) run on every file operation whether or not anything is attached, so
/// they are not counted.
///
/// A fixed set, rather than every symbol whose share grew: shares add up to 100 %, so when
/// one symbol shrinks by chance all the others seem to grow.
fn is_bpf(symbol: &str) -> bool {
    if symbol.starts_with("bpf_lsm_") {
        return false;
    }
    [
        "bpf_",
        "__bpf_",
        "htab_",
        "__htab_",
        "array_map_",
        "percpu_array_",
        "ringbuf_",
        "perf_syscall_",
        "perf_trace_",
    ]
    .iter()
    .any(|prefix| symbol.starts_with(prefix))
        || matches!(
            symbol,
            "trace_call_bpf"
                | "copy_from_kernel_nofault"
                | "syscall_trace_enter"
                | "syscall_exit_work"
        )
}

/// Profiles `oomreap helper fork-churn` over `rounds` interleaved rounds: detached, then
/// attached (`oomreap serve` running, started by `serve`).
pub fn fork_churn(
    oomreap: &Path,
    iterations: u64,
    rounds: usize,
    serve: impl Fn() -> anyhow::Result<crate::bench::Guard>,
) -> anyhow::Result<Profile> {
    ensure_perf()?;
    let dir = tempfile_dir()?;
    let data = dir.join("perf.data");
    let mut profile = Profile {
        detached: Side::default(),
        attached: Side::default(),
    };
    let result = (|| {
        for _ in 0..rounds {
            record(oomreap, iterations, &data, &mut profile.detached)?;
            let running = serve()?;
            record(oomreap, iterations, &data, &mut profile.attached)?;
            drop(running);
        }
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(profile)
}

/// Records one run of the loop and adds its samples, by symbol, to `side`.
fn record(oomreap: &Path, iterations: u64, data: &Path, side: &mut Side) -> anyhow::Result<()> {
    run_cmd(
        Command::new("perf")
            .args([
                "record",
                "--quiet",
                "-e",
                "cpu-clock",
                "-c",
                SAMPLE_PERIOD_NS,
                "-o",
            ])
            .arg(data)
            .arg("--")
            .arg(oomreap)
            .args([
                "helper",
                "fork-churn",
                "--iterations",
                &iterations.to_string(),
            ]),
    )?;
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--quiet",
            "--sort",
            "sym",
            "--show-nr-samples",
        ])
        .args(["--percent-limit", "0", "-i"])
        .arg(data)
        .output()
        .context("failed to run perf report")?;
    if !output.status.success() {
        bail!(
            "perf report failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (mut samples, mut counted) = (0, 0);
    for (symbol, count) in text.lines().filter_map(parse_report_line) {
        samples += count;
        if is_bpf(&symbol) {
            counted += count;
        }
        *side.by_symbol.entry(symbol).or_default() += count;
    }
    if samples == 0 {
        bail!("perf report showed no samples for the fork-churn loop");
    }
    side.samples += samples;
    side.rounds.push((samples, counted));
    Ok(())
}

/// `   0.12%     3  [k] bpf_trace_run3` → (`bpf_trace_run3`, 3).
fn parse_report_line(line: &str) -> Option<(String, u64)> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix('%')?;
    let count = fields.next()?.parse().ok()?;
    let _mode = fields.next()?; // [k] or [.]
    let symbol: Vec<&str> = fields.collect();
    (!symbol.is_empty()).then(|| (symbol.join(" "), count))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("oomreap-bench-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

fn ensure_perf() -> anyhow::Result<()> {
    crate::setup::ensure_debian_packages(&[("perf", "linux-perf")])
        .context("perf (Debian's linux-perf) is needed for the fork-churn profile")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(samples: &[(&str, u64)]) -> Side {
        let mut side = Side::default();
        for (symbol, n) in samples {
            side.samples += n;
            side.by_symbol.insert((*symbol).to_owned(), *n);
        }
        side
    }

    #[test]
    fn rounds_that_disagree_widen_the_error() {
        let mut attached = side(&[("work", 99_000), ("bpf_trace_run1", 1_000)]);
        let mut detached = side(&[("work", 99_900), ("bpf_trace_run1", 100)]);
        // Two rounds a side, the attached ones 0.5 % and 1.5 %: a spread binomial noise at
        // 100,000 samples cannot explain.
        attached.rounds = vec![(50_000, 250), (50_000, 750)];
        detached.rounds = vec![(50_000, 50), (50_000, 50)];
        let profile = Profile { detached, attached };
        let bpf = profile.bpf_shift();
        // sd of (0.004, 0.014) is 0.00707; over sqrt(2): 0.005.
        assert!(
            (bpf.standard_error - 0.005).abs() < 1e-6,
            "{}",
            bpf.standard_error
        );
    }

    #[test]
    fn reads_perf_report_lines() {
        assert_eq!(
            parse_report_line("     0.12%             3  [k] bpf_trace_run3"),
            Some(("bpf_trace_run3".into(), 3))
        );
        assert_eq!(
            parse_report_line("  9.59%   231  [.] init_cpu_features.constprop.0"),
            Some(("init_cpu_features.constprop.0".into(), 231))
        );
        assert_eq!(
            parse_report_line("# Samples: 6K of event 'cpu-clock'"),
            None
        );
        assert_eq!(parse_report_line(""), None);
    }

    #[test]
    fn bpf_counts_programs_dispatch_and_helpers_not_lsm_stubs() {
        for yes in [
            "bpf_prog_6deef7357e7b4530_exit_mmap_btf",
            "bpf_trace_run3",
            "__bpf_prog_enter_recur",
            "htab_map_lookup_elem",
            "trace_call_bpf",
            "syscall_exit_work",
            "perf_syscall_enter",
        ] {
            assert!(is_bpf(yes), "{yes}");
        }
        for no in ["bpf_lsm_file_open", "exc_page_fault", "handle_amd"] {
            assert!(!is_bpf(no), "{no}");
        }
    }

    #[test]
    fn a_shift_is_judged_against_its_binomial_noise() {
        let detached = side(&[("work", 99_900), ("bpf_trace_run1", 100)]);
        let attached = side(&[("work", 99_000), ("bpf_trace_run1", 1_000)]);
        let profile = Profile { detached, attached };
        let bpf = profile.bpf_shift();
        assert!((bpf.difference - 0.009).abs() < 1e-9);
        // sqrt(0.01·0.99/1e5 + 0.001·0.999/1e5) ≈ 0.000331
        assert!((bpf.standard_error - 0.000331).abs() < 0.000002);
        let grown = profile.grown_bpf();
        assert_eq!(grown.len(), 1);
        assert_eq!(grown[0].symbol, "bpf_trace_run1");

        let same = Profile {
            detached: side(&[("work", 50_000), ("bpf_trace_run1", 10)]),
            attached: side(&[("work", 50_000), ("bpf_trace_run1", 12)]),
        };
        assert!(same.grown_bpf().is_empty(), "2 samples are noise");
    }
}
