//! `doctor --self`: what oomreap's own kernel programs cost while it runs, from the kernel's
//! per-program run statistics (`BPF_ENABLE_STATS`, on only while measuring).
use std::time::Duration;

use serde_json::{Value, json};

use crate::capture::{Capture, CaptureError, CaptureOptions, enable_run_time_stats};

/// One program's runs and run time over the measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCost {
    pub program: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// What every program cost over `seconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfCost {
    pub seconds: u64,
    pub programs: Vec<ProgramCost>,
}

/// Attaches as `options` says and measures for `seconds`; must run inside a tokio runtime.
pub async fn measure(options: &CaptureOptions, seconds: u64) -> Result<SelfCost, CaptureError> {
    let capture = Capture::start(options)?;
    let _stats = enable_run_time_stats()?;
    let before = capture.program_stats();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let programs = capture
        .program_stats()
        .into_iter()
        .map(|after| {
            let earlier = before.iter().find(|b| b.name == after.name);
            ProgramCost {
                runs: after.run_count - earlier.map_or(0, |b| b.run_count),
                run_time_ns: after.run_time_ns - earlier.map_or(0, |b| b.run_time_ns),
                program: after.name,
            }
        })
        .collect();
    Ok(SelfCost { seconds, programs })
}

impl SelfCost {
    pub fn json(&self) -> Value {
        let programs: Vec<Value> = self
            .programs
            .iter()
            .map(|p| json!({"program": p.program, "runs": p.runs, "run_time_ns": p.run_time_ns}))
            .collect();
        json!({
            "schema": crate::wording::SCHEMA_VERSION,
            "seconds": self.seconds,
            "programs": programs,
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!("oomreap's kernel programs over {} s:\n", self.seconds);
        out += &format!(
            "{:<36} {:>10} {:>14} {:>10}\n",
            "PROGRAM", "RUNS", "RUN TIME", "PER RUN"
        );
        let (mut total_runs, mut total_ns) = (0, 0);
        for p in &self.programs {
            total_runs += p.runs;
            total_ns += p.run_time_ns;
            let per = p
                .run_time_ns
                .checked_div(p.runs)
                .map_or_else(|| "-".into(), |ns| format!("{ns} ns"));
            out += &format!(
                "{:<36} {:>10} {:>11} µs {per:>10}\n",
                p.program,
                p.runs,
                p.run_time_ns / 1000
            );
        }
        out += &format!(
            "{:<36} {total_runs:>10} {:>11} µs  = {:.4} % of one CPU\n",
            "total",
            total_ns / 1000,
            total_ns as f64 / (self.seconds.max(1) as f64 * 1e9) * 100.0
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sums_and_divides() {
        let cost = SelfCost {
            seconds: 10,
            programs: vec![
                ProgramCost {
                    program: "mark_victim_btf".into(),
                    runs: 0,
                    run_time_ns: 0,
                },
                ProgramCost {
                    program: "exit_mmap_btf".into(),
                    runs: 4,
                    run_time_ns: 4_000,
                },
            ],
        };
        let text = cost.text();
        assert!(text.contains("exit_mmap_btf"), "{text}");
        assert!(text.contains("1000 ns"), "{text}");
        assert!(
            text.lines().last().unwrap().contains("0.0000 % of one CPU"),
            "{text}"
        );
        assert_eq!(cost.json()["programs"][1]["runs"], 4);
    }
}
