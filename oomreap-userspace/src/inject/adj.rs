//! adj-choice: why the OOM killer chose the smaller process. Two processes share the
//! scenario's cgroup: the larger holds most of the limit with `oom_score_adj` -900, the
//! smaller allocates past the limit with +500. Without the adjustments the larger would be
//! the victim; with them the OOM killer picks the smaller, and the candidates say why.
use std::io::{Read as _, Write as _};

use super::{
    Report, STEP_TIMEOUT, ScenarioError, Scene, describe, hog, hog_args, protected_report, sleep,
};
use crate::inject::InjectOptions;

/// The larger process's `oom_score_adj`.
pub const PROTECTED_ADJ: i32 = -900;

/// The smaller process's `oom_score_adj`.
pub const VICTIM_ADJ: i32 = 500;

/// How long the protected process holds its memory after the kill.
const AFTER_KILL: std::time::Duration = std::time::Duration::from_secs(2);

/// The holder: after the go byte, touches `mib` MiB, prints `ready` and holds it until the
/// next byte (or end) on stdin.
pub fn hold_memory(mib: u64) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte)?;
    hog::touch(mib)?;
    println!("ready");
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read(&mut byte);
    Ok(())
}

/// Sets a helper's `oom_score_adj` (a negative one needs CAP_SYS_RESOURCE: scenarios run
/// as root).
fn set_adj(pid: u32, adj: i32) -> Result<(), ScenarioError> {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|err| {
        let hint = if adj < 0 && err.kind() == std::io::ErrorKind::PermissionDenied {
            " (lowering it needs CAP_SYS_RESOURCE, which this process lacks)"
        } else {
            ""
        };
        ScenarioError::HelperFailed {
            role: "oom_score_adj",
            why: format!("cannot set pid {pid}'s oom_score_adj to {adj}: {err}{hint}"),
        }
    })
}

/// The scenario: the protected holder takes six tenths of the limit, then the victim
/// allocates past it; the holder is let go once the victim is killed.
pub(super) fn adj_choice(
    mut scene: Scene,
    options: &InjectOptions,
    say: &mut dyn FnMut(&str),
) -> Result<Report, ScenarioError> {
    let held_mib = options.limit_mib * 6 / 10;
    let holder_args = [
        "helper".into(),
        "memory-holder".into(),
        "--mib".into(),
        held_mib.to_string(),
    ];
    let holder = scene.spawn("protected", &holder_args, true)?;
    let holder_pid = scene.helper(holder).pid();
    set_adj(holder_pid, PROTECTED_ADJ)?;
    scene.helper(holder).go()?;
    let ready = scene.helper(holder).read_line()?;
    if ready != "ready" {
        return Err(ScenarioError::HelperFailed {
            role: "protected",
            why: format!("said {ready:?}, not `ready`"),
        });
    }
    // What the kernel itself says of it, for comparison with the candidates' points.
    let oom_score = std::fs::read_to_string(format!("/proc/{holder_pid}/oom_score"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    say(&format!(
        "protected pid {holder_pid} holds {held_mib} MiB with oom_score_adj {PROTECTED_ADJ} \
         (oom_score {})",
        oom_score.map_or("unknown".into(), |s| s.to_string())
    ));
    let before = scene.cgroup.oom_kills()?;
    let victim = scene.spawn("victim", &hog_args(options.limit_mib * 2), true)?;
    let victim_pid = scene.helper(victim).pid();
    set_adj(victim_pid, VICTIM_ADJ)?;
    scene.helper(victim).go()?;
    let status = scene.helper(victim).wait(STEP_TIMEOUT)?;
    scene.wait_for_oom_kill(before)?;
    say(&format!(
        "victim pid {victim_pid} (smaller, oom_score_adj {VICTIM_ADJ}): {}",
        describe(status)
    ));
    // The protected process lives on, as it would: a tracer reads the domain's processes
    // after the kill, however late it drains it.
    sleep(AFTER_KILL)?;
    scene.helper(holder).go()?;
    scene.helper(holder).wait(STEP_TIMEOUT)?;
    say("the protected process let its memory go");
    scene.report.protected = Some(protected_report(holder_pid, PROTECTED_ADJ, oom_score));
    scene.finish(&[victim])
}
