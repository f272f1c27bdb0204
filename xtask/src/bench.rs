//! `cargo xtask bench`: every performance figure as a ratio or pair measured side by side in
//! one run, repeated for min/median/max, with its goal; written to target/bench/results.md
//! and results.json, and as docs/performance.md with the run's date, commit and machine. No
//! figure here is ever asserted by a test.
//!
//! The steps: build oomreap (release); start-up against bpftrace attaching the same OOM
//! tracepoints; the kernel programs' run counts on hot hooks at rest and under churn (from the
//! kernel's own run statistics); the kernel-side cost on the hooks' hot paths (mmap/fault
//! churn, also with a victim in flight, and fork/exec churn, detached vs attached, timed and
//! profiled); decoder + tracker throughput and memory per victim; end-to-end latency from
//! kernel timestamp to printed line during a storm; and the daemon at rest.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::{
    command::{cargo, run as run_cmd},
    provenance::Provenance,
};

/// Where the run's figures go for readers, in the workspace.
const DOC: &str = "docs/performance.md";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Repetitions of each side-by-side measurement.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds the daemon sits idle for the at-rest figure.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
}

/// One reported figure.
struct Figure {
    name: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

pub fn bench(workspace: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    // Read before the build: the commit measured is the one built.
    let provenance = Provenance::now(workspace);
    let with_faults = build_with_faults(workspace)?;
    run_cmd(cargo().current_dir(workspace).args([
        "build",
        "--release",
        "--package",
        "oomreap-userspace",
    ]))?;
    let oomreap = workspace.join("target/release/oomreap");
    ensure_bpftrace()?;
    let mut figures = Vec::new();
    let mut raw = serde_json::Map::new();

    eprintln!("bench: start-up, oomreap trace vs bpftrace");
    let (ours, theirs) = startup(&oomreap, args.rounds)?;
    let time_ratio = median(&ours.0) / median(&theirs.0);
    let rss_ratio = median(&ours.1) / median(&theirs.1);
    figures.push(Figure {
        name: "start-up time, oomreap / bpftrace".into(),
        value: format!(
            "{:.3} ({} vs {})",
            time_ratio,
            spread_ms(&ours.0),
            spread_ms(&theirs.0)
        ),
        goal: "≤ 0.50".into(),
        met: Some(time_ratio <= 0.50),
    });
    figures.push(Figure {
        name: "peak RSS at start-up, oomreap / bpftrace".into(),
        value: format!(
            "{:.3} ({} vs {})",
            rss_ratio,
            spread_mib(&ours.1),
            spread_mib(&theirs.1)
        ),
        goal: "≤ 0.15".into(),
        met: Some(rss_ratio <= 0.15),
    });
    raw.insert("startup".into(), json!({"oomreap_s": ours.0, "bpftrace_s": theirs.0, "oomreap_rss_kib": ours.1, "bpftrace_rss_kib": theirs.1}));

    for churn in [false, true] {
        let what = if churn {
            "fork/exec/exit + mmap/munmap churn"
        } else {
            "rest"
        };
        eprintln!("bench: oomreap's kernel programs over {HOOK_SECONDS} s of {what}, no victim");
        let runs = program_runs(&oomreap, churn)?;
        figures.push(Figure {
            name: format!("hot-hook program runs, {HOOK_SECONDS} s of {what}, no victim"),
            value: format!(
                "{} ({})",
                runs.hot_runs,
                if runs.hot.is_empty() {
                    "none attached".to_owned()
                } else {
                    runs.hot.join(", ")
                }
            ),
            goal: "0".into(),
            met: Some(runs.hot_runs == 0),
        });
        if churn {
            let share = runs.always_ns as f64 / (HOOK_SECONDS as f64 * 1e9);
            figures.push(Figure {
                name: format!("always-on programs, {HOOK_SECONDS} s of {what}: one CPU's share"),
                value: format!(
                    "{:.4} % ({} runs, {:.2} ms)",
                    share * 100.0,
                    runs.always_runs,
                    runs.always_ns as f64 / 1e6
                ),
                goal: "≤ 0.01 %".into(),
                met: Some(share <= 0.0001),
            });
        }
        raw.insert(
            format!("program_runs_{}", if churn { "churn" } else { "rest" }),
            runs.json,
        );
    }

    for (load, iterations, victim) in [("mm-churn", 3_000u64, true), ("fork-churn", 1_000, false)] {
        eprintln!("bench: kernel-side overhead on {load}, detached vs attached");
        let runs = overhead(&oomreap, load, iterations, args.rounds, victim)?;
        let mut sides = vec![("attached / detached", &runs.attached, &runs.detached)];
        if victim {
            sides.push((
                "attached / detached, each with a victim in flight",
                &runs.attached_in_flight,
                &runs.detached_in_flight,
            ));
        }
        for (side, times, baseline) in sides {
            // Each round's pair ran back to back: their ratio cancels the drift between rounds.
            let paired: Vec<f64> = times
                .iter()
                .zip(baseline)
                .map(|(with, without)| with / without)
                .collect();
            let ratio = median(&paired);
            figures.push(Figure {
                name: format!("{load} ({iterations}×), {side}"),
                value: format!(
                    "{ratio:.3} [{}] ({} vs {})",
                    range(&paired),
                    spread_ms(times),
                    spread_ms(baseline)
                ),
                goal: "≤ 1.01".into(),
                met: Some(ratio <= 1.01),
            });
        }
        raw.insert(
            load.into(),
            json!({
                "detached_s": runs.detached,
                "attached_s": runs.attached,
                "detached_in_flight_s": runs.detached_in_flight,
                "attached_in_flight_s": runs.attached_in_flight,
            }),
        );
    }

    eprintln!("bench: fork-churn's CPU samples, detached vs attached (perf record)");
    // Asked first, so that a doctor failure does not cost the profiles.
    let here = format!(
        "as attached here ({})",
        mrelease_hooks(Command::new(&oomreap))?
    );
    let faulty = || {
        let mut command = Command::new(&with_faults);
        command.env(FAULTS.0, FAULTS.1);
        command
    };
    let without = mrelease_hooks(faulty())?;
    if without != "process_mrelease not hooked" {
        bail!(
            "the testing build still hooks {without:?}: has a syscall tracepoint's name changed?"
        );
    }
    let profile =
        crate::profile::fork_churn(&oomreap, 3_000, args.rounds, || start_serve(&oomreap))?;
    profile_figures(&profile, &here, &mut figures);
    raw.insert("fork_churn_profile".into(), profile.json());
    eprintln!("bench: the same, without the syscall tracepoints");
    let profile =
        crate::profile::fork_churn(&oomreap, 3_000, args.rounds, || start_serve_with(faulty()))?;
    let without = "without the syscall tracepoints, as where fentry or kprobes hook \
                   process_mrelease's wrapper";
    profile_figures(&profile, without, &mut figures);
    raw.insert(
        "fork_churn_profile_without_syscall_tracepoints".into(),
        profile.json(),
    );

    eprintln!("bench: decoder + tracker throughput");
    let throughput = throughput(workspace)?;
    let rate = throughput["events_per_second"]["median"]
        .as_f64()
        .unwrap_or(0.0);
    figures.push(Figure {
        name: "decoder + tracker (2.25 M events, 250,000 victims), events/s on one core".into(),
        value: format!(
            "{:.2} M (min {:.2} M, max {:.2} M)",
            rate / 1e6,
            throughput["events_per_second"]["min"]
                .as_f64()
                .unwrap_or(0.0)
                / 1e6,
            throughput["events_per_second"]["max"]
                .as_f64()
                .unwrap_or(0.0)
                / 1e6
        ),
        // A regression guard: a storm needs four orders of magnitude less.
        goal: "≥ 1.5 M".into(),
        met: Some(rate >= 1.5e6),
    });

    eprintln!("bench: serve inside the DaemonSet's limits through a storm");
    match crate::fleet::storm_in_limits(&oomreap) {
        Ok(fleet) => fleet_figures(fleet, &mut figures, &mut raw),
        Err(err) => figures.push(Figure {
            name: "serve inside the DaemonSet's limits through a storm".into(),
            value: format!("not measured: {err:#}"),
            goal: "0 events lost".into(),
            met: None,
        }),
    }
    figures.push(Figure {
        name: "tracker heap after 10,000 / 100,000 victims".into(),
        value: format!(
            "{} / {} MiB (capacity: 10,000 finished victims)",
            throughput["tracker_heap_kib"]["after_10k_victims"]
                .as_u64()
                .unwrap_or(0)
                / 1024,
            throughput["tracker_heap_kib"]["after_100k_victims"]
                .as_u64()
                .unwrap_or(0)
                / 1024
        ),
        goal: "bounded (evicted beyond 10,000)".into(),
        met: None,
    });
    raw.insert("throughput".into(), throughput);

    eprintln!("bench: end-to-end latency during a storm");
    let latencies = latency(&oomreap)?;
    let p99 = percentile(&latencies, 0.99);
    figures.push(Figure {
        name: "kernel event → trace line, during a 100-victim storm".into(),
        value: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.5),
            p99,
            percentile(&latencies, 1.0)
        ),
        goal: "p99 ≤ 100 ms".into(),
        met: Some(p99 <= 100.0),
    });
    raw.insert("latency_ms".into(), json!(latencies));

    eprintln!("bench: the daemon at rest for {} s", args.idle_seconds);
    let (cpu, rss) = at_rest(&oomreap, args.idle_seconds)?;
    figures.push(Figure {
        name: format!("oomreap serve idle {} s: CPU, RSS", args.idle_seconds),
        value: format!("{:.4} % CPU, {} MiB RSS", cpu * 100.0, rss / 1024),
        goal: "< 0.1 % CPU".into(),
        met: Some(cpu < 0.001),
    });
    raw.insert(
        "at_rest".into(),
        json!({"cpu_fraction": cpu, "rss_kib": rss}),
    );

    let table = markdown(&figures);
    println!("{table}");
    let out = workspace.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &table)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&Value::Object(raw))?,
    )?;
    let doc = workspace.join(DOC);
    std::fs::write(
        &doc,
        document(&provenance, args.rounds, args.idle_seconds, &figures),
    )
    .with_context(|| format!("failed to write {}", doc.display()))?;
    eprintln!("bench: written to {} and {}", out.display(), doc.display());
    Ok(())
}

/// What the fork-churn profile shows: the BPF share oomreap adds, and the symbol that grew
/// most. Met where the added share, two standard errors included, stays within the churn
/// goal's 1 % and those two standard errors are under 0.5 %.
fn profile_figures(profile: &crate::profile::Profile, how: &str, figures: &mut Vec<Figure>) {
    let pct = |x: f64| x * 100.0;
    let bpf = profile.bpf_shift();
    let (attached, detached) = (&profile.attached, &profile.detached);
    figures.push(Figure {
        name: format!(
            "fork-churn (3000×), {how}: CPU samples in BPF programs, their dispatch and \
             helpers and the syscall slow path, attached − detached ({} vs {} samples)",
            attached.samples, detached.samples
        ),
        value: format!(
            "{:+.3} % ± {:.3} % ({:.3} % vs {:.3} %){}",
            pct(bpf.difference),
            pct(2.0 * bpf.standard_error),
            pct(attached.bpf() as f64 / attached.samples.max(1) as f64),
            pct(detached.bpf() as f64 / detached.samples.max(1) as f64),
            grown_list(profile),
        ),
        goal: "≤ 1 %, ± ≤ 0.5 %".into(),
        met: Some(
            bpf.difference + 2.0 * bpf.standard_error <= 0.01 && 2.0 * bpf.standard_error <= 0.005,
        ),
    });
}

/// `: SYMBOL +X %, …` for the (up to four) counted symbols that grew most, or nothing.
fn grown_list(profile: &crate::profile::Profile) -> String {
    let grown = profile.grown_bpf();
    if grown.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = grown
        .iter()
        .take(4)
        .map(|s| format!("{} {:+.2} %", s.symbol, s.difference * 100.0))
        .collect();
    format!(": {}", listed.join(", "))
}

/// docs/performance.md: the run, how its figures are measured, and the table.
fn document(
    provenance: &Provenance,
    rounds: usize,
    idle_seconds: u64,
    figures: &[Figure],
) -> String {
    let mut out = crate::provenance::header(
        "Performance",
        "`cargo xtask bench`",
        provenance,
        &[format!(
            "Rounds: {rounds} of each side-by-side measurement; the daemon idle for \
             {idle_seconds} s"
        )],
    );
    let z = crate::profile::SIGNIFICANT_Z;
    out.push_str(&format!(
        "\n## How the figures are measured\n\n\
         Every figure is a ratio or a pair measured side by side in this one run, each \
         measurement repeated {rounds} times: the table gives the median, with the minimum and \
         maximum in brackets. Compare a figure only with its reference in the same row: a \
         virtual machine's speed changes from run to run, and ratios carry over where absolute \
         times do not. The goals are the project's; no test asserts a figure.\n\n\
         - Start-up: `oomreap trace` and bpftrace attaching the same five `oom:` tracepoints, \
         started in turn, each timed from spawn to its first line saying it traces; peak RSS \
         (VmHWM) at that moment.\n\
         - Hot-hook program runs and the always-on share: the kernel's own run counts and run \
         times of oomreap's programs (`oomreap doctor --self {HOOK_SECONDS}`, from \
         BPF_ENABLE_STATS) over {HOOK_SECONDS} s at rest, then over {HOOK_SECONDS} s of \
         fork/exec/exit and mmap/munmap loops. Hot hooks fire on every mmap_lock use or mmu \
         notifier invalidation; the always-on programs are the others.\n\
         - Churn: the same loop (mmap, fault and munmap 1 MiB; or run /bin/true) with oomreap \
         detached, then with `oomreap serve` attached, in turn. The ratio is each round's pair's; \
         the brackets give the rounds' spread.\n\
         - Fork-churn's samples: the /bin/true loop under `perf record -e cpu-clock` (one \
         sample per 100 µs of its CPU time, kernel and user), detached and attached in turn, \
         the samples of each side pooled. A share of samples has binomial noise, so the ± \
         (two standard errors) is far below what timing the loop can resolve. BPF counts \
         JIT-compiled programs, tracepoint and trampoline dispatch, and the helpers and maps \
         they call, and the syscall slow path any syscall tracepoint sends every syscall down; \
         the symbols named are those whose share rose by {z} standard errors or more. It is \
         profiled twice: with what this machine attaches, then with a `testing` build told \
         (`OOMREAP_FAULTS`) that the process_mrelease syscall tracepoints do not exist, which \
         leaves what kernels with fentry or kprobes attach for this loop.\n\
         - Decoder + tracker: a synthetic stream of wire records replayed on one core \
         (`oomreap-userspace/benches/throughput.rs`, its own five rounds), each victim with three \
         contended attempts and full lock snapshots among its nine events: a worst case.\n\
         - Latency: from each kill's kernel timestamp to its line from `oomreap trace --json`, \
         during `oomreap inject storm --count 100`.\n\
         - At rest: the CPU time and RSS of `oomreap serve` over {idle_seconds} s with nothing to \
         do.\n\n\
         ## Results\n\n"
    ));
    out.push_str(&markdown(figures));
    out
}

fn ensure_bpftrace() -> anyhow::Result<()> {
    crate::setup::ensure_debian_packages(&[("bpftrace", "bpftrace")])
        .context("bpftrace is needed for the start-up comparison")
}

/// The OOM tracepoints both tools attach for the start-up comparison.
const BPFTRACE_SCRIPT: &str = "BEGIN { printf(\"ready\\n\"); } \
tracepoint:oom:mark_victim, tracepoint:oom:wake_reaper, tracepoint:oom:start_task_reaping, \
tracepoint:oom:finish_task_reaping, tracepoint:oom:skip_task_reaping { @[probe] = count(); }";

/// Seconds from spawn until ready, and peak RSS (KiB) then, per round.
type Startups = (Vec<f64>, Vec<f64>);

/// Start-ups of (oomreap, bpftrace).
fn startup(oomreap: &Path, rounds: usize) -> anyhow::Result<(Startups, Startups)> {
    let mut ours = (Vec::new(), Vec::new());
    let mut theirs = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (t, rss) = time_to_ready(
            Command::new(oomreap).args(["trace"]),
            Stream::Stderr,
            "oomreap: tracing",
        )?;
        ours.0.push(t);
        ours.1.push(rss);
        let (t, rss) = time_to_ready(
            Command::new("bpftrace").args(["-e", BPFTRACE_SCRIPT]),
            Stream::Stdout,
            "ready",
        )?;
        theirs.0.push(t);
        theirs.1.push(rss);
    }
    Ok((ours, theirs))
}

enum Stream {
    Stdout,
    Stderr,
}

fn time_to_ready(cmd: &mut Command, stream: Stream, marker: &str) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let mut child = Guard(
        match stream {
            Stream::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::null()),
            Stream::Stderr => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
        }
        .spawn()
        .with_context(|| format!("failed to start {cmd:?}"))?,
    );
    let pipe: Box<dyn std::io::Read + Send> = match stream {
        Stream::Stdout => Box::new(child.0.stdout.take().context("stdout")?),
        Stream::Stderr => Box::new(child.0.stderr.take().context("stderr")?),
    };
    for line in BufReader::new(pipe).lines() {
        if line?.contains(marker) {
            let elapsed = start.elapsed().as_secs_f64();
            let rss = status_kib(child.0.id(), "VmHWM:").unwrap_or(0) as f64;
            return Ok((elapsed, rss));
        }
    }
    bail!("{cmd:?} ended before saying {marker:?}")
}

/// The fleet storm's figures: events lost, CPU share of the limit, peak RSS.
fn fleet_figures(
    fleet: Value,
    figures: &mut Vec<Figure>,
    raw: &mut serde_json::Map<String, Value>,
) {
    let number = |key: &str| fleet[key].as_f64().unwrap_or(f64::NAN);
    let storm = format!(
        "serve in 200m CPU, 128 MiB, {} victims at {:.1}/s",
        fleet["victims"],
        number("victims_per_second")
    );
    let (lost, seen) = (number("events_lost"), number("victims_seen"));
    figures.push(Figure {
        name: format!("{storm}: events lost (victims seen)"),
        value: format!("{lost} ({seen})"),
        goal: "0".into(),
        met: Some(lost == 0.0 && seen == number("victims")),
    });
    let share = number("cpu_share_of_limit");
    figures.push(Figure {
        name: format!("{storm}: CPU, share of its limit"),
        value: format!("{:.1} %", share * 100.0),
        goal: "≤ 50 %".into(),
        met: Some(share <= 0.5),
    });
    let peak_mib = number("peak_rss_kib") / 1024.0;
    figures.push(Figure {
        name: format!("{storm}: peak RSS"),
        value: format!("{peak_mib:.1} MiB"),
        goal: "≤ 64 MiB".into(),
        met: Some(peak_mib <= 64.0),
    });
    raw.insert("fleet_storm".into(), fleet);
}

/// One load's times, seconds, by side.
struct Overhead {
    detached: Vec<f64>,
    attached: Vec<f64>,
    /// Run as soon as a stuck victim was killed (empty unless asked for), without and with
    /// oomreap: the scenario's own work (its hog, FUSE, the OOM kill) is on both sides.
    detached_in_flight: Vec<f64>,
    attached_in_flight: Vec<f64>,
}

/// Runs `oomreap helper LOAD` in interleaved rounds: detached, and attached (`oomreap serve`
/// running), at rest; and, with `victim`, both again with an OOM victim in flight: started
/// as soon as `oomreap inject stuck-victim`'s kill lands, so the load runs between the kill
/// and the reaper's attempts 2 s later, when oomreap follows the victim.
fn overhead(
    oomreap: &Path,
    load: &str,
    iterations: u64,
    rounds: usize,
    victim: bool,
) -> anyhow::Result<Overhead> {
    let run_load = || -> anyhow::Result<f64> {
        let start = Instant::now();
        run_cmd(Command::new(oomreap).args([
            "helper",
            load,
            "--iterations",
            &iterations.to_string(),
        ]))?;
        Ok(start.elapsed().as_secs_f64())
    };
    let in_flight = || -> anyhow::Result<f64> {
        let mut inject = spawn_stuck_victim(oomreap)?;
        let seconds = run_load()?;
        let status = inject.0.wait()?;
        if !status.success() {
            bail!("oomreap inject stuck-victim failed: {status}");
        }
        Ok(seconds)
    };
    let mut runs = Overhead {
        detached: Vec::new(),
        attached: Vec::new(),
        detached_in_flight: Vec::new(),
        attached_in_flight: Vec::new(),
    };
    run_load()?; // warm caches
    for _ in 0..rounds {
        runs.detached.push(run_load()?);
        if victim {
            runs.detached_in_flight.push(in_flight()?);
        }
        let serve = start_serve(oomreap)?;
        runs.attached.push(run_load()?);
        if victim {
            runs.attached_in_flight.push(in_flight()?);
        }
        drop(serve);
    }
    Ok(runs)
}

/// Starts `oomreap inject stuck-victim` and returns once its victim is killed (it then
/// waits for the reaper, frees the victim and cleans up by itself).
fn spawn_stuck_victim(oomreap: &Path) -> anyhow::Result<Guard> {
    let mut inject = Command::new(oomreap);
    inject.args(["inject", "stuck-victim"]);
    Ok(spawn_until(
        &mut inject,
        "OOM killer struck",
        "oomreap inject stuck-victim",
    )?
    .0)
}

/// Seconds of each hot-hook run count.
const HOOK_SECONDS: u64 = 10;

/// Programs on hooks that fire on every mmap_lock use or mmu notifier invalidation
/// system-wide, whether or not a victim exists.
const HOT_PROGRAMS: [&str; 2] = ["mmap_lock_acquire_returned", "invalidate_range_start"];

/// Run counts of oomreap's kernel programs over one window.
struct ProgramRuns {
    /// The hot programs attached, by name.
    hot: Vec<String>,
    hot_runs: u64,
    always_runs: u64,
    always_ns: u64,
    json: Value,
}

/// `oomreap doctor --self` (the kernel's own per-program run statistics) over
/// [`HOOK_SECONDS`], with fork/exec/exit and mmap/munmap churn running throughout if `churn`.
fn program_runs(oomreap: &Path, churn: bool) -> anyhow::Result<ProgramRuns> {
    let mut doctor = Guard(
        Command::new(oomreap)
            .args(["doctor", "--json", "--self", &HOOK_SECONDS.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start oomreap doctor --self")?,
    );
    while churn && doctor.0.try_wait()?.is_none() {
        for (load, iterations) in [("fork-churn", "100"), ("mm-churn", "300")] {
            run_cmd(Command::new(oomreap).args(["helper", load, "--iterations", iterations]))?;
        }
    }
    let mut stdout = doctor.0.stdout.take().context("stdout")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    if !doctor.0.wait()?.success() {
        bail!("oomreap doctor --self failed");
    }
    let json: Value = serde_json::from_str(&text).context("doctor --self printed no JSON")?;
    let mut runs = ProgramRuns {
        hot: Vec::new(),
        hot_runs: 0,
        always_runs: 0,
        always_ns: 0,
        json: Value::Null,
    };
    for program in json["programs"].as_array().context("no programs")? {
        let name = program["program"].as_str().unwrap_or_default();
        let count = program["runs"].as_u64().unwrap_or(0);
        if HOT_PROGRAMS.iter().any(|hot| name.contains(hot)) {
            runs.hot.push(name.to_owned());
            runs.hot_runs += count;
        } else {
            runs.always_runs += count;
            runs.always_ns += program["run_time_ns"].as_u64().unwrap_or(0);
        }
    }
    runs.json = json;
    Ok(runs)
}

fn start_serve(oomreap: &Path) -> anyhow::Result<Guard> {
    start_serve_with(Command::new(oomreap))
}

/// `oomreap serve` on a free loopback port, run as `serve` says.
fn start_serve_with(mut serve: Command) -> anyhow::Result<Guard> {
    serve.args(["serve", "--listen", "127.0.0.1:0"]);
    Ok(spawn_until(&mut serve, "serving http://", "oomreap serve")?.0)
}

/// What a build with the `testing` feature is told to pretend for the second fork-churn
/// profile: that the process_mrelease syscall tracepoints do not exist. That leaves what a
/// kernel with fentry or kprobes attaches for the loop (its function hooks never run in it),
/// on a machine that may allow neither.
const FAULTS: (&str, &str) = (
    "OOMREAP_FAULTS",
    "missing=syscalls:sys_enter_process_mrelease,missing=syscalls:sys_exit_process_mrelease",
);

/// Builds oomreap with the `testing` feature (its `OOMREAP_FAULTS` switches) and returns a
/// copy of the binary: the plain release build that follows takes the usual path back.
fn build_with_faults(workspace: &Path) -> anyhow::Result<PathBuf> {
    run_cmd(cargo().current_dir(workspace).args([
        "build",
        "--release",
        "--package",
        "oomreap-userspace",
        "--features",
        "testing",
    ]))?;
    let copy = workspace.join("target/bench/oomreap-with-faults");
    std::fs::create_dir_all(workspace.join("target/bench"))?;
    std::fs::copy(workspace.join("target/release/oomreap"), &copy)
        .context("failed to copy the testing build")?;
    Ok(copy)
}

/// How `oomreap` (a command, with its environment) hooks process_mrelease on this machine,
/// as its `doctor --json` says.
fn mrelease_hooks(mut oomreap: Command) -> anyhow::Result<String> {
    let out = oomreap
        .args(["doctor", "--json"])
        .output()
        .context("failed to run oomreap doctor")?;
    let report: Value = serde_json::from_slice(&out.stdout).context("doctor's JSON")?;
    let attached: Vec<String> = report["hooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|hook| hook["attached"] == true)
        .filter_map(|hook| hook["name"].as_str())
        .filter(|name| name.contains("process_mrelease"))
        .map(|name| format!("`{name}`"))
        .collect();
    Ok(match attached.is_empty() {
        true => "process_mrelease not hooked".to_owned(),
        false => format!("process_mrelease through {}", attached.join(" and ")),
    })
}

/// Starts `command` and returns it once a line of its stderr contains `marker`, with that
/// line; the rest of its stderr is drained on a thread of its own.
pub(crate) fn spawn_until(
    command: &mut Command,
    marker: &str,
    what: &str,
) -> anyhow::Result<(Guard, String)> {
    let mut child = Guard(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {what}"))?,
    );
    let stderr = child.0.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let found = loop {
        match lines.next() {
            Some(line) => {
                let line = line?;
                if line.contains(marker) {
                    break line;
                }
            }
            None => bail!("{what} ended before it said {marker:?}"),
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, found))
}

fn throughput(workspace: &Path) -> anyhow::Result<Value> {
    let out = cargo()
        .current_dir(workspace)
        .args([
            "bench",
            "--quiet",
            "--package",
            "oomreap-userspace",
            "--bench",
            "throughput",
        ])
        .output()
        .context("failed to run the throughput bench")?;
    if !out.status.success() {
        bail!(
            "throughput bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .context("no JSON from the throughput bench")?;
    Ok(serde_json::from_str(line)?)
}

/// Milliseconds from each victim's kernel timestamp to its `kill` line reaching us.
fn latency(oomreap: &Path) -> anyhow::Result<Vec<f64>> {
    let mut trace = Guard(
        Command::new(oomreap)
            .args(["trace", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to start oomreap trace")?,
    );
    let stderr = trace.0.stderr.take().context("stderr")?;
    let mut errs = BufReader::new(stderr).lines();
    for line in errs.by_ref() {
        if line?.contains("oomreap: tracing") {
            break;
        }
    }
    std::thread::spawn(move || errs.for_each(drop));
    let stdout = trace.0.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let now = monotonic_ns();
            let Ok(object) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if object["step"] == "kill"
                && let Some(ts) = object["ts_ns"].as_u64()
            {
                latencies.push(now.saturating_sub(ts) as f64 / 1e6);
            }
        }
        latencies
    });
    run_cmd(
        Command::new(oomreap)
            .args(["inject", "storm", "--count", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.0.id() as i32, libc::SIGINT) };
    let _ = trace.0.wait();
    let mut latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("latency reader panicked"))?;
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        bail!("no kill line seen during the storm");
    }
    Ok(latencies)
}

/// CPU fraction and RSS (KiB) of `oomreap serve` sitting idle.
fn at_rest(oomreap: &Path, seconds: u64) -> anyhow::Result<(f64, u64)> {
    let serve = start_serve(oomreap)?;
    let pid = serve.0.id();
    let before = cpu_ticks(pid).context("read CPU time")?;
    std::thread::sleep(Duration::from_secs(seconds));
    let after = cpu_ticks(pid).context("read CPU time")?;
    let rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(((after - before) as f64 / hz / seconds as f64, rss))
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `min–max` of ratios, the spread of the paired rounds.
fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.3}–{max:.3}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

fn spread(values: &[f64], scale: f64, unit: &str) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (min, max) = (
        sorted.first().copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
    );
    format!(
        "{:.1} {unit} [{:.1}–{:.1}]",
        median(values) * scale,
        min * scale,
        max * scale
    )
}

fn spread_ms(values: &[f64]) -> String {
    spread(values, 1000.0, "ms")
}

fn spread_mib(values: &[f64]) -> String {
    spread(values, 1.0 / 1024.0, "MiB")
}

fn markdown(figures: &[Figure]) -> String {
    let mut table = String::from(
        "| figure | measured (median [min–max]) | goal | met |\n| --- | --- | --- | --- |\n",
    );
    for f in figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        table.push_str(&format!(
            "| {} | {} | {} | {met} |\n",
            f.name, f.value, f.goal
        ));
    }
    table
}

/// A child killed (by pid) and reaped on drop.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // Already waited for: its pid may be someone else's by now.
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: signalling our own child by pid; SIGINT lets oomreap detach cleanly.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Vec<Figure> {
        vec![
            Figure {
                name: "start-up time, oomreap / bpftrace".into(),
                value: "0.946 (40.0 ms [37.8–50.1] vs 42.3 ms [38.0–47.6])".into(),
                goal: "≤ 0.50".into(),
                met: Some(false),
            },
            Figure {
                name: "tracker heap after 10,000 / 100,000 victims".into(),
                value: "12 / 12 MiB".into(),
                goal: "bounded".into(),
                met: None,
            },
        ]
    }

    #[test]
    fn the_doc_names_its_run_then_the_method_then_the_table() {
        let provenance = Provenance {
            date: "2026-12-04".into(),
            commit: "4cedc6744fff+dirty".into(),
            machine: "Linux 6.18, 2 CPUs, 24 GiB of memory".into(),
        };
        let doc = document(&provenance, 5, 60, &figures());
        assert!(
            doc.starts_with(
                "# Performance\n\nGenerated by `cargo xtask bench`: do not edit this file by hand"
            ),
            "{doc}"
        );
        for line in [
            "- Date: 2026-12-04 (UTC)\n",
            "- Commit: `4cedc6744fff+dirty`\n",
            "- Machine: Linux 6.18, 2 CPUs, 24 GiB of memory\n",
            "- Rounds: 5 of each side-by-side measurement; the daemon idle for 60 s\n",
            "\n## How the figures are measured\n\n",
            "`oomreap doctor --self 10`",
            "over 60 s with nothing to do",
            "| start-up time, oomreap / bpftrace | 0.946 (40.0 ms [37.8–50.1] vs 42.3 ms \
             [38.0–47.6]) | ≤ 0.50 | **no** |\n",
            "| tracker heap after 10,000 / 100,000 victims | 12 / 12 MiB | bounded | - |\n",
        ] {
            assert!(doc.contains(line), "no {line:?} in\n{doc}");
        }
        let results = doc
            .find("\n## Results\n\n| figure |")
            .expect("a results table");
        assert!(doc.ends_with("| - |\n"), "the table ends the doc");
        assert!(doc.find("## How the figures").unwrap() < results);
    }
}
