//! Tests that try to break oomreap: every way of stopping it, two instances at once, a ring
//! buffer too small for a storm, each degraded mode forced on, capabilities after attach,
//! bad input. Needs root (but the bad-input tests); see docs/reliability.md.

mod common;

use std::{
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::Command,
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use common::{
    CgroupVictim, OOMREAP, OwnChild, Serve, TempDir, TracefsMount, assert_gone, bpf_objects_of,
    doctor_json as doctor, front_end_thread_capabilities, hook, loaded_bpf_objects, privileged,
    sample, start_command,
};
use serde_json::Value;

/// `oomreap ARGS` with `env`, as [`start_command`] starts it.
fn start(args: &[&str], env: &[(&str, &str)]) -> (OwnChild, Receiver<String>, Receiver<String>) {
    start_command(Command::new(OOMREAP).args(args).envs(env.iter().copied()))
}

#[test]
fn every_way_of_stopping_leaves_no_bpf_object_behind() {
    let Some(_lock) = privileged("every_way_of_stopping_leaves_no_bpf_object_behind") else {
        return;
    };
    for (signal, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        let (mut trace, _stdout, _stderr) = start(&["trace"], &[]);
        let ours = bpf_objects_of(trace.pid());
        for kind in ["prog", "map", "link"] {
            assert!(
                ours.iter().any(|(k, _)| *k == kind),
                "no {kind} among {ours:?}"
            );
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(trace.pid() as i32, signal) };
        let status = trace
            .wait_timeout(Duration::from_secs(10))
            .expect("oomreap stops");
        if signal == libc::SIGKILL {
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        } else {
            assert_eq!(status.code(), Some(0), "{name}: {status:?}");
        }
        assert_gone(name, |loaded| loaded.intersection(&ours).copied().collect());
    }

    // A panic once attached: unwinding (or, failing that, exit) releases everything.
    let before = loaded_bpf_objects();
    let out = Command::new(OOMREAP)
        .arg("trace")
        .env("OOMREAP_FAULTS", "panic=attached")
        .output()
        .expect("run oomreap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains("asked for a panic once attached"),
        "{stderr}"
    );
    assert_gone("a panic", |loaded| {
        loaded.difference(&before).copied().collect()
    });
}

#[test]
fn two_instances_trace_the_same_victim_and_write_nothing_unasked() {
    let Some(_lock) = privileged("two_instances_trace_the_same_victim_and_write_nothing_unasked")
    else {
        return;
    };
    let (cwd, home) = (TempDir::new(), TempDir::new());
    let start_in_cwd = || {
        start_command(
            Command::new(OOMREAP)
                .args(["trace", "--json"])
                .current_dir(&cwd.0)
                .env("HOME", &home.0),
        )
    };
    let (mut first, first_out, _first_err) = start_in_cwd();
    let (mut second, second_out, _second_err) = start_in_cwd();
    let mut victim = CgroupVictim::start(64, 256);
    victim.expect_oom_kill();
    let pid = u64::from(victim.child.pid());
    for (name, out) in [("first", &first_out), ("second", &second_out)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = out
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the {name} instance never showed victim {pid}"));
            let object: Value = serde_json::from_str(&line).expect("JSON");
            if object["step"] == "kill" && object["victim"]["tid"] == pid {
                break;
            }
        }
    }
    for trace in [&mut first, &mut second] {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
        let status = trace.wait_timeout(Duration::from_secs(10)).expect("stops");
        assert_eq!(status.code(), Some(0));
    }
    for dir in [&cwd, &home] {
        let written: Vec<_> = std::fs::read_dir(&dir.0)
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        assert!(written.is_empty(), "files nobody asked for: {written:?}");
    }
}

/// A 4 KiB ring buffer read 2 s after each wake-up (`slow=reader`) overflows in a storm.
const SMALL_RING: [&str; 2] = ["--ring-buffer-kib", "4"];

/// The storm's cgroup limit: small, so its victims die fast enough to overflow the small
/// ring between two reads even when the CPUs are busy (at 128 MiB, with a kernel matrix
/// running beside, a storm could trickle in under 4 KiB per 2 s and lose nothing).
const STORM_LIMIT_MIB: u32 = 32;
const SLOW_READER: (&str, &str) = ("OOMREAP_FAULTS", "slow=reader");

/// `oomreap inject storm`; `limit_mib` small makes victims quick to kill.
fn storm(count: u32, limit_mib: u32) {
    common::inject(&[
        "storm",
        "--count",
        &count.to_string(),
        "--limit",
        &limit_mib.to_string(),
    ]);
}

#[test]
fn a_small_ring_buffer_loses_events_and_every_front_end_says_so() {
    let Some(_lock) = privileged("a_small_ring_buffer_loses_events_and_every_front_end_says_so")
    else {
        return;
    };
    // trace: counted, reported on stderr, exit status 1.
    let mut args = vec!["trace"];
    args.extend(SMALL_RING);
    let (mut trace, _stdout, stderr) = start(&args, &[SLOW_READER]);
    storm(60, STORM_LIMIT_MIB);
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
    let status = trace.wait_timeout(Duration::from_secs(20)).expect("stops");
    let said: Vec<String> = stderr.try_iter().collect();
    assert_eq!(status.code(), Some(1), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.contains("events lost: the ring buffer was full")),
        "{said:?}"
    );

    // serve: the dropped-events counter.
    let serve = Serve::start_with(&SMALL_RING, &[SLOW_READER]);
    storm(60, STORM_LIMIT_MIB);
    let name = "oomreap_dropped_events_total{reason=\"ring_buffer_full\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let dropped = loop {
        let dropped = sample(&serve.metrics(), name).unwrap_or(0.0);
        if dropped > 0.0 || Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(dropped > 0.0, "{name} stayed 0");
    drop(serve);

    // run: the report counts them, and `--fail-on dropped-events` fails.
    let report = TempDir::new();
    let path = report.0.join("report.json");
    let out = Command::new(OOMREAP)
        .arg("run")
        .args(SMALL_RING)
        .args(["--fail-on", "dropped-events", "--json"])
        .arg(&path)
        .args(["--", OOMREAP, "inject", "storm", "--count", "60", "--limit"])
        .arg(STORM_LIMIT_MIB.to_string())
        .env(SLOW_READER.0, SLOW_READER.1)
        .output()
        .expect("run oomreap run");
    let text = std::fs::read_to_string(&path).expect("the report");
    let report: Value = serde_json::from_str(&text).expect("report JSON");
    assert!(
        report["dropped_events"].as_u64() > Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(90), "the expectation failed");
}

/// The kernel has the `bpf_loop` helper (5.17+), whose function /proc/kallsyms lists.
fn kernel_has_bpf_loop() -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .is_ok_and(|symbols| symbols.lines().any(|l| l.ends_with(" bpf_loop")))
}

fn context<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["context"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no context check {name} in {report}"))
}

#[test]
fn each_degraded_mode_keeps_tracing_and_has_a_doctor_line() {
    let Some(_lock) = privileged("each_degraded_mode_keeps_tracing_and_has_a_doctor_line") else {
        return;
    };
    let _tracefs = TracefsMount::ensure();

    // A missing tracepoint: that hook only.
    let report = doctor(&[], "missing=oom:wake_reaper");
    let wake = hook(&report, "oom:wake_reaper");
    assert_eq!(wake["attached"], false, "{wake}");
    assert!(
        wake["note"]
            .as_str()
            .is_some_and(|n| n.contains("no tracepoint oom:wake_reaper")),
        "{wake}"
    );
    assert_eq!(report["usable"], true);

    // A refused BTF program load: the classic tracepoint instead.
    let report = doctor(&[], "refuse=btf_tracepoint@oom:wake_reaper");
    let wake = hook(&report, "oom:wake_reaper");
    assert_eq!(
        (&wake["attached"], &wake["attach"]),
        (&Value::from(true), &Value::from("tracepoint")),
        "{wake}"
    );
    assert!(
        wake["note"]
            .as_str()
            .is_some_and(|n| n.contains("refused by OOMREAP_FAULTS")),
        "{wake}"
    );

    // A verifier that refuses the bpf_loop forms (5.17+ kernels get them): the unrolled
    // program instead, still a BTF tracepoint, and the note says so.
    if kernel_has_bpf_loop() {
        let report = doctor(&[], "refuse=bpf_loop");
        let kill = hook(&report, "oom:mark_victim");
        assert_eq!(kill["attach"], "btf_tracepoint", "{kill}");
        assert!(
            kill["note"]
                .as_str()
                .is_some_and(|n| n.contains("mark_victim_btf_loop refused")
                    && n.contains("refused by OOMREAP_FAULTS")),
            "{kill}"
        );
    } else {
        eprintln!("skipped the bpf_loop refusal: this kernel has no bpf_loop (before 5.17)");
    }

    // No BTF: classic tracepoints everywhere, and doctor says why.
    let report = doctor(&["--btf", "/nonexistent/vmlinux"], "");
    assert!(report["btf"]["error"].is_string(), "{}", report["btf"]);
    assert_eq!(hook(&report, "oom:mark_victim")["attach"], "tracepoint");
    assert_eq!(report["usable"], true);

    // Unreadable stacks and unknown cgroup ids: context lines.
    let report = doctor(&[], "unreadable=stack,unresolved=cgroups");
    for name in ["kernel stacks", "cgroup paths"] {
        let check = context(&report, name);
        assert_eq!(check["ok"], false, "{check}");
        assert!(check["without"].is_string(), "{check}");
    }

    // ... and tracing goes on without them: the victim's memory cgroup shows as its id.
    let (mut trace, stdout, _stderr) = start(
        &["trace"],
        &[("OOMREAP_FAULTS", "unreadable=stack,unresolved=cgroups")],
    );
    let mut victim = CgroupVictim::start(64, 256);
    victim.expect_oom_kill();
    let pid = victim.child.pid().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let kill = loop {
        let line = stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a kill line for the victim");
        if line.contains(" kill ") && line.split_whitespace().nth(2) == Some(pid.as_str()) {
            break line;
        }
    };
    assert!(kill.contains("memcg id "), "{kill}");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
    trace.wait_timeout(Duration::from_secs(10)).expect("stops");

    // Without the one hook it cannot do without, oomreap stops with one line naming it.
    let out = Command::new(OOMREAP)
        .arg("trace")
        .env("OOMREAP_FAULTS", "missing=oom:mark_victim")
        .output()
        .expect("run trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("oom:mark_victim"), "{stderr}");
}

#[test]
fn serve_drops_its_capabilities_once_attached() {
    let Some(_lock) = privileged("serve_drops_its_capabilities_once_attached") else {
        return;
    };
    use oomreap::kernel::privilege::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYSLOG};
    let serve = Serve::start();
    // Still serving after the drop, and still folding events.
    let mut victim = CgroupVictim::start(64, 256);
    victim.expect_oom_kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(&serve.metrics(), "oomreap_victims_killed_total").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "serve stopped counting victims");
        std::thread::sleep(Duration::from_millis(200));
    }
    let threads = front_end_thread_capabilities(serve.pid());
    assert!(threads.len() >= 2, "{threads:?}");
    for caps in &threads {
        assert_eq!(
            caps & !(1 << CAP_SYSLOG),
            0,
            "a thread kept more than CAP_SYSLOG: {caps:#x}"
        );
    }
    let all = threads.iter().fold(0, |a, c| a | c);
    for cap in [CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN] {
        assert_eq!(all & (1 << cap), 0, "capability {cap} kept");
    }
}

/// Bad input needs no privileges: each is refused with a message naming the problem.
#[test]
fn bad_arguments_and_replay_files_are_named() {
    // As nobody where we can be: none of this needs privileges.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(OOMREAP);
        cmd.args(args);
        if root {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().expect("run oomreap");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, named) in [
        (&["trace", "--ring-buffer-kib", "3"][..], "power of two"),
        (&["trace", "--attach", "sideways"][..], "sideways"),
        (&["trace", "--functions", "uprobe"][..], "uprobe"),
        (&["serve", "--listen", "0.0.0.0:9717"][..], "not loopback"),
        (
            &["top", "--replay", "/nonexistent/recording"][..],
            "/nonexistent/recording",
        ),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }

    let dir = TempDir::new();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).expect("write");
        path.to_string_lossy().into_owned()
    };
    let mut newer = oomreap::recording::MAGIC.to_vec();
    newer.extend_from_slice(&99u32.to_le_bytes());
    newer.extend_from_slice(&[0; 16]);
    let mut truncated = oomreap::recording::MAGIC.to_vec();
    truncated.extend_from_slice(&1u32.to_le_bytes());
    for (path, named) in [
        (write("newer", &newer), "format version 99"),
        (write("truncated", &truncated), "truncated"),
        (
            write("garbage", b"not a recording at all"),
            "not an oomreap recording",
        ),
    ] {
        let (code, stderr) = run(&["trace", "--replay", &path]);
        assert_eq!(code, Some(2), "{path}: {stderr}");
        assert!(stderr.contains(named), "{path}: {stderr}");
    }

    let (code, stderr) = {
        let out = Command::new(OOMREAP)
            .arg("trace")
            .env("OOMREAP_FAULTS", "refuse=teleport")
            .output()
            .expect("run oomreap");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("OOMREAP_FAULTS: unknown fault"), "{stderr}");
}

/// The documented bound on `serve`'s memory after 10,000 victims (docs/reliability.md).
const SERVE_RSS_BOUND_KIB: u64 = 64 * 1024;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

#[test]
#[ignore = "long: run by `cargo xtask test --long`"]
fn serve_stays_small_after_10000_victims() {
    let Some(_lock) = privileged("serve_stays_small_after_10000_victims") else {
        return;
    };
    let serve = Serve::start();
    let before = status_kib(serve.pid(), "VmRSS:");
    storm(10_000, 16);
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed = loop {
        let killed = sample(&serve.metrics(), "oomreap_victims_killed_total").unwrap_or(0.0);
        if killed >= 10_000.0 || Instant::now() > deadline {
            break killed;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(killed >= 10_000.0, "serve counted {killed} victims");
    let (rss, peak) = (
        status_kib(serve.pid(), "VmRSS:"),
        status_kib(serve.pid(), "VmHWM:"),
    );
    // Written directly: libtest hides a passing test's output, and the figures must show.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "serve after 10,000 victims: RSS {rss} KiB (peak {peak} KiB; {before} KiB at start)"
    );
    assert!(
        peak < SERVE_RSS_BOUND_KIB,
        "serve's peak RSS {peak} KiB exceeds the documented {SERVE_RSS_BOUND_KIB} KiB"
    );
}
