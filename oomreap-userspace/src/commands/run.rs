//! `oomreap run -- CMD`.
use std::process::ExitCode;

use anyhow::Context as _;

use super::{live_intake, with_runtime};
use crate::{EXIT_EXPECTATION_FAILED, cli::RunArgs};

pub(crate) fn run_run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    use oomreap::session::{Scope, Session};
    let scope = match &args.cgroup {
        Some(path) => {
            let absolute = if path.is_absolute() {
                path.clone()
            } else {
                oomreap::cgroup::MemoryHierarchy::detect()?.root.join(path)
            };
            let id = std::os::unix::fs::MetadataExt::ino(
                &std::fs::metadata(&absolute)
                    .with_context(|| format!("no cgroup at {:?}", absolute.display()))?,
            );
            Scope::Cgroup { id, path: absolute }
        }
        None => Scope::All,
    };
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let settle = std::time::Duration::from_secs_f64(args.settle.max(0.0));
    let report = with_runtime(async {
        // Stacks only for the recording: the report does not show them.
        let record = args.record.as_deref();
        let intake = live_intake(&(&args.attach).into(), record, record.is_some(), true)?;
        let mut session = Session::start(intake, scope);
        let mut child = tokio::process::Command::new(&args.command[0])
            .args(&args.command[1..])
            .spawn()
            .with_context(|| format!("failed to run {:?}", command[0]))?;
        if args.descendants
            && let Some(root) = child.id()
        {
            session.set_scope(Scope::Descendants { root });
        }
        let status = session
            .run_while(wait_forwarding_signals(&mut child))
            .await??;
        let exit_code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        session.settle(settle).await?;
        Ok(session.finish(command.clone(), exit_code, &args.expectations())?)
    })?;
    eprint!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{:#}\n", report.json()))
            .with_context(|| format!("failed to write {:?}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit())
            .with_context(|| format!("failed to write {:?}", path.display()))?;
    }
    Ok(if !report.passed() {
        ExitCode::from(EXIT_EXPECTATION_FAILED)
    } else {
        ExitCode::from(u8::try_from(report.exit_code).unwrap_or(1))
    })
}

/// Waits for the command; SIGINT and SIGTERM go to it rather than ending oomreap (which must
/// detach and report), as `time` and `sudo` do.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let forward = tokio::select! {
            status = child.wait() => return status,
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
        };
        if let Some(pid) = child.id() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid as libc::pid_t, forward) };
        }
    }
}
