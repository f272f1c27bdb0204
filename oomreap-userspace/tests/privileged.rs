//! End-to-end tests against the running kernel: real BPF programs, real OOM kills in
//! throwaway memory cgroups. They need root; elsewhere each one says it was skipped.
//! See tests/README.md.

mod common;

use std::{
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    CgroupVictim, GUEST_PACE, OOMREAP, OwnChild, TempDir, TracefsMount, lines_of,
    loaded_program_ids, privileged,
};
use oomreap::{
    capture::{AttachPreference, Capture, CaptureOptions, enable_run_time_stats, gate},
    inject::hog::HOG_COMM,
    wire::{Event, MarkVictim, decode},
};
use oomreap_common::event::AttachKind;
use serde_json::Value;

/// Starts a capture, OOM-kills a hog in a 64 MiB cgroup, and returns the hog's
/// `mark_victim` event.
async fn capture_one_victim(attach: AttachPreference) -> (MarkVictim, u32, u64) {
    let options = CaptureOptions {
        attach,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&options).expect("start the capture");
    let mut victim = CgroupVictim::start(64, 256);
    let pid = victim.child.pid();
    let cgroup_id = victim.cgroup.id().expect("cgroup id");
    let found = tokio::time::timeout(GUEST_PACE, async {
        loop {
            let records = capture.next_records().await.expect("read events");
            for record in records {
                let event = decode(&record).expect("every record decodes");
                if let Event::MarkVictim(e) = event
                    && e.victim.pid == pid
                {
                    return e;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no mark_victim event for pid {pid} within {GUEST_PACE:?}"));
    victim.expect_oom_kill();
    let counters = capture.counters().expect("read counters");
    assert_eq!(counters.ring_buffer_full, 0);
    (found, pid, cgroup_id)
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
    let (event, pid, cgroup_id) = block_on(capture_one_victim(AttachPreference::Btf));
    assert_eq!(event.attach, AttachKind::BtfTracePoint);
    assert_eq!(event.victim.tgid, Some(pid));
    assert_eq!(event.victim.comm.as_deref(), Some(HOG_COMM));
    let memory = event.memory.expect("BTF mode reads the victim's RSS");
    assert!(
        memory.anon_rss_kib >= 32 * 1024,
        "anon RSS {} KiB is implausibly small for a hog in a 64 MiB cgroup",
        memory.anon_rss_kib
    );
    // The limit bounds what was charged to the cgroup; what the hog touched before it was
    // moved in (its runtime's heap and stack, about 1 MiB) stays charged where it was, yet
    // counts in its RSS: seen here as 1024 to 1152 KiB over, so allow 4 MiB.
    assert!(
        memory.anon_rss_kib <= 64 * 1024 + 4 * 1024,
        "anon RSS {} KiB exceeds the limit",
        memory.anon_rss_kib
    );
    assert!(event.mm.is_some() && event.uid == Some(0) && event.oom_score_adj == Some(0));
    // The hog hit its own limit, so it is its own trigger.
    assert_eq!(event.trigger.tgid, Some(pid));
    // Its memory cgroup is the one the test made, and a plain process has no mmu notifier.
    assert_eq!(event.memcg_id, Some(cgroup_id));
    assert_eq!(event.notifiers.map(|n| n.count), Some(0));
}

#[test]
fn classic_tracepoint_captures_the_victim_with_its_memory() {
    let Some(_lock) = privileged("classic_tracepoint_captures_the_victim_with_its_memory") else {
        return;
    };
    let _tracefs = TracefsMount::ensure();
    let (event, _pid, _) = block_on(capture_one_victim(AttachPreference::Classic));
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

fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    loop {
        match rx.recv_timeout(GUEST_PACE) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => continue,
            Err(err) => panic!("no line with {what} within {GUEST_PACE:?}: {err}"),
        }
    }
}

/// Starts `oomreap ARGS` with piped output; returns it and its stdout and stderr lines.
fn spawn_oomreap(args: &[&str]) -> (OwnChild, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    spawn_oomreap_env(args, &[])
}

/// As [`spawn_oomreap`], with these environment variables.
fn spawn_oomreap_env(
    args: &[&str],
    env: &[(&str, &str)],
) -> (OwnChild, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = OwnChild(
        Command::new(OOMREAP)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oomreap"),
    );
    let stdout = lines_of(child.0.stdout.take().expect("stdout"));
    let stderr = lines_of(child.0.stderr.take().expect("stderr"));
    (child, stdout, stderr)
}

/// Sends `signal` to our own child and waits for its exit status.
fn stop(child: &mut OwnChild, signal: i32) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.pid() as i32, signal) };
    child
        .wait_timeout(Duration::from_secs(10))
        .expect("oomreap exits on the signal")
}

/// The mmap_lock hook fires on every mmap_lock use on every CPU. Where the reaper's skip
/// reads its trylock result from the lock, it is not attached at all; elsewhere (pretended
/// here with `unreadable=lock`, in a process of its own: faults are read once per process),
/// at rest, under process churn, it is not attached and runs 0 times; a kill attaches it
/// (the reaper's first trylock comes 2 s later) and quiet detaches it again.
#[test]
fn the_mmap_lock_hook_is_attached_only_while_a_victim_is_in_flight() {
    let test = "the_mmap_lock_hook_is_attached_only_while_a_victim_is_in_flight";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if std::env::var_os("OOMREAP_FAULTS").is_none() {
        let hook = block_on(async {
            let capture = Capture::start(&CaptureOptions::default()).expect("start the capture");
            capture
                .hooks()
                .iter()
                .find(|h| h.name == "mmap_lock:mmap_lock_acquire_returned")
                .cloned()
                .expect("the mmap_lock hook's status")
        });
        if common::kernel_has_btf() {
            assert!(
                hook.attach.is_none() && hook.not_needed.is_some(),
                "{hook:?}"
            );
        }
        let exe = std::env::current_exe().expect("this test binary");
        let status = Command::new(exe)
            .args([test, "--exact", "--test-threads", "1", "--nocapture"])
            .env("OOMREAP_FAULTS", "unreadable=lock")
            .status()
            .expect("run the gated half");
        assert!(status.success(), "the gated half failed: {status}");
        return;
    }
    block_on(async {
        let mut capture = Capture::start(&CaptureOptions::default()).expect("start the capture");
        let hook = capture
            .hooks()
            .iter()
            .find(|h| h.name == "mmap_lock:mmap_lock_acquire_returned")
            .expect("the mmap_lock hook's status")
            .clone();
        let when = hook.attached_when.clone().unwrap_or_default();
        if hook.attach.is_none() || when != "only while an OOM victim is in flight" {
            assert!(
                hook.attach.is_none() || capture.hot_hooks_attached(),
                "an ungated hook is attached for good: {when}"
            );
            eprintln!("skipped {test}: the hook is not gated on this kernel: {hook:?}");
            return;
        }
        let _stats = enable_run_time_stats().expect("BPF_ENABLE_STATS");
        let runs = |capture: &Capture| -> u64 {
            capture
                .program_stats()
                .iter()
                .filter(|p| p.name.starts_with("mmap_lock_acquire_returned"))
                .map(|p| p.run_count)
                .sum()
        };
        assert!(!capture.hot_hooks_attached(), "attached at rest");
        let before = runs(&capture);
        for _ in 0..50 {
            Command::new("true").status().expect("run true");
        }
        assert_eq!(runs(&capture) - before, 0, "the hook ran at rest");

        let mut victim = CgroupVictim::start(64, 256);
        let pid = victim.child.pid();
        tokio::time::timeout(GUEST_PACE, async {
            loop {
                let records = capture.next_records().await.expect("read events");
                if records
                    .iter()
                    .any(|r| matches!(decode(r), Ok(Event::MarkVictim(e)) if e.victim.pid == pid))
                {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no mark_victim for pid {pid} within {GUEST_PACE:?}"));
        victim.expect_oom_kill();
        let attached = Instant::now();
        while !capture.hot_hooks_attached() {
            assert!(
                attached.elapsed() < GUEST_PACE,
                "not attached after the kill"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let during = runs(&capture);
        for _ in 0..5 {
            Command::new("true").status().expect("run true");
        }
        assert!(runs(&capture) > during, "attached but not running");
        // Nothing more comes for this quick exit: the hook goes after the hold.
        let waiting = Instant::now();
        while capture.hot_hooks_attached() {
            assert!(
                waiting.elapsed() < gate::HOLD + GUEST_PACE,
                "still attached {:?} after the kill",
                waiting.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = runs(&capture);
        for _ in 0..50 {
            Command::new("true").status().expect("run true");
        }
        assert_eq!(
            runs(&capture) - after,
            0,
            "the hook ran after it was detached"
        );
    });
}

/// process_mrelease(2)'s entry names its target from the pidfd without checking that the
/// descriptor is one; on a descriptor of another kind the kernel says EBADF, and the call
/// must name no target (what entry read through the file was not a process).
#[test]
fn process_mrelease_on_a_descriptor_that_is_no_pidfd_names_no_target() {
    let test = "process_mrelease_on_a_descriptor_that_is_no_pidfd_names_no_target";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if !common::process_mrelease_here(test) {
        return;
    }
    let _tracefs = TracefsMount::ensure();
    block_on(async {
        let mut capture = Capture::start(&CaptureOptions::default()).expect("start the capture");
        // Files whose private_data is set, to something else than a struct pid: an eventfd's
        // context, an epoll instance (read as a pid, its memory gave a mm with a junk RSS
        // before exit dropped it), a pipe's end.
        let mut pipe = [0; 2];
        // SAFETY: each call has no memory precondition but `pipe`, a live array of two ints;
        // every result is checked.
        let fds = unsafe {
            assert_eq!(libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC), 0);
            [
                libc::eventfd(0, libc::EFD_CLOEXEC),
                libc::epoll_create1(libc::EPOLL_CLOEXEC),
                pipe[0],
            ]
        };
        for fd in fds {
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            // SAFETY: on a descriptor that is no pidfd the call fails with EBADF and changes
            // nothing.
            let rc = unsafe { libc::syscall(libc::SYS_process_mrelease, fd, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            assert_eq!((rc, errno), (-1, Some(libc::EBADF)), "fd {fd}");
        }
        for fd in fds.into_iter().chain([pipe[1]]) {
            // SAFETY: closes descriptors this test opened.
            unsafe { libc::close(fd) };
        }
        let mut calls = Vec::new();
        tokio::time::timeout(GUEST_PACE, async {
            while calls.len() < fds.len() {
                for record in capture.next_records().await.expect("read events") {
                    if let Ok(Event::Mrelease(e)) = decode(&record)
                        && fds.contains(&e.pidfd)
                        && e.caller.tgid == Some(std::process::id())
                    {
                        calls.push(e);
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} of 3 process_mrelease events in {GUEST_PACE:?}",
                calls.len()
            )
        });
        for call in calls {
            assert_eq!(call.ret, -i64::from(libc::EBADF));
            assert_eq!((call.mm, call.victim_pid), (None, None), "{call:?}");
            assert_eq!(call.target, Default::default(), "{call:?}");
        }
    });
}

/// The quick-exit lifecycle, live in text: kill, exit_mmap, then the outcome.
#[test]
fn trace_shows_a_quick_exit_lifecycle_and_detaches_on_sigint() {
    let Some(_lock) = privileged("trace_shows_a_quick_exit_lifecycle_and_detaches_on_sigint")
    else {
        return;
    };
    let programs_before = loaded_program_ids("mark_victim_btf");
    let (mut trace, stdout, stderr) = spawn_oomreap(&["trace", "--attach", "btf"]);
    wait_for_line(&stderr, "the attached message", |l| {
        l.contains("oomreap: tracing")
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
    let ours_line = |step: &'static str| {
        let pid = pid.clone();
        move |l: &str| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            columns.get(2) == Some(&pid.as_str()) && columns.get(4) == Some(&step)
        }
    };
    let kill = wait_for_line(&stdout, "the kill", ours_line("kill"));
    assert_eq!(kill.split_whitespace().nth(3), Some(HOG_COMM), "{kill}");
    let cgroup = victim
        .cgroup
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(kill.contains(&format!("memcg /{cgroup}")), "{kill}");
    // 5.10 has no mmap:exit_mmap tracepoint: silence settles the outcome instead.
    if common::hook_attaches("mmap:exit_mmap") {
        let freed = wait_for_line(&stdout, "exit_mmap", ours_line("exit_mmap"));
        assert!(freed.contains("memory freed +"), "{freed}");
    }
    let outcome = wait_for_line(&stdout, "the outcome", ours_line("outcome"));
    assert!(
        outcome.contains("exited before the reaper woke"),
        "{outcome}"
    );

    let status = stop(&mut trace, libc::SIGINT);
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

/// Stopping a trace first takes what the kernel already emitted: a reader that lags (here
/// told to sleep 2 s after each wake-up; a TCG guest lags by itself) loses nothing unread.
#[test]
fn a_trace_stopped_at_once_still_prints_the_kill_it_had_not_read() {
    let Some(_lock) = privileged("a_trace_stopped_at_once_still_prints_the_kill_it_had_not_read")
    else {
        return;
    };
    let (mut trace, stdout, stderr) =
        spawn_oomreap_env(&["trace", "--json"], &[("OOMREAP_FAULTS", "slow=reader")]);
    wait_for_line(&stderr, "the attached message", |l| {
        l.contains("oomreap: tracing")
    });
    let mut victim = CgroupVictim::start(64, 256);
    let pid = u64::from(victim.child.pid());
    victim.expect_oom_kill();
    // The reader is asleep with the kill unread: stop now.
    assert_eq!(stop(&mut trace, libc::SIGINT).code(), Some(0));
    // Every line it printed, up to its end of output.
    let kill = stdout.iter().find(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|o| o["victim"]["tid"] == pid && o["step"] == "kill")
    });
    assert!(kill.is_some(), "the kill of {pid} was lost at shutdown");
}

/// JSON output of a live run, recorded; the replay without root gives the same lifecycle.
#[test]
fn json_trace_and_its_recording_replay_the_same_lifecycle() {
    let Some(_lock) = privileged("json_trace_and_its_recording_replay_the_same_lifecycle") else {
        return;
    };
    let dir = TempDir::new();
    let file = dir.0.join("quick-exit.oomreap");
    let file_arg = file.to_str().expect("utf-8 path");
    let (mut trace, stdout, stderr) = spawn_oomreap(&["trace", "--json", "--record", file_arg]);
    wait_for_line(&stderr, "the attached message", |l| {
        l.contains("oomreap: tracing")
    });
    let mut victim = CgroupVictim::start(64, 256);
    let pid = u64::from(victim.child.pid());
    victim.expect_oom_kill();
    let ours = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|o| o["victim"]["tid"] == pid)
    };
    let mut live: Vec<serde_json::Value> = Vec::new();
    // The story ends with the outcome, then, where the kill named its domain, the recovery.
    let judged = |live: &[serde_json::Value]| live[0]["oom_domain"].is_null();
    loop {
        let line = wait_for_line(&stdout, "a JSON line for the victim", ours);
        let object: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let step = object["step"].clone();
        live.push(object);
        if step == "recovery" || (step == "outcome" && judged(&live)) {
            break;
        }
    }
    assert_eq!(stop(&mut trace, libc::SIGINT).code(), Some(0));
    let steps = |objects: &[serde_json::Value]| -> Vec<String> {
        objects
            .iter()
            .map(|o| o["step"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    // Before 6.0 the victim's exit reaps it, seen with a function hook; 5.10 traces no
    // exit_mmap.
    let mut expected = vec!["kill"];
    if common::exit_reaps_victims() && common::hook_attaches("__oom_reap_task_mm") {
        expected.push("reap_fn");
    }
    if common::hook_attaches("mmap:exit_mmap") {
        expected.push("exit_mmap");
    }
    expected.push("outcome");
    if !live[0]["oom_domain"].is_null() {
        expected.push("recovery");
    }
    assert_eq!(steps(&live), expected, "{live:#?}");
    assert_eq!(live[0]["schema"], 1);
    let outcome = live
        .iter()
        .find(|o| o["step"] == "outcome")
        .expect("an outcome");
    assert_eq!(outcome["outcome"], "exited");
    assert!(live[0]["memory"]["anon_rss_kib"].as_u64().unwrap_or(0) >= 32 * 1024);

    // Replay as nobody: no privileges needed.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new(OOMREAP)
        .args(["trace", "--json", "--replay", file_arg])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("replay");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| ours(l))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(steps(&replayed), steps(&live));
    for (r, l) in replayed.iter().zip(&live) {
        // An outcome silence settled (no exit_mmap traced, as on 5.10) is timed by a live
        // timer, and by the recording's end in a replay.
        if l["step"] == "outcome" && l["inferred"] == true {
            continue;
        }
        assert_eq!(r["ts_ns"], l["ts_ns"]);
        assert_eq!(r["time"], l["time"]);
    }
    let outcome = |objects: &[serde_json::Value]| {
        objects
            .iter()
            .find(|o| o["step"] == "outcome")
            .cloned()
            .expect("an outcome")
    };
    let (r, l) = (outcome(&replayed), outcome(&live));
    assert_eq!(r["outcome"], l["outcome"]);
    assert_eq!(r["kill_to_mm_freed_ns"], l["kill_to_mm_freed_ns"]);
    // The replay judges the kill from the recorded readings, as the live run did.
    let recovery = |objects: &[serde_json::Value]| {
        objects
            .iter()
            .find(|o| o["step"] == "recovery")
            .map(|o| o["recovery"].clone())
    };
    assert_eq!(recovery(&replayed), recovery(&live));
    // And its candidates from the recorded reading of the domain's processes.
    let candidates = |objects: &[serde_json::Value]| {
        objects
            .iter()
            .find(|o| o["step"] == "kill")
            .map(|o| o["candidates"].clone())
    };
    assert!(candidates(&live).is_some_and(|c| c["listed"].is_array()));
    assert_eq!(candidates(&replayed), candidates(&live));
}

#[test]
fn doctor_reports_every_hook_and_attach_mode() {
    let Some(_lock) = privileged("doctor_reports_every_hook_and_attach_mode") else {
        return;
    };
    let out = Command::new(OOMREAP)
        .args(["doctor", "--json"])
        .output()
        .expect("doctor");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["usable"], true);
    assert_eq!(report["capabilities"]["ok"], true);
    let hooks = report["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), oomreap::capture::HOOKS.len());
    for hook in hooks {
        // Attached, or not with a reason (or not needed, and why): never silent.
        assert!(
            hook["attached"] == true || hook["note"].is_string() || hook["not_needed"].is_string(),
            "{hook}"
        );
    }
    let mark_victim = &hooks[0];
    assert_eq!(
        (
            mark_victim["name"].as_str(),
            mark_victim["attached"].as_bool()
        ),
        (Some("oom:mark_victim"), Some(true))
    );
    let modes = report["attach_modes"].as_array().expect("attach modes");
    let names: Vec<&str> = modes.iter().filter_map(|m| m["name"].as_str()).collect();
    let wrapper = oomreap::kernel::arch::PROCESS_MRELEASE_WRAPPER;
    let (fentry_wrapper, kprobe_wrapper) =
        (format!("fentry {wrapper}"), format!("kprobe {wrapper}"));
    assert_eq!(
        names,
        [
            "fentry __oom_reap_task_mm",
            "kprobe __oom_reap_task_mm",
            "fentry __mmu_notifier_invalidate_range_start",
            "kprobe __mmu_notifier_invalidate_range_start",
            "fentry oom_kill_process",
            "kprobe oom_kill_process",
            "fentry oom_badness",
            "kprobe oom_badness",
            "fentry out_of_memory",
            "kprobe out_of_memory",
            &fentry_wrapper,
            &kprobe_wrapper,
        ]
    );
    for mode in modes {
        assert!(
            mode["allowed"] == true || mode["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{mode}"
        );
    }
    // The capture chose the best mode the kernel allows, and says why it did not use a
    // better one.
    if common::forced_function_mode().is_none() {
        let allowed = |name: &str| {
            modes
                .iter()
                .any(|m| m["name"] == name && m["allowed"] == true)
        };
        let reap = hooks
            .iter()
            .find(|h| h["name"] == "__oom_reap_task_mm")
            .expect("the reap function hook");
        let best = if allowed("fentry __oom_reap_task_mm") {
            Value::from("fentry")
        } else if allowed("kprobe __oom_reap_task_mm") {
            Value::from("kprobe")
        } else {
            Value::Null
        };
        assert_eq!(reap["attach"], best, "{reap}");
        if best != "fentry" {
            assert!(
                reap["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("fentry refused")),
                "{reap}"
            );
        }
    }

    // Without privileges: a report all the same, saying why nothing could be checked.
    let out = Command::new(OOMREAP)
        .args(["doctor"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("doctor as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("missing capability CAP_BPF and CAP_PERFMON"),
        "{text}"
    );
    assert!(
        text.contains("oom:mark_victim") && text.contains("not checked"),
        "{text}"
    );
}

/// process_mrelease(2) is traced at its syscall wrapper wherever a function mode attaches
/// there, and through the syscall tracepoints (which put every syscall of every task on the
/// kernel's slow path) only where none does. Two doctor runs (each loads every program: tens
/// of seconds in a TCG guest): the best mode, and tracepoints only with one of the pair
/// pretended missing.
#[test]
fn process_mrelease_takes_the_syscall_tracepoints_only_without_a_function_hook() {
    let test = "process_mrelease_takes_the_syscall_tracepoints_only_without_a_function_hook";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if !common::process_mrelease_here(test) {
        return;
    }
    let _tracefs = TracefsMount::ensure();
    let wrapper = oomreap::kernel::arch::PROCESS_MRELEASE_WRAPPER;
    let tracepoints = [
        "syscalls:sys_enter_process_mrelease",
        "syscalls:sys_exit_process_mrelease",
    ];
    let report = common::doctor_json(&[], "");
    // Doctor tries every mode on every function apart: each mode that hooks the reap
    // function must hook the wrapper too.
    let allowed = |name: String| {
        report["attach_modes"]
            .as_array()
            .expect("attach modes")
            .iter()
            .any(|m| m["name"] == name && m["allowed"] == true)
    };
    for mode in ["fentry", "kprobe"] {
        if allowed(format!("{mode} __oom_reap_task_mm")) {
            assert!(allowed(format!("{mode} {wrapper}")), "{mode}: {report}");
        }
    }
    let function = common::hook(&report, wrapper);
    if function["attached"] == true {
        for name in tracepoints {
            let tracepoint = common::hook(&report, name);
            assert_eq!(tracepoint["attached"], false, "{tracepoint}");
            let why = tracepoint["not_needed"].as_str().unwrap_or_default();
            assert!(why.contains(wrapper), "{tracepoint}");
        }
    } else {
        for name in tracepoints {
            let tracepoint = common::hook(&report, name);
            assert_eq!(tracepoint["attach"], "tracepoint", "{tracepoint}");
            let when = tracepoint["attached_when"].as_str().unwrap_or_default();
            assert!(when.contains("slow path"), "{tracepoint}");
        }
        let why = function["not_needed"].as_str().unwrap_or_default();
        assert!(why.contains(tracepoints[0]), "{function}");
    }
    // Tracepoints only, and one of the pair alone tells nothing: it is detached again, and
    // the wrapper is missed.
    let report = common::doctor_json(
        &["--functions", "off"],
        "missing=syscalls:sys_exit_process_mrelease",
    );
    let function = common::hook(&report, wrapper);
    assert_eq!(function["attached"], false, "{function}");
    assert!(function["not_needed"].is_null(), "{function}");
    let enter = common::hook(&report, tracepoints[0]);
    assert_eq!(enter["attached"], false, "{enter}");
    assert!(
        enter["note"]
            .as_str()
            .unwrap_or_default()
            .contains("detached again"),
        "{enter}"
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
    let attached = wait_for_line(&stderr, "the attached message", |l| {
        l.contains("oomreap: tracing")
    });
    assert!(attached.contains("classic tracepoints"), "{attached}");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGTERM) };
    let status = trace
        .wait_timeout(Duration::from_secs(10))
        .expect("trace exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

/// A refused fentry load falls back to kprobes, and a refused kprobe to tracepoints only: never
/// an abort. `OOMREAP_FAULTS` makes the refusal happen on kernels that would allow the mode.
#[test]
fn refused_function_modes_fall_back_without_aborting() {
    let Some(_lock) = privileged("refused_function_modes_fall_back_without_aborting") else {
        return;
    };
    let doctor = |faults: &str| common::doctor_json(&[], faults);
    let reap_hook = |report: &Value| common::hook(report, "__oom_reap_task_mm").clone();
    let kprobe_allowed = doctor("")["attach_modes"]
        .as_array()
        .expect("attach modes")
        .iter()
        .any(|m| m["name"] == "kprobe __oom_reap_task_mm" && m["allowed"] == true);

    let no_fentry = reap_hook(&doctor("refuse=fentry"));
    let note = no_fentry["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("fentry refused: refused by OOMREAP_FAULTS"),
        "{no_fentry}"
    );
    let expected = if kprobe_allowed {
        "kprobe".into()
    } else {
        Value::Null
    };
    assert_eq!(no_fentry["attach"], expected, "{no_fentry}");

    let neither = doctor("refuse=fentry,refuse=kprobe");
    assert_eq!(neither["usable"], true, "tracepoints still work: {neither}");
    let hook = reap_hook(&neither);
    assert_eq!(hook["attach"], Value::Null, "{hook}");
    let note = hook["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("fentry refused") && note.contains("kprobe refused"),
        "{hook}"
    );
}

/// A kretprobe attached through the kprobe PMU gets the kernel's default instances, before
/// 6.2 one per CPU without CONFIG_PREEMPTION: a call beyond them is never seen to return. The
/// capture makes its return probes in tracefs with its own count, removes them when it ends,
/// and removes those a killed oomreap left; where tracefs is read-only (as the DaemonSet
/// mounts it) it attaches with the default count and says so in the hook's note.
#[test]
fn return_probes_have_room_for_every_call_and_leave_nothing_behind() {
    use oomreap::capture::{FunctionPreference, functions::KPROBE_PMU, return_probe::INSTANCES};
    let test = "return_probes_have_room_for_every_call_and_leave_nothing_behind";
    let Some(_lock) = privileged(test) else {
        return;
    };
    if !std::path::Path::new(KPROBE_PMU).exists() {
        common::skip(test, "this kernel has no kprobes (no kprobe PMU)");
        return;
    }
    let _tracefs = TracefsMount::ensure();
    let kprobe_events = std::path::Path::new("/sys/kernel/tracing/kprobe_events");
    let ours = |pid: u32| {
        let group = format!(":oomreap_{pid}_");
        std::fs::read_to_string(kprobe_events)
            .expect("read kprobe_events")
            .lines()
            .filter(|line| line.contains(&group))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let append = |line: &str| {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(kprobe_events)
            .and_then(|mut f| f.write_all(line.as_bytes()))
    };
    // What a killed oomreap leaves: a probe in the group of a process that no longer runs (a
    // child of ours, waited for). A probe of anyone else's stays.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead = gone.id();
    gone.wait().expect("wait for true");
    let leftover = format!("oomreap_{dead}_1/oom_reap_task_mm_kretprobe_0");
    let keep = format!("kprobes/oomreap_test_keep_{}", std::process::id());
    // Removes both probes this test makes, whatever happens (the leftover is gone already
    // when the test passes).
    struct Made<'a, F: Fn(&str) -> std::io::Result<()>>([&'a str; 2], F);
    impl<F: Fn(&str) -> std::io::Result<()>> Drop for Made<'_, F> {
        fn drop(&mut self) {
            for event in self.0 {
                let _ = (self.1)(&format!("-:{event}\n"));
            }
        }
    }
    let _made = Made([&leftover, &keep], append);
    for event in [&leftover, &keep] {
        append(&format!("r:{event} __oom_reap_task_mm\n"))
            .unwrap_or_else(|e| panic!("make {event} in kprobe_events: {e}"));
    }
    let kept = |text: &str| text.contains(&keep);

    let kprobes = CaptureOptions {
        functions: FunctionPreference::Kprobe,
        ..CaptureOptions::default()
    };
    let me = std::process::id();
    let reap_hook = |capture: &Capture| {
        capture
            .hooks()
            .iter()
            .find(|h| h.name == "__oom_reap_task_mm")
            .cloned()
            .expect("the reap function's hook")
    };
    block_on(async {
        let capture = Capture::start(&kprobes).expect("start a kprobe capture");
        let hook = reap_hook(&capture);
        assert_eq!(hook.attach, Some(AttachKind::Kprobe), "{hook:?}");
        assert!(hook.note.is_none(), "{hook:?}");
        let made = ours(me);
        let reap = made
            .iter()
            .find(|line| line.ends_with(" __oom_reap_task_mm"))
            .unwrap_or_else(|| panic!("no return probe on the reap function in {made:?}"));
        assert!(reap.starts_with(&format!("r{INSTANCES}:")), "{reap}");
        let text = std::fs::read_to_string(kprobe_events).expect("read kprobe_events");
        assert!(!text.contains(&leftover), "the leftover is removed: {text}");
        assert!(kept(&text), "another's probe stays: {text}");
        drop(capture);
    });
    assert_eq!(
        ours(me),
        Vec::<String>::new(),
        "the capture removed its probes"
    );

    // A read-only tracefs: the PMU's default count, said in the note.
    let dir = TempDir::new();
    let target = std::ffi::CString::new(dir.0.as_os_str().as_encoded_bytes()).expect("path");
    let mount = |source: &std::ffi::CStr, flags| {
        // SAFETY: valid NUL-terminated strings; no filesystem type or data for a bind mount.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "bind mount: {}", std::io::Error::last_os_error());
    };
    mount(c"/sys/kernel/tracing", libc::MS_BIND);
    struct Unmount<'a>(&'a std::ffi::CString);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            // SAFETY: unmounting the bind mount this test made.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _unmount = Unmount(&target);
    // A remount drops the flags it does not repeat: keep those tracefs has.
    // SAFETY: a zeroed statvfs is valid to fill; the path is NUL-terminated.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(target.as_ptr(), &mut vfs) }, 0);
    let kept_flags = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ]
    .iter()
    .filter(|(st, _)| vfs.f_flag & st != 0)
    .fold(0, |flags, (_, ms)| flags | ms);
    mount(
        c"none",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept_flags,
    );
    let mut read_only = kprobes.clone();
    read_only.paths.tracefs_candidates = vec![dir.0.display().to_string()];
    block_on(async {
        let capture = Capture::start(&read_only).expect("start with a read-only tracefs");
        let hook = reap_hook(&capture);
        assert_eq!(hook.attach, Some(AttachKind::Kprobe), "{hook:?}");
        let note = hook.note.unwrap_or_default();
        assert!(note.contains("default instances"), "{note}");
        assert_eq!(ours(me), Vec::<String>::new(), "none made read-only");
    });
}
