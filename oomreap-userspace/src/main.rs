//! The `oomreap` binary: parse flags, dispatch, map the outcome to an exit status.
//!
//! Exit status: 0 success; 1 the command ran but events were lost or a recording was damaged
//! (each is reported on stderr), or for `doctor`, oomreap cannot trace here; 2 error (bad
//! flags, missing privileges or kernel features, I/O failure).

mod cli;
mod generate;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{
    Cli, Command, DoctorArgs, HelperRole, InjectArgs, RecordArgs, RunArgs, ServeArgs, TopArgs,
    TraceArgs,
};
use oomreap::{
    capture::{Capture, CaptureOptions},
    display::WallClock,
    doctor,
    intake::{Intake, IntakeOptions},
    kernel::privilege,
    lab::scenario::{self, Scenario},
    recording::{self, RecordWriter},
    trace::{self, Format, TraceSummary},
};

// Every exit status, in one table (the command's own status passes through `run`).
/// The command ran, but events were lost or a recording was damaged; for `doctor`, oomreap
/// cannot trace here.
const EXIT_LOST_EVENTS: u8 = 1;
/// Bad flags, missing privileges or kernel features, I/O failure.
const EXIT_ERROR: u8 = 2;
/// `run`: an expectation failed.
const EXIT_EXPECTATION_FAILED: u8 = 90;
/// `run`: oomreap itself failed (kept apart from any status the command could return).
const EXIT_RUN_ERROR: u8 = 91;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The dashboard owns the terminal: its log lines go to --log FILE or nowhere.
    let log_target = match &cli.command {
        Command::Top(args) => match &args.log {
            Some(path) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => LogTarget::File(file),
                Err(err) => {
                    eprintln!(
                        "oomreap: error: failed to open log file {:?}: {err}",
                        path.display()
                    );
                    return ExitCode::from(EXIT_ERROR);
                }
            },
            None => LogTarget::Nowhere,
        },
        _ => LogTarget::Stderr,
    };
    init_logging(cli.verbose, log_target);
    let is_run = matches!(cli.command, Command::Run(_));
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oomreap: error: {err:#}");
            ExitCode::from(if is_run { EXIT_RUN_ERROR } else { EXIT_ERROR })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Top(args) => run_top(&args),
        Command::Trace(args) => run_trace(&args),
        Command::Record(args) => run_record(&args),
        Command::Doctor(args) => run_doctor(&args),
        Command::Serve(args) => run_serve(&args),
        Command::Run(args) => run_run(&args),
        Command::Inject(args) => run_inject(&args),
        Command::Helper(args) => run_helper(args.role),
        Command::Hog(args) => {
            oomreap::lab::hog::run(args.mib, args.wait_for_go).context("hog failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            generate::run(args.what, &args.dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    if let Some(path) = &args.replay {
        let recording = open_recording(path)?;
        let summary = trace::run_replay(
            &recording,
            format,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )?;
        return Ok(exit_code(&summary));
    }
    let record = args.record.as_deref();
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), record, true)?;
        let summary = trace::run(
            intake,
            format,
            shutdown_signal(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        )
        .await?;
        Ok(exit_code(&summary))
    })
}

fn run_top(args: &TopArgs) -> anyhow::Result<ExitCode> {
    use oomreap::tui::{self, App};
    if let Some(path) = &args.replay {
        let recording = open_recording(path)?;
        let intake = Intake::replay(recording, Some(args.speed));
        let app = App::new(intake, Some(path.display().to_string()));
        with_runtime(async { Ok(tui::run(app, shutdown_signal()).await?) })?;
        return Ok(ExitCode::SUCCESS);
    }
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), None, true)?;
        drop_capabilities(privilege::after_attach::TOP);
        tui::run(App::new(intake, None), shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `oomreap record`: the live intake writing the raw stream and its annotations, with
/// nothing shown but losses.
fn run_record(args: &RecordArgs) -> anyhow::Result<ExitCode> {
    with_runtime(async {
        let intake = live_intake(&(&args.attach).into(), Some(&args.file), true)?;
        let summary = trace::run(
            intake,
            Format::Text,
            shutdown_signal(),
            &mut std::io::sink(),
            &mut std::io::stderr(),
        )
        .await?;
        eprintln!(
            "oomreap: recorded {} victims to {}",
            summary.victims,
            args.file.display()
        );
        Ok(exit_code(&summary))
    })
}

/// Attaches and starts a live intake, recording to `record` if given; `stacks` reads lock
/// holders' kernel stacks.
fn live_intake(
    options: &CaptureOptions,
    record: Option<&std::path::Path>,
    stacks: bool,
) -> anyhow::Result<Intake> {
    let clock = WallClock::now();
    let record = record
        .map(|path| create_recording(path, &clock))
        .transpose()?;
    let capture = Capture::start(options)?;
    Ok(Intake::live(
        capture,
        clock,
        IntakeOptions { record, stacks },
    )?)
}

fn run_run(args: &RunArgs) -> anyhow::Result<ExitCode> {
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
        let intake = live_intake(&(&args.attach).into(), record, record.is_some())?;
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

fn run_serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let options = args.options().map_err(anyhow::Error::msg)?;
    // Scrapes are served on one worker while events are folded on the other.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Workers only serve HTTP: they start without the capabilities the main thread needs
        // to attach (capabilities are per thread).
        .on_thread_start(|| {
            let _ = privilege::keep_only(&[]);
        })
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(async {
            let intake = live_intake(&(&args.attach).into(), None, false)?;
            drop_capabilities(privilege::after_attach::SERVE);
            let scheme = options.scheme();
            oomreap::exporter::serve(
                intake,
                options,
                |addr| eprintln!("oomreap: serving {scheme}://{addr}/metrics"),
                shutdown_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        })
}

fn run_doctor(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    if let Some(seconds) = args.self_seconds {
        return run_doctor_self(args, seconds);
    }
    let report = with_runtime(async { Ok(doctor::examine(&(&args.attach).into())) })?;
    if args.json {
        println!("{}", doctor::json(&report));
    } else {
        print!("{}", doctor::text(&report));
    }
    Ok(if report.usable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LOST_EVENTS)
    })
}

fn run_inject(args: &InjectArgs) -> anyhow::Result<ExitCode> {
    let Some(scenario) = args.scenario.filter(|_| !args.list) else {
        for s in Scenario::ALL {
            println!(
                "{:<16}{}\n{:<16}needs: {}",
                s.name(),
                s.description(),
                "",
                s.needs()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    scenario::catch_signals();
    let mut say = |line: &str| eprintln!("oomreap inject: {line}");
    let report = scenario::run(scenario, &args.into(), &mut say)
        .with_context(|| format!("scenario {} failed", scenario.name()))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_helper(role: HelperRole) -> anyhow::Result<ExitCode> {
    use oomreap::lab::scenario::roles;
    match role {
        HelperRole::StuckVictim {
            mib,
            stall,
            kvm,
            odp_device,
            odp_mib,
            odp_releaser,
            hold,
        } => {
            let odp = odp_device.map(|device| roles::OdpRequest {
                device,
                mib: odp_mib,
                releaser: odp_releaser,
            });
            roles::stuck_victim(mib, &stall, kvm, odp, hold)
        }
        HelperRole::HoldNetns => oomreap::lab::scenario::hold_netns(),
        HelperRole::LockVictim { mib, stall } => roles::lock_victim(mib, &stall),
        HelperRole::JamRead { pid, address } => roles::jam_read(pid, address),
        HelperRole::JamWrite { pid } => roles::jam_write(pid),
        HelperRole::MmChurn { iterations } => oomreap::lab::load::mm_churn(iterations),
        HelperRole::ForkChurn { iterations } => oomreap::lab::load::fork_churn(iterations),
    }
    .context("helper failed")?;
    Ok(ExitCode::SUCCESS)
}

/// `doctor --self`: what oomreap's own kernel programs cost over `seconds`.
fn run_doctor_self(args: &DoctorArgs, seconds: u64) -> anyhow::Result<ExitCode> {
    let cost =
        with_runtime(async { Ok(doctor::measure_self(&(&args.attach).into(), seconds).await?) })?;
    if args.json {
        println!("{}", cost.json());
    } else {
        print!("{}", cost.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads and parses a recording for replay.
fn open_recording(path: &std::path::Path) -> anyhow::Result<recording::Recording> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("failed to read recording {:?}", path.display()))?;
    recording::parse(&bytes).with_context(|| format!("cannot replay {:?}", path.display()))
}

/// Creates a new recording file; never overwrites one (a recording may be all that is left of
/// an incident).
fn create_recording(
    path: &std::path::Path,
    clock: &WallClock,
) -> anyhow::Result<RecordWriter<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create recording {:?}", path.display()))?;
    RecordWriter::new(file, clock.offset_ns())
        .with_context(|| format!("failed to write recording {:?}", path.display()))
}

fn exit_code(summary: &TraceSummary) -> ExitCode {
    if summary.lost_events() {
        ExitCode::from(EXIT_LOST_EVENTS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Once attached, keeps only the capabilities in `keep`: a bug later cannot load programs
/// or touch what root may. Failure is logged, not fatal: the capture already works.
fn drop_capabilities(keep: &[u32]) {
    match privilege::keep_only(keep) {
        Ok(now) => log::debug!("capabilities after attach: {now:?}"),
        Err(err) => log::warn!("could not drop capabilities after attach: {err}"),
    }
}

fn with_runtime<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(future)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal that arrives after "tracing" is printed but
/// before the loop starts must still stop us cleanly. If a handler cannot be installed, only
/// the other signal (or SIGKILL) ends us.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => {}
            () = received(terminate.as_mut()) => {}
        }
    }
}

/// Completes when `signal` arrives; never, without a handler.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Where log lines go.
enum LogTarget {
    Stderr,
    File(std::fs::File),
    Nowhere,
}

/// Logs go to stderr as `oomreap: LEVEL: message`: warnings by default; -v adds our info
/// lines, -vv our debug lines and the kernel programs' own, -vvv aya's internals too.
/// `OOMREAP_LOG` (env_logger syntax) overrides all of that. The kernel programs get the
/// most verbose level of all these (`log::max_level`, warnings at least) at load time, and
/// drop the rest.
fn init_logging(verbose: u8, target: LogTarget) {
    use std::io::Write as _;

    use log::LevelFilter::{Debug, Info, Warn};
    let (ours, others) = match verbose {
        0 => (Warn, Warn),
        1 => (Info, Warn),
        2 => (Debug, Warn),
        _ => (Debug, Debug),
    };
    let mut builder = env_logger::Builder::new();
    match target {
        LogTarget::Stderr => {}
        LogTarget::File(file) => {
            builder.target(env_logger::Target::Pipe(Box::new(file)));
        }
        LogTarget::Nowhere => {
            builder.filter_level(log::LevelFilter::Off);
            builder.init();
            return;
        }
    }
    builder
        .filter_level(others)
        .filter_module("oomreap", ours)
        .filter_module("oomreap_ebpf", ours)
        // fuser reports every FUSE operation the stalling filesystem leaves out.
        .filter_module("fuser", log::LevelFilter::Error)
        .parse_env("OOMREAP_LOG")
        .format(|buf, record| {
            let level = record.level().to_string().to_lowercase();
            writeln!(buf, "oomreap: {level}: {}", record.args())
        })
        .init();
}
