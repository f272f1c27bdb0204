//! Where and how oomreap logs.
/// Where log lines go.
pub(crate) enum LogTarget {
    Stderr,
    File(std::fs::File),
    Nowhere,
}

/// Logs go to stderr as `oomreap: LEVEL: message`: warnings by default; -v adds our info
/// lines, -vv our debug lines and the kernel programs' own, -vvv aya's internals too.
/// `OOMREAP_LOG` (env_logger syntax) overrides all of that. The kernel programs get the
/// most verbose level of all these (`log::max_level`, warnings at least) at load time, and
/// drop the rest.
pub(crate) fn init_logging(verbose: u8, target: LogTarget) {
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
