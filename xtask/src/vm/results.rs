//! Reads a guest's console into results, and prints the kernel × mode × suite table, alone
//! (target/vm/results.md) or as docs/kernels.md with the run it comes from.
use std::time::Duration;

use serde_json::{Value, json};

use super::kernels::Kernel;
use crate::provenance::{Provenance, header};

/// The guest init's report lines start with this.
pub const MARK: &str = "OOMREAP-VM ";

/// One suite run in one mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuiteRun {
    pub suite: String,
    pub mode: String,
    pub passed: u64,
    pub failed: u64,
    /// Tests that said `skipped <name>: <why>` (they count as passed in libtest's line).
    pub skipped: u64,
    /// The test binary's exit code; `None` if its end was never reported.
    pub rc: Option<i32>,
    /// Names of failed tests.
    pub failures: Vec<String>,
    /// Guest seconds from the suite's start to its end (its uptime at each).
    pub seconds: Option<u64>,
}

impl SuiteRun {
    pub fn ok(&self) -> bool {
        self.rc == Some(0) && self.failed == 0 && self.passed > 0
    }
}

/// One boot.
#[derive(Clone, Debug)]
pub struct KernelRun {
    pub line: String,
    pub package: String,
    /// `uname -r` in the guest.
    pub release: Option<String>,
    /// Function attach modes the kernel allowed (`off` always).
    pub allowed: Vec<String>,
    pub suites: Vec<SuiteRun>,
    /// The guest reported the end of its plan (it did not crash or time out).
    pub completed: bool,
    pub took: Duration,
}

/// Whether a console line is worth showing while the guest runs.
pub fn worth_echoing(line: &str) -> bool {
    line.starts_with(MARK)
        || line.starts_with("test result:")
        || is_skip(line)
        || line.contains("FAILED")
        || line.contains("panicked")
        || line.contains("Kernel panic")
}

/// How many lines of a panic's message are echoed after its `panicked at` line.
pub const PANIC_MESSAGE_LINES: usize = 400;

/// Whether a console line ends a panic's message: libtest's hint, a backtrace, a blank line.
pub fn ends_panic_message(line: &str) -> bool {
    line.trim().is_empty() || line.starts_with("note: ") || line.starts_with("stack backtrace")
}

/// A test's own `skipped NAME: why` line; libtest may have printed `test NAME ... ` before
/// it on the same line.
fn is_skip(line: &str) -> bool {
    let text = match line.split_once(" ... ") {
        Some((head, rest)) if head.starts_with("test ") => rest,
        _ => line,
    };
    text.strip_prefix("skipped ")
        .is_some_and(|rest| rest.contains(": "))
}

/// Reads the console of one boot.
pub fn parse(kernel: &Kernel, console: &str, took: Duration) -> KernelRun {
    let mut run = KernelRun {
        line: kernel.line.to_owned(),
        package: kernel.package.clone(),
        release: None,
        allowed: Vec::new(),
        suites: Vec::new(),
        completed: false,
        took,
    };
    let mut current: Option<SuiteRun> = None;
    let mut begun: Option<f64> = None;
    for line in console.lines() {
        if let Some(report) = line.strip_prefix(MARK) {
            let (what, rest) = report.split_once(' ').unwrap_or((report, ""));
            let field = |name: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(str::to_owned)
            };
            match what {
                "kernel" => run.release = Some(rest.trim().to_owned()),
                "allowed" => run.allowed = rest.split_whitespace().map(str::to_owned).collect(),
                "begin" => {
                    begun = field("uptime").and_then(|u| u.parse::<f64>().ok());
                    current = Some(SuiteRun {
                        suite: field("suite").unwrap_or_default(),
                        mode: field("mode").unwrap_or_default(),
                        ..SuiteRun::default()
                    });
                }
                "end" => {
                    if let Some(mut suite) = current.take() {
                        suite.rc = field("rc").and_then(|rc| rc.parse().ok());
                        let ended = field("uptime").and_then(|u| u.parse::<f64>().ok());
                        suite.seconds = begun.zip(ended).map(|(b, e)| (e - b).max(0.0) as u64);
                        run.suites.push(suite);
                    }
                }
                "done" => run.completed = true,
                _ => {}
            }
            continue;
        }
        let Some(suite) = current.as_mut() else {
            continue;
        };
        if let Some(counts) = line.strip_prefix("test result: ") {
            let number_before = |word: &str| {
                counts
                    .split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            suite.passed = number_before("passed");
            suite.failed = number_before("failed");
        } else if is_skip(line) {
            suite.skipped += 1;
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            suite.failures.push(name.to_owned());
        }
    }
    // A suite that began and never ended: the guest died inside it.
    if let Some(suite) = current {
        run.suites.push(suite);
    }
    run
}

/// Passed, failed and skipped tests over all boots, for `xtask test`'s closing line.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Every boot of one matrix run.
pub struct Report {
    pub runs: Vec<KernelRun>,
}

impl Report {
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for run in &self.runs {
            for suite in &run.suites {
                totals.passed += suite.passed.saturating_sub(suite.skipped);
                totals.skipped += suite.skipped;
                // A suite that never finished counts as one failure at least.
                totals.failed += if suite.ok() { 0 } else { suite.failed.max(1) };
            }
            if !run.completed || run.suites.is_empty() {
                totals.failed += 1;
            }
        }
        totals
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| kernel | functions mode | suite | passed | failed | skipped | seconds | result |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for run in &self.runs {
            let kernel = run.release.clone().unwrap_or_else(|| run.package.clone());
            if run.suites.is_empty() {
                out.push_str(&format!(
                    "| {kernel} | - | - | - | - | - | - | **no result** (guest did not finish; see target/vm/{}.log) |\n",
                    run.line
                ));
            }
            for suite in &run.suites {
                let mode = match suite.mode.as_str() {
                    "off" => "tracepoints only",
                    "auto" => "auto (best allowed)",
                    other => other,
                };
                let result = if suite.ok() {
                    "pass".to_owned()
                } else if suite.rc.is_none() {
                    "**did not finish**".to_owned()
                } else {
                    format!("**fail** {}", suite.failures.join(", "))
                };
                out.push_str(&format!(
                    "| {kernel} | {mode} | {} | {} | {} | {} | {} | {result} |\n",
                    suite.suite,
                    suite.passed.saturating_sub(suite.skipped),
                    suite.failed,
                    suite.skipped,
                    suite
                        .seconds
                        .map_or_else(|| "-".to_owned(), |s| s.to_string())
                ));
            }
        }
        out.push('\n');
        for run in &self.runs {
            let refused: Vec<&str> = ["fentry", "kprobe"]
                .into_iter()
                .filter(|m| !run.allowed.iter().any(|a| a == m))
                .collect();
            out.push_str(&format!(
                "- {} ({}): booted and tested in {:.0} s; function modes allowed: {}{}\n",
                run.release.as_deref().unwrap_or(&run.line),
                run.package,
                run.took.as_secs_f64(),
                run.allowed.join(", "),
                if refused.is_empty() {
                    String::new()
                } else {
                    format!("; refused: {}", refused.join(", "))
                }
            ));
        }
        out
    }

    /// docs/kernels.md: the run (`took` from the kernels' fetch to the last guest's end), how
    /// the matrix runs (`jobs` guests of `memory_mib` at a time), then the table.
    pub fn document(
        &self,
        provenance: &Provenance,
        took: Duration,
        jobs: usize,
        memory_mib: u32,
    ) -> String {
        let totals = self.totals();
        let mut out = header(
            "Kernels",
            "`cargo xtask vm-test` (which `cargo xtask test --vm` and `--all` run) from a run of \
             the whole matrix",
            provenance,
            &[
                format!(
                    "Took: {} min (fetching, building and booting, {jobs} guests at a time)",
                    (took.as_secs() + 30) / 60
                ),
                format!(
                    "Tests: {} passed, {} failed, {} skipped",
                    totals.passed, totals.failed, totals.skipped
                ),
            ],
        );
        out.push_str(&format!(
            "\n## How the matrix runs\n\n\
             For each kernel line in `xtask/src/vm/kernels.rs`, `cargo xtask vm-test` fetches the \
             newest Debian kernel package with `apt-get download`, through a private apt \
             configuration (its own sources list and cache under `~/.cache/oomreap/vm`; the \
             machine's apt sources are not touched). It boots each under qemu (TCG, one vCPU, \
             {memory_mib} MiB, {jobs} guests at a time): x86_64 kernels under \
             `qemu-system-x86_64`, arm64 ones under `qemu-system-aarch64 -machine virt -cpu max`. \
             Each gets an initramfs holding static busybox, oomreap and its test binaries, and \
             the kernel package's own modules (FUSE where it is a module, soft-RoCE with its \
             dependencies); x86_64 guests run the host's test build with its libraries, \
             iproute2's `ip` and `rdma`, and libibverbs with its rxe provider; arm64 guests run \
             the same tests cross-built for aarch64, static (musl), with the kernel programs \
             built for aarch64. The guest mounts cgroup2 only.\n\n\
             In each guest the `scenarios` suite runs once per function attach mode that the line \
             runs and the kernel allows (tracepoints only, fentry, kprobe). The `privileged` and \
             `run` suites run once in the best mode allowed, on the lines that do not leave them \
             to another of the same kernel version or features. The oldest kernel of each \
             architecture also runs the `static-binary` suite: there that architecture's static \
             binary of `cargo xtask dist` traces a real kill. In fentry and kprobe modes the \
             scenario tests also check each reap pass's exact result. A guest's storm has 50 victims.\n\n\
             Where a kernel lacks a feature, the tests that need it skip and say why: rdma_rxe on \
             the cloud kernels and arm64, process_mrelease on 5.10, KVM in the x86_64 guests \
             (the arm64 guest has EL2, and runs it). Where the kernel \
             changes what can be seen, the tests expect the degraded form: 5.10 has no exit_mmap \
             tracepoint, its exit_mmap reaps an OOM victim itself, and its build inlines \
             `oom_badness` into the OOM killer's loop (candidates are read from /proc, and say \
             why); on PREEMPT_RT the lock's owner is the pending \
             writer (see [events.md](events.md)).\n\n\
             In the table, *passed* leaves out the tests that skipped, and *seconds* are the \
             guest's own, per suite. The run also wrote the table to `target/vm/results.md` and \
             `results.json`, and each console to `target/vm/LINE.log`.\n\n\
             ## Results\n\n"
        ));
        out.push_str(&self.markdown());
        out
    }

    pub fn json(&self) -> Value {
        json!(
            self.runs
                .iter()
                .map(|run| json!({
                    "line": run.line,
                    "package": run.package,
                    "release": run.release,
                    "allowed_modes": run.allowed,
                    "completed": run.completed,
                    "seconds": run.took.as_secs_f64(),
                    "suites": run.suites.iter().map(|s| json!({
                        "suite": s.suite, "mode": s.mode, "passed": s.passed, "failed": s.failed,
                        "skipped": s.skipped, "rc": s.rc, "failures": s.failures, "ok": s.ok(),
                        "seconds": s.seconds,
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0
OOMREAP-VM kernel 6.1.0-56-cloud-amd64
OOMREAP-VM allowed off fentry
OOMREAP-VM begin suite=scenarios mode=off
running 2 tests
test a_kvm_victim ... skipped a_kvm_victim: no /dev/kvm
ok
test storm ... FAILED
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.10s
OOMREAP-VM end suite=scenarios mode=off rc=101
OOMREAP-VM begin suite=scenarios mode=fentry
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.10s
OOMREAP-VM end suite=scenarios mode=fentry rc=0
OOMREAP-VM begin suite=run mode=fentry
running 3 tests
";

    fn kernel() -> Kernel {
        Kernel {
            line: "6.1",
            modes: &[],
            left_to_others: &[],
            guest: &super::super::guest::X86_64,
            package: "linux-image-6.1.0-56-cloud-amd64-unsigned".into(),
            vmlinuz: PathBuf::new(),
            modules: Vec::new(),
        }
    }

    #[test]
    fn the_doc_names_its_run_then_the_method_then_the_table() {
        let suite = |mode: &str, passed, skipped, seconds| SuiteRun {
            suite: "scenarios".into(),
            mode: mode.into(),
            passed,
            failed: 0,
            skipped,
            rc: Some(0),
            failures: Vec::new(),
            seconds,
        };
        let report = Report {
            runs: vec![KernelRun {
                line: "6.1".into(),
                package: "linux-image-6.1.0-57-cloud-amd64-unsigned".into(),
                release: Some("6.1.0-57-cloud-amd64".into()),
                allowed: vec!["off".into(), "fentry".into()],
                suites: vec![suite("off", 16, 4, Some(126)), suite("fentry", 16, 8, None)],
                completed: true,
                took: Duration::from_secs(343),
            }],
        };
        let provenance = Provenance {
            date: "2026-12-03".into(),
            commit: "1222ec2babb4".into(),
            machine: "Linux 6.18, 2 CPUs, 24 GiB of memory".into(),
        };
        let doc = report.document(&provenance, Duration::from_secs(2040), 2, 1024);
        assert!(
            doc.starts_with(
                "# Kernels\n\nGenerated by `cargo xtask vm-test` (which `cargo xtask test --vm` \
                 and `--all` run) from a run of the whole matrix: do not edit this file by hand"
            ),
            "{doc}"
        );
        for line in [
            "- Date: 2026-12-03 (UTC)\n",
            "- Commit: `1222ec2babb4`\n",
            "- Took: 34 min (fetching, building and booting, 2 guests at a time)\n",
            "- Tests: 20 passed, 0 failed, 12 skipped\n",
            "(TCG, one vCPU, 1024 MiB, 2 guests at a time)",
            "| 6.1.0-57-cloud-amd64 | tracepoints only | scenarios | 12 | 0 | 4 | 126 | pass |\n",
            "| 6.1.0-57-cloud-amd64 | fentry | scenarios | 8 | 0 | 8 | - | pass |\n",
            "- 6.1.0-57-cloud-amd64 (linux-image-6.1.0-57-cloud-amd64-unsigned): booted and tested \
             in 343 s; function modes allowed: off, fentry; refused: kprobe\n",
        ] {
            assert!(doc.contains(line), "no {line:?} in\n{doc}");
        }
        let method = doc
            .find("\n## How the matrix runs\n\n")
            .expect("the method");
        let results = doc.find("\n## Results\n\n| kernel |").expect("the table");
        assert!(method < results);
        assert!(
            doc.ends_with("refused: kprobe\n"),
            "the kernels' lines end the doc"
        );
    }

    #[test]
    fn a_console_becomes_suite_runs() {
        let run = parse(&kernel(), CONSOLE, Duration::from_secs(60));
        assert_eq!(run.release.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(run.allowed, ["off", "fentry"]);
        assert!(!run.completed, "no done line");
        assert_eq!(run.suites.len(), 3);
        let first = &run.suites[0];
        assert_eq!(
            (first.passed, first.failed, first.skipped, first.rc),
            (1, 1, 1, Some(101))
        );
        assert_eq!(first.failures, ["storm"]);
        assert!(!first.ok());
        assert!(run.suites[1].ok());
        assert_eq!(run.suites[2].rc, None, "the guest died in it");
        let totals = Report { runs: vec![run] }.totals();
        // storm; the unfinished suite; the unfinished boot.
        assert_eq!(
            totals,
            Totals {
                passed: 2,
                failed: 3,
                skipped: 1
            }
        );
    }
}
