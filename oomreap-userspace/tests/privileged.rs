//! End-to-end tests against the running kernel: real BPF programs, real OOM kills in
//! throwaway memory cgroups. They need root; elsewhere each one says it was skipped.
//! See tests/README.md.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{CgroupVictim, OOMREAP, OwnChild, TracefsMount, loaded_program_ids, privileged};
use oomreap::{
    capture::{AttachPreference, Capture, CaptureOptions},
    hog::HOG_COMM,
    wire::{Event, MarkVictim},
};
use oomreap_common::event::AttachKind;

/// Starts a capture, OOM-kills a hog in a 64 MiB cgroup, and returns the hog's
/// `mark_victim` event.
async fn capture_one_victim(attach: AttachPreference) -> (MarkVictim, u32) {
    let options = CaptureOptions {
        attach,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&options).expect("start the capture");
    let mut victim = CgroupVictim::start(64, 256);
    let pid = victim.child.pid();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let batch = capture.next_batch().await.expect("read events");
            assert!(
                batch.errors.is_empty(),
                "undecodable records: {:?}",
                batch.errors
            );
            for event in batch.events {
                let Event::MarkVictim(e) = event;
                if e.victim.pid == pid {
                    return e;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no mark_victim event for pid {pid} within 30 s"));
    victim.expect_oom_kill();
    let counters = capture.counters().expect("read counters");
    assert_eq!(counters.ring_buffer_full, 0);
    (found, pid)
}

/// The capture needs a tokio reactor; the privileged lock is a std mutex held outside it.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

#[test]
fn btf_tracepoint_captures_the_victim_with_its_memory() {
    let Some(_lock) = privileged("btf_tracepoint_captures_the_victim_with_its_memory") else {
        return;
    };
    let (event, pid) = block_on(capture_one_victim(AttachPreference::Btf));
    assert_eq!(event.attach, AttachKind::BtfTracePoint);
    assert_eq!(event.victim.tgid, Some(pid));
    assert_eq!(event.victim.comm.as_deref(), Some(HOG_COMM));
    let memory = event.memory.expect("BTF mode reads the victim's RSS");
    assert!(
        memory.anon_rss_kib >= 32 * 1024,
        "anon RSS {} KiB is implausibly small for a hog in a 64 MiB cgroup",
        memory.anon_rss_kib
    );
    assert!(
        memory.anon_rss_kib <= 64 * 1024 + 1024,
        "anon RSS {} KiB exceeds the limit",
        memory.anon_rss_kib
    );
    assert!(event.mm.is_some() && event.uid == Some(0) && event.oom_score_adj == Some(0));
    // The hog hit its own limit, so it is its own trigger.
    assert_eq!(event.trigger.tgid, Some(pid));
}

#[test]
fn classic_tracepoint_captures_the_victim_with_its_memory() {
    let Some(_lock) = privileged("classic_tracepoint_captures_the_victim_with_its_memory") else {
        return;
    };
    let _tracefs = TracefsMount::ensure();
    let (event, _pid) = block_on(capture_one_victim(AttachPreference::Classic));
    assert_eq!(event.attach, AttachKind::TracePoint);
    assert_eq!(event.victim.comm.as_deref(), Some(HOG_COMM));
    let memory = event.memory.expect("this kernel's record carries RSS");
    assert!(
        memory.anon_rss_kib >= 32 * 1024,
        "anon RSS {} KiB",
        memory.anon_rss_kib
    );
    // The classic record has no tgid or mm.
    assert_eq!((event.victim.tgid, event.mm), (None, None));
}

/// Reads lines from a child's pipe on a thread, so the test can wait with a timeout.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => continue,
            Err(err) => panic!("no line with {what} within 30 s: {err}"),
        }
    }
}

#[test]
fn trace_prints_the_victim_and_detaches_on_sigint() {
    let Some(_lock) = privileged("trace_prints_the_victim_and_detaches_on_sigint") else {
        return;
    };
    let programs_before = loaded_program_ids("mark_victim_btf");
    let mut trace = OwnChild(
        Command::new(OOMREAP)
            .args(["trace", "--attach", "btf"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oomreap trace"),
    );
    let stdout = lines_of(trace.0.stdout.take().expect("stdout"));
    let stderr = lines_of(trace.0.stderr.take().expect("stderr"));
    wait_for_line(&stderr, "the attached message", |l| {
        l.contains("tracing oom:mark_victim")
    });
    let ours: Vec<u32> = loaded_program_ids("mark_victim_btf")
        .difference(&programs_before)
        .copied()
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "expected one new mark_victim_btf program, got {ours:?}"
    );

    let mut victim = CgroupVictim::start(64, 256);
    let pid = victim.child.pid().to_string();
    victim.expect_oom_kill();
    let line = wait_for_line(&stdout, "the victim's pid", |l| {
        l.split_whitespace().nth(3) == Some(pid.as_str())
    });
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[1], "victim", "{line}");
    assert_eq!(columns[4], HOG_COMM, "{line}");

    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
    let status = trace
        .wait_timeout(Duration::from_secs(10))
        .expect("trace exits on SIGINT");
    assert_eq!(status.code(), Some(0), "trace exit: {status:?}");
    let rest: Vec<String> = stderr.try_iter().collect();
    assert!(
        rest.iter().all(|l| !l.contains("error")),
        "stderr: {rest:?}"
    );
    // The kernel frees a program after its last reference goes, in deferred work: give it time.
    let unloaded = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !loaded_program_ids("mark_victim_btf").contains(&ours[0])
    });
    assert!(
        unloaded,
        "mark_victim_btf still loaded 5 s after trace exited"
    );
}

#[test]
fn trace_without_privileges_fails_in_one_line() {
    let Some(_lock) = privileged("trace_without_privileges_fails_in_one_line") else {
        return;
    };
    // Run as nobody: no capabilities at all.
    let out = Command::new(OOMREAP)
        .arg("trace")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run oomreap trace as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains("CAP_BPF and CAP_PERFMON"),
        "stderr: {stderr}"
    );
    assert!(out.status.signal().is_none());
}

#[test]
fn trace_without_btf_fails_or_falls_back() {
    let Some(_lock) = privileged("trace_without_btf_fails_or_falls_back") else {
        return;
    };
    let missing = "/nonexistent/vmlinux";
    let out = Command::new(OOMREAP)
        .args(["trace", "--attach", "btf", "--btf", missing])
        .output()
        .expect("run oomreap trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains("kernel BTF not found at /nonexistent/vmlinux"),
        "{stderr}"
    );

    // With --attach auto the same situation falls back to the classic tracepoint.
    let _tracefs = TracefsMount::ensure();
    let mut trace = OwnChild(
        Command::new(OOMREAP)
            .args(["trace", "--btf", missing])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oomreap trace"),
    );
    let stderr = lines_of(trace.0.stderr.take().expect("stderr"));
    wait_for_line(&stderr, "the fallback warning", |l| {
        l.contains("using classic tracepoints")
    });
    let attached = wait_for_line(&stderr, "the attached message", |l| l.contains("tracing"));
    assert!(attached.contains("classic tracepoint"), "{attached}");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGTERM) };
    let status = trace
        .wait_timeout(Duration::from_secs(10))
        .expect("trace exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}
