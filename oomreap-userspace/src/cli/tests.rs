use super::*;

fn trace(args: &[&str]) -> Result<TraceArgs, clap::Error> {
    let cli = Cli::try_parse_from(["oomreap", "trace"].iter().chain(args))?;
    match cli.command {
        Command::Trace(t) => Ok(t),
        other => panic!("expected trace, got {other:?}"),
    }
}

#[test]
fn trace_defaults() {
    let args = trace(&[]).unwrap();
    assert!(!args.json && args.record.is_none() && args.replay.is_none());
    let options = CaptureOptions::from(&args.attach);
    assert_eq!(options.attach, AttachPreference::Auto);
    assert_eq!(options.paths.btf, PathBuf::from(DEFAULT_BTF_PATH));
    assert_eq!(options.events_bytes, 256 * 1024);
}

#[test]
fn attach_spellings() {
    assert_eq!(
        trace(&["--attach", "classic"]).unwrap().attach.attach,
        AttachArg::Classic
    );
    assert_eq!(
        trace(&["--attach=btf"]).unwrap().attach.attach,
        AttachArg::Btf
    );
    let err = trace(&["--attach", "kprobe"]).unwrap_err().to_string();
    assert!(err.contains("kprobe"), "{err}");
}

#[test]
fn btf_path() {
    let args = trace(&["--btf", "/tmp/vmlinux"]).unwrap();
    assert_eq!(
        CaptureOptions::from(&args.attach).paths.btf,
        PathBuf::from("/tmp/vmlinux")
    );
}

#[test]
fn ring_buffer_size_is_validated() {
    assert_eq!(
        trace(&["--ring-buffer-kib=4"])
            .unwrap()
            .attach
            .ring_buffer_kib,
        4
    );
    for bad in ["3", "100", "0", "lots"] {
        let err = trace(&["--ring-buffer-kib", bad]).unwrap_err().to_string();
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

#[test]
fn json_record_and_replay() {
    let args = trace(&["--json", "--record", "/tmp/r.oomreap"]).unwrap();
    assert!(args.json);
    assert_eq!(args.record, Some(PathBuf::from("/tmp/r.oomreap")));
    let args = trace(&["--replay=/tmp/r.oomreap"]).unwrap();
    assert_eq!(args.replay, Some(PathBuf::from("/tmp/r.oomreap")));
    let err = trace(&["--record", "a", "--replay", "b"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--replay") && err.contains("--record"),
        "{err}"
    );
}

#[test]
fn record_needs_a_file() {
    assert!(Cli::try_parse_from(["oomreap", "record"]).is_err());
    let cli =
        Cli::try_parse_from(["oomreap", "record", "out.oomreap", "--attach", "classic"]).unwrap();
    let Command::Record(args) = cli.command else {
        panic!("expected record")
    };
    assert_eq!(args.file, PathBuf::from("out.oomreap"));
    assert_eq!(args.attach.attach, AttachArg::Classic);
}

#[test]
fn inject_flags() {
    let cli = Cli::try_parse_from([
        "oomreap",
        "inject",
        "lock-contended",
        "--release-after",
        "3",
        "--limit=64",
    ])
    .unwrap();
    let Command::Inject(args) = cli.command else {
        panic!("expected inject")
    };
    assert_eq!(args.scenario, Some(Scenario::LockContended));
    let options = InjectOptions::from(&args);
    assert_eq!((options.limit_mib, options.release_after), (64, Some(3)));
    assert!(Cli::try_parse_from(["oomreap", "inject", "--list"]).is_ok());
    assert!(
        Cli::try_parse_from(["oomreap", "inject"]).is_err(),
        "a scenario or --list is required"
    );
    for bad in [
        ["--release-after", "10"],
        ["--release-after", "0"],
        ["--limit", "1"],
        ["--count", "0"],
    ] {
        let args = ["oomreap", "inject", "storm", bad[0], bad[1]];
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
    }
    let err = Cli::try_parse_from(["oomreap", "inject", "meltdown"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("meltdown") && err.contains("quick-exit"),
        "{err}"
    );
}

#[test]
fn top_replay_and_speed() {
    let cli =
        Cli::try_parse_from(["oomreap", "top", "--replay", "r.oomreap", "--speed=10"]).unwrap();
    let Command::Top(args) = cli.command else {
        panic!("expected top")
    };
    assert_eq!(
        (args.replay, args.speed),
        (Some(PathBuf::from("r.oomreap")), 10.0)
    );
    assert!(
        Cli::try_parse_from(["oomreap", "top", "--speed", "2"]).is_err(),
        "speed needs --replay"
    );
    let err = Cli::try_parse_from(["oomreap", "top", "--replay", "r", "--speed", "-1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("-1"), "{err}");
}

#[test]
fn serve_listens_on_loopback_unless_told() {
    let serve = |args: &[&str]| -> ServeArgs {
        let cli = Cli::try_parse_from(["oomreap", "serve"].iter().chain(args)).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        args
    };
    let options = serve(&[]).options().unwrap();
    assert_eq!(options.listen.to_string(), "127.0.0.1:9717");
    assert_eq!(options.max_cgroups, 50);
    let err = serve(&["--listen", "0.0.0.0:9717"]).options().unwrap_err();
    assert!(
        err.contains("0.0.0.0:9717") && err.contains("--allow-remote"),
        "{err}"
    );
    assert!(
        serve(&["--listen", "0.0.0.0:9717", "--allow-remote"])
            .options()
            .is_ok()
    );
    assert!(serve(&["--listen=[::1]:9000"]).options().is_ok());
    assert!(Cli::try_parse_from(["oomreap", "serve", "--listen", "localhost"]).is_err());
}

#[test]
fn run_flags() {
    let cli = Cli::try_parse_from([
        "oomreap",
        "run",
        "--expect-reaped",
        "--fail-on",
        "gave-up",
        "--fail-on=partial",
        "--max-reap-ms",
        "5000",
        "--json",
        "r.json",
        "--",
        "sh",
        "-c",
        "exit 3",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    assert_eq!(args.command, ["sh", "-c", "exit 3"]);
    use oomreap::session::{Expectation, FailOn};
    assert_eq!(
        args.expectations(),
        [
            Expectation::Reaped,
            Expectation::MaxReapMs(5000),
            Expectation::FailOn(FailOn::GaveUp),
            Expectation::FailOn(FailOn::Partial)
        ]
    );
    assert!(
        Cli::try_parse_from(["oomreap", "run"]).is_err(),
        "a command is required"
    );
    assert!(
        Cli::try_parse_from([
            "oomreap",
            "run",
            "--cgroup",
            "a",
            "--descendants",
            "--",
            "x"
        ])
        .is_err()
    );
    let err = Cli::try_parse_from(["oomreap", "run", "--fail-on", "oops", "--", "x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("oops") && err.contains("gave-up"), "{err}");
}

#[test]
fn doctor_json() {
    let cli = Cli::try_parse_from(["oomreap", "doctor", "--json"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Doctor(DoctorArgs { json: true, .. })
    ));
}

#[test]
fn verbose_counts_and_is_global() {
    let cli = Cli::try_parse_from(["oomreap", "trace", "-vv"]).unwrap();
    assert_eq!(cli.verbose, 2);
}

#[test]
fn a_subcommand_is_required() {
    assert!(Cli::try_parse_from(["oomreap"]).is_err());
}
