//! `oomreap doctor`: what this kernel offers oomreap, hook by hook, and why anything is
//! missing.
mod cost;

use std::path::PathBuf;

pub use cost::{ProgramCost, SelfCost, measure as measure_self};
use oomreap_common::event::AttachKind;
use serde_json::{Value, json};

use crate::{
    capture::{Capture, CaptureOptions, HOOKS, HookStatus, Refusal, error_chain, probe},
    kernel::{privilege::Capabilities, reaper},
};

/// Everything doctor found.
#[derive(Clone, Debug)]
pub struct Report {
    pub kernel: String,
    pub btf: Result<(PathBuf, u64), String>,
    pub capabilities: Result<(), String>,
    pub tracefs: Result<PathBuf, String>,
    pub reaper_pid: Option<u32>,
    /// Every hook: attached (how) or not (why). Empty-handed hooks say "not checked" when the
    /// capture could not start at all.
    pub hooks: Vec<HookStatus>,
    /// Why the capture could not start, if it could not.
    pub capture_error: Option<String>,
    pub attach_modes: Vec<probe::ModeProbe>,
    /// What the front ends can add to the kernel's events, and what is shown without it.
    pub context: Vec<ContextCheck>,
}

/// One source of context the front ends read besides the kernel programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextCheck {
    pub name: &'static str,
    /// What works, or why it does not.
    pub result: Result<String, String>,
    /// What is shown instead when it does not work.
    pub without: &'static str,
}

/// Checks kernel stacks, kernel symbols and memory cgroup paths.
pub fn context_checks() -> Vec<ContextCheck> {
    use crate::enrich::{Proc, ProcSource as _};
    let stacks = Proc
        .stack(std::process::id())
        .map(|_| "/proc/PID/stack readable".to_owned())
        .map_err(|e| format!("/proc/PID/stack: {e}"));
    let symbols = Proc
        .kallsyms()
        .map_err(|e| format!("/proc/kallsyms: {e}"))
        .and_then(|text| {
            let hidden = text
                .lines()
                .take(10)
                .all(|l| l.starts_with("0000000000000000"));
            if hidden {
                Err("/proc/kallsyms hides addresses (needs CAP_SYSLOG)".to_owned())
            } else {
                Ok("/proc/kallsyms readable".to_owned())
            }
        });
    let cgroups = if let Some(why) = crate::faults::cgroups_unresolved() {
        Err(format!("cgroup ids left unresolved ({why})"))
    } else {
        crate::cgroup::MemoryHierarchy::detect()
            .map(|h| format!("{} ({:?})", h.root.display(), h.version))
            .map_err(|e| e.to_string())
    };
    vec![
        ContextCheck {
            name: "kernel stacks",
            result: stacks,
            without: "lock holders are listed without their kernel stacks",
        },
        ContextCheck {
            name: "kernel symbols",
            result: symbols,
            without: "mmu notifiers are shown as addresses, not owners",
        },
        ContextCheck {
            name: "cgroup paths",
            result: cgroups,
            without: "memory cgroups are shown as kernel ids, not paths or pods",
        },
    ]
}

impl Report {
    /// Returns true if and only if the hooks oomreap cannot do without are attached.
    pub fn usable(&self) -> bool {
        self.capture_error.is_none()
    }
}

/// Examines this machine; attaches (and detaches) everything to see what works. Must run in
/// a tokio runtime.
pub fn examine(options: &CaptureOptions) -> Report {
    let capabilities = Capabilities::current()
        .and_then(|c| c.check_tracing())
        .map_err(|e| error_chain(&e));
    let (hooks, capture_error) = match Capture::start(options) {
        Ok(capture) => (capture.hooks().to_vec(), None),
        Err(err) => {
            let why = error_chain(&err);
            let hooks = HOOKS
                .iter()
                .map(|h| HookStatus {
                    name: h.name,
                    provides: h.provides,
                    attach: None,
                    note: Some(Refusal::NotChecked(why.clone()).to_string()),
                    attached_when: None,
                    not_needed: None,
                })
                .collect();
            (hooks, Some(why))
        }
    };
    let attach_modes = if capabilities.is_ok() {
        probe::attach_modes(&options.paths)
    } else {
        Vec::new()
    };
    Report {
        kernel: kernel_release(),
        btf: std::fs::metadata(&options.paths.btf)
            .map(|m| (options.paths.btf.clone(), m.len()))
            .map_err(|e| format!("{}: {e}", options.paths.btf.display())),
        capabilities,
        tracefs: options.paths.tracefs().map_err(|e| e.to_string()),
        reaper_pid: reaper::find_pid(),
        hooks,
        capture_error,
        attach_modes,
        context: context_checks(),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn attach_name(kind: AttachKind) -> &'static str {
    crate::wording::attach_label(kind)
}

/// The report as aligned text.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<14}{value}\n"));
    line("kernel", report.kernel.clone());
    line(
        "btf",
        match &report.btf {
            Ok((path, size)) => format!("{} ({} KiB)", path.display(), size / 1024),
            Err(e) => format!("missing: {e} (classic tracepoints only, reduced detail)"),
        },
    );
    line(
        "capabilities",
        match &report.capabilities {
            Ok(()) => "ok".into(),
            Err(e) => e.clone(),
        },
    );
    line(
        "tracefs",
        match &report.tracefs {
            Ok(path) => path.display().to_string(),
            Err(e) => format!("{e} (needed for classic and syscall tracepoints)"),
        },
    );
    line(
        "oom_reaper",
        report.reaper_pid.map_or("kthread not found".into(), |pid| {
            format!("kthread pid {pid}")
        }),
    );
    out.push_str("hooks:\n");
    let width = report.hooks.iter().map(|h| h.name.len()).max().unwrap_or(0);
    for hook in &report.hooks {
        let mut state = match (hook.attach, &hook.note) {
            (Some(kind), None) => format!("attached ({})", attach_name(kind)),
            // A classic tracepoint with a note is one whose BTF form was refused; any other
            // attached hook's note says what was refused before it (a `_loop` form, fentry).
            (Some(kind @ AttachKind::TracePoint), Some(note)) => {
                format!("attached ({}; BTF refused: {note})", attach_name(kind))
            }
            (Some(kind), Some(note)) => format!("attached ({}; {note})", attach_name(kind)),
            (None, note) if hook.not_needed.is_some() => {
                let why = hook.not_needed.as_deref().unwrap_or_default();
                match note {
                    Some(note) => format!("not needed: {why} ({note})"),
                    None => format!("not needed: {why}"),
                }
            }
            (None, _) => hook.missing().unwrap_or_default(),
        };
        if let (Some(_), Some(when)) = (hook.attach, &hook.attached_when) {
            state.push_str(&format!(", {when}"));
        }
        out.push_str(&format!("  {:<width$}  {state}\n", hook.name));
    }
    if !report.attach_modes.is_empty() {
        out.push_str("attach modes:\n");
        let width = report
            .attach_modes
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for mode in &report.attach_modes {
            let state = match &mode.result {
                Ok(()) => "allowed".to_owned(),
                Err(why) => format!("refused: {why}"),
            };
            out.push_str(&format!("  {:<width$}  {state}\n", mode.name));
        }
    }
    out.push_str("context:\n");
    for check in &report.context {
        let state = match &check.result {
            Ok(what) => what.clone(),
            Err(why) => format!("unavailable: {why}; {}", check.without),
        };
        out.push_str(&format!("  {:<16}{state}\n", check.name));
    }
    if let Some(err) = &report.capture_error {
        out.push_str(&format!("oomreap cannot trace here: {err}\n"));
    }
    out
}

/// The report as one JSON object (schema in docs/events.md, "doctor").
pub fn json(report: &Report) -> Value {
    json!({
        "schema": crate::wording::SCHEMA_VERSION,
        "kernel": report.kernel,
        "btf": match &report.btf {
            Ok((path, size)) => json!({"path": path, "bytes": size}),
            Err(e) => json!({"error": e}),
        },
        "capabilities": match &report.capabilities { Ok(()) => json!({"ok": true}), Err(e) => json!({"ok": false, "error": e}) },
        "tracefs": match &report.tracefs { Ok(p) => json!({"path": p}), Err(e) => json!({"error": e}) },
        "oom_reaper_pid": report.reaper_pid,
        "hooks": report.hooks.iter().map(HookStatus::to_json).collect::<Vec<_>>(),
        "attach_modes": report.attach_modes.iter().map(|m| json!({
            "name": m.name,
            "allowed": m.result.is_ok(),
            "error": m.result.as_ref().err(),
        })).collect::<Vec<_>>(),
        "context": report.context.iter().map(|c| json!({
            "name": c.name,
            "ok": c.result.is_ok(),
            "detail": match &c.result { Ok(d) | Err(d) => d },
            "without": c.without,
        })).collect::<Vec<_>>(),
        "usable": report.usable(),
        "error": report.capture_error,
    })
}
