//! The switches themselves, read from the environment: in `testing` builds only.
//!
//! `OOMREAP_FAULTS` is a comma-separated list of:
//!
//! | fault | effect |
//! | --- | --- |
//! | `refuse=MODE` or `refuse=MODE@TARGET` | loading or attaching in MODE (`fentry`, `kprobe`, `btf_tracepoint`, `tracepoint`) fails, for every hook or only TARGET (`__oom_reap_task_mm`, `oom:wake_reaper`, …); `bpf_loop` refuses only the programs' `bpf_loop` forms, as an older verifier might |
//! | `missing=HOOK` | the tracepoint HOOK (`oom:wake_reaper`, …) does not exist |
//! | `unreadable=stack` | `/proc/PID/stack` cannot be read |
//! | `unresolved=cgroups` | memory cgroup ids cannot be turned into paths |
//! | `panic=attached` | oomreap panics once its programs are attached |
//! | `panic=drawn` | `top` panics once it has drawn the dashboard |
//! | `slow=reader` | the ring buffer is read 2 s after each wake-up, so a small buffer (`--ring-buffer-kib 4`) overflows in a storm |
//!
//! Unset, nothing is pretended; an entry oomreap does not know is an error at start-up, so a
//! typo cannot make a test pass for the wrong reason.

/// The variable's name.
pub const VARIABLE: &str = "OOMREAP_FAULTS";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{VARIABLE}: unknown fault {0:?}; expected refuse=MODE[@TARGET], missing=HOOK, \
     unreadable=stack, unresolved=cgroups, panic=attached, panic=drawn or slow=reader"
)]
pub struct UnknownFault(pub String);

/// The faults asked for, parsed once: checks run on hot paths (every stack read, every
/// draw), and the variable does not change while oomreap runs.
fn entries() -> &'static [(String, String)] {
    static ENTRIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ENTRIES.get_or_init(|| parse(&std::env::var(VARIABLE).unwrap_or_default()))
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((what, value)) => (what.to_owned(), value.to_owned()),
            None => (e.to_owned(), String::new()),
        })
        .collect()
}

/// Checks every entry is one oomreap knows.
pub fn validate() -> Result<(), UnknownFault> {
    for (what, value) in entries() {
        let (what, value) = (what.as_str(), value.as_str());
        let known = match what {
            "refuse" => {
                let mode = value.split_once('@').map_or(value, |(m, _)| m);
                [
                    "fentry",
                    "kprobe",
                    "btf_tracepoint",
                    "tracepoint",
                    "bpf_loop",
                ]
                .contains(&mode)
            }
            "missing" => !value.is_empty(),
            "unreadable" => value == "stack" || value == "lock",
            "unresolved" => value == "cgroups",
            "panic" => value == "attached" || value == "drawn",
            "slow" => value == "reader",
            _ => false,
        };
        if !known {
            return Err(UnknownFault(format!("{what}={value}")));
        }
    }
    Ok(())
}

/// Why loading `target` in `mode` (an attach id: `fentry`, `btf_tracepoint`, …) is to fail,
/// if it is.
pub fn refusal(mode: &str, target: &str) -> Option<String> {
    entries()
        .iter()
        .any(|(what, value)| {
            what == "refuse"
                && match value.split_once('@') {
                    Some((m, t)) => m == mode && t == target,
                    None => value == mode,
                }
        })
        .then(refusal_message)
}

/// Why the tracepoint `hook` is to look absent, if it is.
pub fn missing(hook: &str) -> Option<String> {
    has("missing", hook).then(|| format!("missing={hook} in {VARIABLE}"))
}

fn has(what: &str, value: &str) -> bool {
    entries().iter().any(|(w, v)| w == what && v == value)
}

/// Why `/proc/PID/stack` is to look unreadable, if it is.
pub fn stacks_unreadable() -> Option<String> {
    has("unreadable", "stack").then(refusal_message)
}

/// Why the reaper's skip is to look unable to read the victim's lock (so the trylock hook is
/// attached, and the gate holds it), if it is.
pub fn lock_unreadable() -> Option<String> {
    has("unreadable", "lock").then(|| format!("unreadable=lock in {VARIABLE}"))
}

/// Why memory cgroup ids are to stay unresolved, if they are.
pub fn cgroups_unresolved() -> Option<String> {
    has("unresolved", "cgroups").then(|| format!("unresolved=cgroups in {VARIABLE}"))
}

/// How long the ring buffer reader waits after each wake-up (zero unless `slow=reader`).
pub fn reader_delay() -> std::time::Duration {
    if has("slow", "reader") {
        std::time::Duration::from_secs(2)
    } else {
        std::time::Duration::ZERO
    }
}

/// Panics if asked to once attached (tests check that a panic leaves nothing behind).
pub fn after_attach() {
    if has("panic", "attached") {
        panic!("{VARIABLE} asked for a panic once attached");
    }
}

/// Panics if asked to once `top` has drawn (tests check the terminal is restored).
pub fn after_draw() {
    if has("panic", "drawn") {
        panic!("{VARIABLE} asked for a panic once drawn");
    }
}

/// The error a refused mode reports.
fn refusal_message() -> String {
    format!("refused by {VARIABLE} (testing)")
}
