//! `oomreap top` in a real terminal: tmux runs it, send-keys types, capture-pane reads the
//! screen. Replays need no root; the live test does. Skips where tmux is missing.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{OOMREAP, TempDir, privileged};
use oomreap::{
    recording::RecordWriter,
    testing::fixtures::{contended_skip_at, exit_at, kill_at, reaper_at},
    wire::encode,
};
use oomreap_common::event::EventKind;

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `bash` in a 100×30 window, or returns `None` (after saying why) without tmux.
    fn start(test: &str) -> Option<Self> {
        if which("tmux").is_none() {
            common::skip(
                test,
                "tmux is not installed (`cargo xtask setup` installs it)",
            );
            return None;
        }
        let tmux = Self {
            socket: format!("oomreap-test-{}-{test}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "bash --norc --noprofile",
        ]);
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0"])
    }

    /// Waits until the screen shows `text`.
    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        self.wait_for_line(text, |line| line.contains(text))
    }

    /// Waits until a line of the screen satisfies `pred`; `what` names it in the failure.
    #[track_caller]
    fn wait_for_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        // Generous: the kernel matrix's guests may be running beside (`cargo xtask test
        // --all`), and top's start-up loads and verifies its programs.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.lines().any(&pred) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what:?} never showed; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// A recording: victim 4242 exits at once, victim 7 is jammed until the reaper gives up.
fn recording(dir: &TempDir) -> String {
    let path = dir.0.join("jam.oomreap");
    let mut writer = RecordWriter::new(
        std::fs::File::create(&path).expect("create the recording"),
        0,
    )
    .expect("write the recording");
    let quick = kill_at(500, 4242, "quick");
    writer.write(&encode(&quick)).expect("write the recording");
    writer
        .write(&encode(&exit_at(507, 4242, quick.victim_mm)))
        .expect("write the recording");
    writer
        .write(&encode(&kill_at(1_000, 7, "stuck")))
        .expect("write the recording");
    writer
        .write(&encode(&reaper_at(EventKind::WakeReaper, 3_000, 7)))
        .expect("write the recording");
    for i in 0..10 {
        writer
            .write(&encode(&contended_skip_at(3_000 + i * 100, 7)))
            .expect("write the recording");
    }
    path.display().to_string()
}

#[test]
fn top_replay_in_a_real_terminal() {
    let Some(tmux) = Tmux::start("replay") else {
        return;
    };
    let dir = TempDir::new();
    let file = recording(&dir);
    tmux.keys(&[
        &format!("{OOMREAP} top --replay {file} --speed 100; echo EXIT=$? STTY=$(stty -a | grep -o -- '-\\?icanon')"),
        "Enter",
    ]);
    let screen = tmux.wait_for("GAVE UP");
    assert!(
        screen.contains("oomreap top") && screen.contains("quick"),
        "{screen}"
    );
    // Down to the older victim, then its detail pane.
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_for("victim detail");
    tmux.keys(&["Escape"]);
    tmux.wait_for("K→REAPED");
    // Filter to one victim.
    tmux.keys(&["/", "q", "u", "i", "c", "k", "Enter"]);
    let screen = tmux.wait_for("filter \"quick\"");
    assert!(!screen.contains("stuck"), "{screen}");
    tmux.keys(&["?"]);
    tmux.wait_for("keys (? or Esc to close)");
    tmux.keys(&["Escape", "q"]);
    // Back at the shell: raw mode off (icanon, not -icanon) and the normal screen restored.
    let screen = tmux.wait_for("EXIT=0 STTY=");
    assert!(
        screen.contains("EXIT=0 STTY=icanon"),
        "terminal left raw:\n{screen}"
    );
    assert!(
        !screen.contains("K→REAPED"),
        "alternate screen not left:\n{screen}"
    );
}

#[test]
fn top_live_shows_a_stuck_victim_go_from_killed_to_reaped() {
    let Some(_lock) = privileged("top_live_shows_a_stuck_victim_go_from_killed_to_reaped") else {
        return;
    };
    let Some(tmux) = Tmux::start("live") else {
        return;
    };
    tmux.keys(&[&format!("{OOMREAP} top; echo EXIT=$?"), "Enter"]);
    tmux.wait_for("No OOM victim yet");
    let inject = std::thread::spawn(|| {
        Command::new(OOMREAP)
            .args(["inject", "stuck-victim", "--json"])
            .output()
            .expect("run inject")
    });
    let row =
        |outcome: &'static str| move |l: &str| l.contains("oomreap-hog") && l.contains(outcome);
    let killed = tmux.wait_for_line("the victim's row, killed", row(" killed "));
    let pid = killed
        .lines()
        .find(|l| row(" killed ")(l))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the victim's row")
        .to_owned();
    tmux.wait_for_line("the victim's row, reaped", |l| {
        l.contains(&pid) && l.contains(" reaped")
    });
    let out = inject.join().expect("inject thread");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["victims"][0]["pid"].to_string(), pid);
    tmux.keys(&["q"]);
    tmux.wait_for("EXIT=0");
}

/// Runs `oomreap top ARGS` (with `env`) in the pane, noting its pid in DIR/pid and the
/// terminal's settings before and after it (DIR/before, DIR/after); the pane then prints
/// `EXIT=<status>` and `DONE` (typed as `DO''NE`, so the command line itself never matches). Returns top's pid once it has drawn.
fn top_in_pane(tmux: &Tmux, dir: &TempDir, args: &str, env: &str) -> u32 {
    let d = dir.0.display();
    tmux.keys(&[
        &format!(
            "stty -g > {d}/before; sh -c 'echo $$ > {d}/pid; exec env {env} {OOMREAP} top {args}'; \
             echo EXIT=$?; stty -g > {d}/after; echo DO''NE"
        ),
        "Enter",
    ]);
    tmux.wait_for("No OOM victim yet");
    std::fs::read_to_string(dir.0.join("pid"))
        .expect("top's pid")
        .trim()
        .parse()
        .expect("a pid")
}

fn same_terminal_settings(dir: &TempDir) {
    let read = |name: &str| std::fs::read_to_string(dir.0.join(name)).expect(name);
    assert_eq!(
        read("before"),
        read("after"),
        "the terminal was not restored"
    );
}

#[test]
fn the_terminal_is_restored_after_sigterm_and_a_panic() {
    let Some(_lock) = privileged("the_terminal_is_restored_after_sigterm_and_a_panic") else {
        return;
    };
    let Some(tmux) = Tmux::start("restore") else {
        return;
    };
    let dir = TempDir::new();
    let pid = top_in_pane(&tmux, &dir, "", "");
    // SAFETY: signalling the top we started, by pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let screen = tmux.wait_for("DONE");
    assert!(screen.contains("EXIT=0"), "{screen}");
    same_terminal_settings(&dir);

    // A marker of its own: the first run's DONE may still be on screen before `clear` runs
    // (a loaded CI host once captured it there and read the first run's EXIT).
    tmux.keys(&["clear", "Enter"]);
    let dir = TempDir::new();
    let d = dir.0.display();
    tmux.keys(&[
        &format!(
            "stty -g > {d}/before; RUST_BACKTRACE=0 OOMREAP_FAULTS=panic=drawn {OOMREAP} top; echo EXIT=$?; \
             stty -g > {d}/after; echo PANIC''-DONE"
        ),
        "Enter",
    ]);
    let screen = tmux.wait_for("PANIC-DONE");
    assert!(screen.contains("EXIT=101"), "{screen}");
    assert!(screen.contains("asked for a panic once drawn"), "{screen}");
    same_terminal_settings(&dir);
}

#[test]
fn top_drops_its_capabilities_once_attached() {
    let Some(_lock) = privileged("top_drops_its_capabilities_once_attached") else {
        return;
    };
    let Some(tmux) = Tmux::start("caps") else {
        return;
    };
    use oomreap::kernel::privilege::{CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYSLOG};
    let dir = TempDir::new();
    let pid = top_in_pane(&tmux, &dir, "", "");
    let kept = (1u64 << CAP_SYSLOG) | (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE);
    let threads = common::front_end_thread_capabilities(pid);
    assert!(!threads.is_empty());
    for caps in threads {
        assert_eq!(caps & !kept, 0, "a thread of top kept {caps:#x}");
    }
    tmux.keys(&["q"]);
    assert!(tmux.wait_for("DONE").contains("EXIT=0"));
}

#[test]
fn a_small_ring_buffer_shows_drops_in_the_header() {
    let Some(_lock) = privileged("a_small_ring_buffer_shows_drops_in_the_header") else {
        return;
    };
    let Some(tmux) = Tmux::start("drops") else {
        return;
    };
    let dir = TempDir::new();
    top_in_pane(
        &tmux,
        &dir,
        "--ring-buffer-kib 4",
        "OOMREAP_FAULTS=slow=reader",
    );
    let storm = Command::new(OOMREAP)
        .args(["inject", "storm", "--count", "60"])
        .output()
        .expect("run inject");
    assert_eq!(storm.status.code(), Some(0));
    tmux.wait_for_line("a non-zero dropped count", |line| {
        line.split("dropped ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    });
    tmux.keys(&["q"]);
    tmux.wait_for("DONE");
}
