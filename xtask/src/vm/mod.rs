//! `cargo xtask vm-test`: oomreap's integration tests inside real Debian kernels under qemu.
//!
//! For each kernel line of [`kernels::LINES`] the newest Debian kernel is fetched into a
//! private cache, booted under TCG (one vCPU: KVM cannot run guests on the machines this
//! runs on) with an initramfs of static busybox, oomreap and its test binaries. The guest's
//! init finds which function attach modes the kernel allows and runs the suites once per
//! mode (`OOMREAP_FUNCTIONS=off|fentry|kprobe`), printing `OOMREAP-VM` lines on the serial
//! console, which this reads, echoes and turns into a kernel × mode × suite table. A run of
//! the whole matrix also writes that table to docs/kernels.md, with the run's date, commit
//! and machine; a run restricted by a flag leaves that file alone.
mod guest;
mod initramfs;
mod kernels;
mod results;

use std::{
    collections::{BTreeSet, VecDeque},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{self, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use guest::Guest;
use initramfs::Archive;
pub use results::Totals;

use crate::{command::cargo, provenance::Provenance};

/// Where a run of the whole matrix writes its results for readers, in the workspace.
const DOC: &str = "docs/kernels.md";

/// The guest's init script.
const INIT: &str = include_str!("init.sh");

/// Function attach modes, as `OOMREAP_FUNCTIONS` takes them; `off` is tracepoints only.
const MODES: [&str; 3] = ["off", "fentry", "kprobe"];

#[derive(Clone, Debug, clap::Args)]
pub struct VmTestArgs {
    /// Kernel lines to boot (default: all, as xtask/src/vm/kernels.rs lists them).
    #[arg(long, value_delimiter = ',', value_parser = kernel_lines())]
    pub kernels: Vec<String>,
    /// Function attach modes to run the suites in, each where the kernel allows it: off
    /// (tracepoints only), fentry, kprobe.
    #[arg(long, value_delimiter = ',', default_value = "off,fentry,kprobe")]
    pub modes: Vec<String>,
    /// Integration test binaries to run in each guest once per function attach mode.
    #[arg(long, value_delimiter = ',', default_value = "scenarios")]
    pub suites: Vec<String>,
    /// Integration test binaries to run once per guest, in the default mode (the best the
    /// kernel allows).
    #[arg(long, value_delimiter = ',', default_value = "privileged,run")]
    pub once_suites: Vec<String>,
    /// Guests booted at once (each is one vCPU: one host core).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Only the tests whose names contain this (docs/kernels.md is then left as it was).
    #[arg(long)]
    pub filter: Option<String>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u32,
    /// Minutes after which a guest is stopped and counted as failed. A soft-RoCE kernel
    /// takes about 20 alone and 25 beside the host's tests (`cargo xtask test --all`).
    #[arg(long, default_value_t = 40)]
    pub timeout_minutes: u64,
    /// After the suites, record the soft-RoCE and lock scenarios (where the kernel runs
    /// them) into `target/vm/captures/KERNEL-NAME.rec`, for docs and goldens.
    #[arg(long)]
    pub capture: bool,
}

/// What `--capture` records: name, function mode, and the inject arguments.
const CAPTURES: &str = "odp-victim-off off odp-victim
odp-victim-fentry fentry odp-victim
odp-mrelease-fentry fentry odp-mrelease
odp-release-after-3-kprobe kprobe odp-victim --release-after 3
lock-contended-off off lock-contended
";

impl VmTestArgs {
    /// The defaults, as `cargo xtask vm-test` alone has them.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: VmTestArgs,
        }
        <Wrapper as clap::Parser>::parse_from(["vm-test"]).args
    }

    /// What keeps this run from being the whole default matrix, named for the user; `None`
    /// for the whole matrix, the only run whose table replaces docs/kernels.md. `--jobs`,
    /// `--memory-mib`, `--timeout-minutes` and `--capture` change no row.
    pub fn restriction(&self) -> Option<&'static str> {
        let whole = Self::defaults();
        let same = |a: &[String], b: &[String]| {
            a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
        };
        let all_lines: Vec<String> = kernels::LINES.iter().map(|l| l.name.to_owned()).collect();
        if !self.kernels.is_empty() && !same(&self.kernels, &all_lines) {
            Some("--kernels")
        } else if !same(&self.modes, &whole.modes) {
            Some("--modes")
        } else if !same(&self.suites, &whole.suites) {
            Some("--suites")
        } else if !same(&self.once_suites, &whole.once_suites) {
            Some("--once-suites")
        } else if self.filter.is_some() {
            Some("a test filter")
        } else {
            None
        }
    }
}

/// `--kernels`' values: the names of [`kernels::LINES`], so the help lists every line there is.
fn kernel_lines() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(kernels::LINES.map(|l| l.name))
}

/// Programs the matrix needs, with the Debian packages that bring them (and each guest
/// architecture its qemu and objcopy: [`Guest`]).
const PACKAGES: [(&str, &str); 3] = [
    ("busybox", "busybox-static"),
    ("dpkg-deb", "dpkg"),
    // Debian's modules are xz-compressed; the guest gets them plain.
    ("xz", "xz-utils"),
];

/// What the guest's soft-RoCE scenarios run: iproute2's `ip` and `rdma`, and libibverbs with
/// its rxe provider (found at run time through `/etc/libibverbs.d`).
const RDMA_PACKAGES: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("rdma", "iproute2"),
    (LIBIBVERBS, "libibverbs1"),
    (VERBS_PROVIDERS, "ibverbs-providers"),
];
const LIBIBVERBS: &str = "/usr/lib/x86_64-linux-gnu/libibverbs.so.1";
const VERBS_PROVIDERS: &str = "/usr/lib/x86_64-linux-gnu/libibverbs";
const RXE_DRIVER: &str = "/etc/libibverbs.d/rxe.driver";

/// Fetches the kernels, builds oomreap and its test binaries and the common initramfs, then
/// boots every kernel.
pub fn vm_test(workspace: &Path, args: &VmTestArgs) -> anyhow::Result<Totals> {
    prepare(workspace, args)?.run()
}

/// Everything the matrix needs before the first boot: made first, so that `cargo xtask test`
/// can boot the guests while the host's own tests run (each is a kernel of its own). Another
/// architecture's test build, and each static binary, wait for the first guest that needs
/// them (see [`Prepared::run`]).
pub struct Prepared {
    args: VmTestArgs,
    workspace: PathBuf,
    cache: kernels::KernelCache,
    kernels: Vec<kernels::Kernel>,
    /// Each guest architecture booted, with what its guests share once it is built.
    arches: Vec<(&'static Guest, Mutex<Option<Arc<ArchFiles>>>)>,
    out: PathBuf,
    /// docs/kernels.md, or `None` when the run is restricted.
    doc: Option<PathBuf>,
    provenance: Provenance,
    /// When the preparation began: docs/kernels.md says how long the whole run took.
    started: Instant,
}

/// Installs what the matrix needs, fetches the kernels and builds what the guests run.
pub fn prepare(workspace: &Path, args: &VmTestArgs) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    // Read before the build: the commit tested is the one built.
    let provenance = Provenance::now(workspace);
    let args = args.clone();
    let doc = match args.restriction() {
        None => Some(workspace.join(DOC)),
        Some(restriction) => {
            eprintln!(
                "xtask vm-test: {restriction} restricts the matrix, so {DOC} will be left as it \
                 was (only a run of the whole matrix replaces it)"
            );
            None
        }
    };
    for mode in &args.modes {
        if !MODES.contains(&mode.as_str()) {
            bail!("unknown attach mode {mode:?}; expected off, fentry or kprobe");
        }
    }
    let lines: Vec<kernels::KernelLine> = if args.kernels.is_empty() {
        kernels::LINES.to_vec()
    } else {
        args.kernels
            .iter()
            .map(|name| {
                kernels::LINES
                    .iter()
                    .find(|l| l.name == name)
                    .copied()
                    .with_context(|| {
                        let known: Vec<&str> = kernels::LINES.iter().map(|l| l.name).collect();
                        format!(
                            "unknown kernel line {name:?}; expected one of {}",
                            known.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    // Each architecture once, in the order of LINES.
    let mut guests: Vec<&'static Guest> = Vec::new();
    for line in &lines {
        if !guests.contains(&line.guest) {
            guests.push(line.guest);
        }
    }
    crate::setup::ensure_debian_packages(&PACKAGES)?;
    for guest in &guests {
        crate::setup::ensure_debian_packages(&[guest.qemu, guest.objcopy])?;
        if guest.is_host() {
            crate::setup::ensure_debian_packages(&RDMA_PACKAGES)?;
        }
    }
    let cache = kernels::KernelCache::new(cache_dir()?);
    let kernels = cache.fetch(&lines)?;

    let out = workspace.join("target/vm");
    std::fs::create_dir_all(&out)?;
    let mut arches = Vec::new();
    for guest in guests {
        // The host's now, so its guests boot at once; another's when its first guest comes.
        let files = match guest.is_host() {
            true => Some(Arc::new(arch_files(workspace, &cache, guest, &args)?)),
            false => None,
        };
        arches.push((guest, Mutex::new(files)));
    }
    Ok(Prepared {
        args,
        workspace: workspace.to_owned(),
        cache,
        kernels,
        arches,
        out,
        doc,
        provenance,
        started,
    })
}

/// What every guest of one architecture shares.
struct ArchFiles {
    /// Its common initramfs.
    common: Vec<u8>,
    /// The packaging test binary, whose test traces a kill with the static binary.
    packaging: PathBuf,
}

/// Builds oomreap and its test binaries for `guest`'s architecture, and the common
/// initramfs its guests share.
fn arch_files(
    workspace: &Path,
    cache: &kernels::KernelCache,
    guest: &Guest,
    args: &VmTestArgs,
) -> anyhow::Result<ArchFiles> {
    let what = match guest.is_host() {
        true => "this machine",
        false => guest.arch.target,
    };
    eprintln!("xtask vm-test: building oomreap and its test binaries for {what}");
    let busybox = match guest.is_host() {
        true => host_busybox()?,
        false => cache.busybox(guest)?,
    };
    let all_suites: Vec<String> = args
        .suites
        .iter()
        .chain(&args.once_suites)
        .chain([&STATIC_SUITE.to_owned()])
        .cloned()
        .collect();
    let (oomreap, mut binaries) = build_tests(workspace, &all_suites, guest)?;
    // The packaging suite runs its static-binary test only (on the oldest kernel of each
    // architecture), not with the others.
    let packaging = binaries
        .iter()
        .position(|b| suite_name(b) == Some(STATIC_SUITE))
        .map(|i| binaries.remove(i))
        .context("no packaging test binary")?;
    let common = common_archive(guest, &busybox, &oomreap, &binaries, args)?;
    Ok(ArchFiles { common, packaging })
}

impl Prepared {
    /// Boots every kernel, `args.jobs` at a time, and reports the results.
    pub fn run(self) -> anyhow::Result<Totals> {
        let Self {
            args,
            workspace,
            cache,
            kernels,
            arches,
            out,
            doc,
            provenance,
            started,
        } = self;
        let args = &args;
        let (workspace, cache, arches) = (workspace.as_path(), &cache, &arches);
        let out = &out;
        // A small pool: each worker boots the next kernel until none is left.
        // Longest first, so the two workers end close together: the soft-RoCE kernels run the
        // ODP scenarios in every mode; then newest first.
        let mut order: Vec<&kernels::Kernel> = kernels.iter().rev().collect();
        order.sort_by_key(|k| !k.has_soft_roce());
        let queue = Mutex::new(order.into_iter().collect::<VecDeque<_>>());
        let runs = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..args.jobs.max(1))
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        loop {
                            // Taken apart from the loop head, so the queue is not locked while
                            // the guest runs.
                            let next = lock(&queue).pop_front();
                            let Some(kernel) = next else { return Ok(()) };
                            let guest = kernel.guest;
                            let files = files_for(arches, guest, workspace, cache, args)?;
                            // The static binary users download must trace on the oldest
                            // kernel of its architecture too (and only there: the others
                            // run the test build). Built by then, most likely, by dist.
                            let oldest = kernels::LINES.iter().find(|l| l.guest == guest);
                            let check = match oldest.is_some_and(|l| l.name == kernel.line) {
                                true => Some(StaticCheck {
                                    binary: crate::dist::build_static(workspace, guest.arch)?,
                                    suite: files.packaging.clone(),
                                }),
                                false => None,
                            };
                            let run =
                                test_kernel(kernel, &files.common, check.as_ref(), out, args)?;
                            lock(&runs).push(run);
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| bail!("a vm-test worker panicked"))
            })
        })?;
        let mut runs = runs.into_inner().unwrap_or_else(PoisonError::into_inner);
        let order = |line: &str| kernels::LINES.iter().position(|l| l.name == line);
        runs.sort_by_key(|r| order(&r.line));
        let report = results::Report { runs };
        let markdown = report.markdown();
        std::fs::write(out.join("results.md"), &markdown)?;
        std::fs::write(out.join("results.json"), report.json().to_string())?;
        println!("{markdown}");
        println!("(also in {})", out.join("results.md").display());
        match doc {
            Some(doc) => {
                let text =
                    report.document(&provenance, started.elapsed(), args.jobs, args.memory_mib);
                std::fs::write(&doc, text)
                    .with_context(|| format!("failed to write {}", doc.display()))?;
                println!("(and in {}, with the run's date and commit)", doc.display());
            }
            None => println!("({DOC} left as it was: only a run of the whole matrix replaces it)"),
        }
        Ok(report.totals())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The test suite that runs the static binary, and its test that does.
const STATIC_SUITE: &str = "packaging";
const STATIC_TEST: &str = "static_binary_traces_a_kill";

/// The static `oomreap` and the packaging test binary that traces a kill with it.
struct StaticCheck {
    binary: PathBuf,
    suite: PathBuf,
}

/// What `guest`'s architecture's guests share, built by the first worker that asks (the
/// others of that architecture wait for it; other architectures' do not).
fn files_for(
    arches: &[(&'static Guest, Mutex<Option<Arc<ArchFiles>>>)],
    guest: &'static Guest,
    workspace: &Path,
    cache: &kernels::KernelCache,
    args: &VmTestArgs,
) -> anyhow::Result<Arc<ArchFiles>> {
    let (_, files) = arches
        .iter()
        .find(|(g, _)| *g == guest)
        .context("a kernel of an architecture not prepared")?;
    let mut files = lock(files);
    if let Some(built) = files.as_ref() {
        return Ok(Arc::clone(built));
    }
    let built = Arc::new(arch_files(workspace, cache, guest, args)?);
    *files = Some(Arc::clone(&built));
    Ok(built)
}

/// The host's busybox, which must be the static one: the host's guests have no libc of
/// theirs.
fn host_busybox() -> anyhow::Result<PathBuf> {
    let busybox = which::which("busybox").context("busybox")?;
    if !Command::new("ldd").arg(&busybox).output().is_ok_and(|o| {
        // glibc's ldd says so on stderr, others on stdout.
        [&o.stdout, &o.stderr]
            .iter()
            .any(|s| String::from_utf8_lossy(s).contains("not a dynamic executable"))
    }) {
        bail!(
            "{} is not statically linked; install busybox-static",
            busybox.display()
        );
    }
    Ok(busybox)
}

/// `packaging` for `.../packaging-0123abcd`: cargo names test binaries `<suite>-<hash>`.
fn suite_name(binary: &Path) -> Option<&str> {
    let name = binary.file_name()?.to_str()?;
    Some(name.rsplit_once('-').map_or(name, |(s, _)| s))
}

/// Boots one kernel with the common initramfs plus its own extras, and reads the results.
fn test_kernel(
    kernel: &kernels::Kernel,
    common: &[u8],
    static_check: Option<&StaticCheck>,
    out: &Path,
    args: &VmTestArgs,
) -> anyhow::Result<results::KernelRun> {
    eprintln!(
        "xtask vm-test: booting {} ({})",
        kernel.line, kernel.package
    );
    let guest = kernel.guest;
    let mut extras = Archive::stripped_by(guest.objcopy.0);
    // This line's modes, of those asked for: init.sh runs MODE_SUITES in each.
    let modes: Vec<&str> = args
        .modes
        .iter()
        .map(String::as_str)
        .filter(|m| kernel.modes.contains(m))
        .collect();
    extras.file("/vm/modes", modes.join(" ").as_bytes(), 0o644);
    if !kernel.left_to_others.is_empty() {
        // init.sh leaves out the once-suites named here.
        let names = kernel.left_to_others.join(" ");
        extras.file("/vm/not-here", names.as_bytes(), 0o644);
    }
    // init.sh loads /vm/modules/* in name order: the numbers keep the dependency order.
    for (i, module) in kernel.modules.iter().enumerate() {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .context("module file name")?;
        let name = name.strip_suffix(".xz").unwrap_or(name);
        extras.file(
            &format!("/vm/modules/{i:02}-{name}"),
            &initramfs::module_bytes(module)?,
            0o644,
        );
    }
    if let Some(check) = static_check {
        // init.sh runs STATIC_TEST from /vm/static/<suite> with OOMREAP_DIST_DIR=/vm/static.
        // Exactly the bytes users get: already stripped.
        // Named as dist names it: the packaging test looks for this machine's architecture.
        let name = crate::dist::binary_name(guest.arch);
        extras.host_file(&check.binary, &format!("/vm/static/{name}"), false)?;
        extras.host_file(&check.suite, &format!("/vm/static/{STATIC_SUITE}"), true)?;
        if guest.is_host() {
            extras.libraries_of(&check.suite)?;
        }
        extras.file("/vm/static/test", STATIC_TEST.as_bytes(), 0o644);
    }
    let initrd = out.join(format!("{}.initrd", kernel.line));
    std::fs::write(&initrd, [common, &extras.finish()].concat())
        .with_context(|| format!("failed to write {}", initrd.display()))?;
    let log = out.join(format!("{}.log", kernel.line));
    let started = Instant::now();
    let console = boot(kernel, &initrd, &log, args)?;
    let _ = std::fs::remove_file(&initrd);
    save_captures(&console, &out.join("captures"), kernel.line)?;
    Ok(results::parse(kernel, &console, started.elapsed()))
}

/// Writes each recording the guest printed (base64 between `capture-begin NAME` and
/// `capture-end NAME`) to `dir/LINE-NAME.rec`.
fn save_captures(console: &str, dir: &Path, line: &str) -> anyhow::Result<()> {
    let begin = format!("{}capture-begin ", results::MARK);
    let mut lines = console.lines();
    while let Some(start) = lines.find(|l| l.starts_with(&begin)) {
        let name = start[begin.len()..].trim().to_owned();
        let end = format!("{}capture-end {name}", results::MARK);
        let encoded: String = lines
            .by_ref()
            .take_while(|l| *l != end)
            .collect::<Vec<_>>()
            .concat();
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{line}-{name}.rec"));
        let mut child = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("failed to run base64")?;
        child
            .stdin
            .take()
            .context("base64's stdin")?
            .write_all(encoded.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("the {name} capture from {line} is not base64");
        }
        std::fs::write(&path, out.stdout)?;
        eprintln!("xtask vm-test: wrote {}", path.display());
    }
    Ok(())
}

/// `$XDG_CACHE_HOME/oomreap/vm`, or `~/.cache/oomreap/vm`: kernels outlive the work tree.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("oomreap/vm"))
}

/// Builds the test binaries (and the oomreap binary they run) for `guest`; returns their
/// paths. Another architecture's are cross-built for its static (musl) target.
fn build_tests(
    workspace: &Path,
    suites: &[String],
    guest: &Guest,
) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let mut cmd = match guest.is_host() {
        true => cargo(),
        false => crate::dist::cargo_for(workspace, guest.arch)?,
    };
    // The host tests' own package selection (`--workspace`, see tasks.rs), narrowed to the
    // suites by `--test`: with `-p oomreap-userspace`, cargo unified features without xtask's
    // and built every dependency, the kernel programs and the test binaries a second time.
    cmd.current_dir(workspace).args([
        "test",
        "--no-run",
        "--message-format=json",
        "--workspace",
        "--exclude",
        "oomreap-ebpf",
    ]);
    if !guest.is_host() {
        cmd.args(["--target", guest.arch.target]);
    }
    for suite in suites {
        cmd.args(["--test", suite]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("failed to run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut oomreap = None;
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        let kinds = &message["target"]["kind"];
        if name == "oomreap"
            && kinds
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        {
            oomreap = Some(PathBuf::from(executable));
        } else if suites.iter().any(|s| s == name)
            // Another workspace member's suite of the same name is not ours.
            && message["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("oomreap-userspace"))
        {
            binaries.push(PathBuf::from(executable));
        }
    }
    let oomreap = oomreap.context("cargo built no oomreap binary")?;
    if binaries.len() != suites.len() {
        bail!("expected test binaries {suites:?}, cargo built {binaries:?}");
    }
    Ok((oomreap, binaries))
}

/// Everything every guest of `guest`'s architecture gets. oomreap sits at its host path: the
/// tests run it from there (`CARGO_BIN_EXE_oomreap`).
fn common_archive(
    guest: &Guest,
    busybox: &Path,
    oomreap: &Path,
    suites: &[PathBuf],
    args: &VmTestArgs,
) -> anyhow::Result<Vec<u8>> {
    let mut archive = Archive::stripped_by(guest.objcopy.0);
    // Mount points and the places init writes to.
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/root", "/run"] {
        archive.dir(dir);
    }
    archive.host_file(busybox, "/bin/busybox", false)?;
    archive.file("/init", INIT.as_bytes(), 0o755);
    archive.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    archive.file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    let oomreap_path = oomreap.to_string_lossy().into_owned();
    archive.host_file(oomreap, &oomreap_path, true)?;
    if guest.is_host() {
        archive.libraries_of(oomreap)?;
    }
    archive.symlink("/usr/bin/oomreap", &oomreap_path);
    let (mut mode_suites, mut once_suites) = (Vec::new(), Vec::new());
    for suite in suites {
        // The guest reports the suite, not cargo's hashed name.
        let short = suite_name(suite).context("test binary name")?;
        let path = format!("/vm/tests/{short}");
        archive.host_file(suite, &path, true)?;
        if guest.is_host() {
            archive.libraries_of(suite)?;
        }
        if args.suites.iter().any(|s| s == short) {
            mode_suites.push(path);
        } else {
            once_suites.push(path);
        }
    }
    if guest.is_host() {
        add_rdma_userspace(&mut archive)?;
    }
    let plan = format!(
        "MODE_SUITES='{}'\nONCE_SUITES='{}'\nMODES='{}'\nFILTER='{}'\n",
        mode_suites.join(" "),
        once_suites.join(" "),
        args.modes.join(" "),
        args.filter.as_deref().unwrap_or_default().replace('\'', "")
    );
    archive.file("/vm/plan", plan.as_bytes(), 0o644);
    if args.capture {
        archive.file("/vm/captures", CAPTURES.as_bytes(), 0o644);
    }
    Ok(archive.finish())
}

/// iproute2's `ip` and `rdma` under /usr/local/sbin (ahead of busybox's `ip` on the guest's
/// PATH), libibverbs, its rxe provider and the provider's driver file, with their libraries.
fn add_rdma_userspace(archive: &mut Archive) -> anyhow::Result<()> {
    for program in ["ip", "rdma"] {
        let host = which::which(program).with_context(|| format!("no {program} on PATH"))?;
        archive.host_file(&host, &format!("/usr/local/sbin/{program}"), false)?;
        archive.libraries_of(&host)?;
    }
    let rxe = std::fs::read_dir(VERBS_PROVIDERS)
        .with_context(|| format!("failed to read {VERBS_PROVIDERS}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("librxe-"))
        })
        .with_context(|| format!("no rxe provider (librxe-*.so) in {VERBS_PROVIDERS}"))?;
    for library in [Path::new(LIBIBVERBS), rxe.as_path()] {
        let guest = library.to_string_lossy().into_owned();
        archive.host_file(library, &guest, false)?;
        archive.libraries_of(library)?;
    }
    archive.host_file(Path::new(RXE_DRIVER), RXE_DRIVER, false)?;
    Ok(())
}

/// Boots `kernel` and returns everything it printed on its console (also written to `log`),
/// echoing the matrix's own lines and test verdicts as they come.
fn boot(
    kernel: &kernels::Kernel,
    initrd: &Path,
    log: &Path,
    args: &VmTestArgs,
) -> anyhow::Result<String> {
    // Niced: when `cargo xtask test` runs the host's tests alongside, those (a terminal that
    // must draw within seconds, the reaper's timers) go first and the guests take the rest.
    let guest = kernel.guest;
    let mut child = Command::new("nice")
        .args(["-n", "10", guest.qemu.0])
        .args(guest.machine)
        .args(["-m", &args.memory_mib.to_string()])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 (in each guest's command line): a guest panic reboots, and -no-reboot
        // turns that into an exit.
        .args(["-append", guest.append])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(["-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("failed to start {}", guest.qemu.0))?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    // The watchdog waits for the console to close, or kills qemu when time is up.
    let (finished, closed) = mpsc::channel::<()>();
    let watchdog = {
        let pid = child.id() as libc::pid_t;
        let timeout = Duration::from_secs(args.timeout_minutes * 60);
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = closed.recv_timeout(timeout) {
                eprintln!("xtask vm-test: guest still running after {timeout:?}; stopping it");
                // SAFETY: signals our own qemu child by pid; it is reaped only after this
                // thread is joined, so the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
    };
    let mut file = std::fs::File::create(log)
        .with_context(|| format!("failed to create {}", log.display()))?;
    let mut console = String::new();
    // Lines of a panic's message still to echo: CI keeps only the echoed lines, and a failed
    // assertion says nothing without its message.
    let mut message_left: usize = 0;
    for line in BufReader::new(stdout).split(b'\n') {
        let line = String::from_utf8_lossy(&line?)
            .trim_end_matches('\r')
            .to_owned();
        writeln!(file, "{line}")?;
        if message_left > 0 && results::ends_panic_message(&line) {
            message_left = 0;
        }
        if results::worth_echoing(&line) || message_left > 0 {
            eprintln!("  [{}] {line}", kernel.line);
            message_left = message_left.saturating_sub(1);
        }
        if line.contains("panicked at") {
            message_left = results::PANIC_MESSAGE_LINES;
        }
        console.push_str(&line);
        console.push('\n');
    }
    drop(finished);
    let _ = watchdog.join();
    let status = child.wait()?;
    if !status.success() {
        eprintln!("xtask vm-test: qemu exited with {status}");
    }
    Ok(console)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> VmTestArgs {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: VmTestArgs,
        }
        <Wrapper as clap::Parser>::try_parse_from(
            std::iter::once("vm-test").chain(flags.iter().copied()),
        )
        .unwrap()
        .args
    }

    #[test]
    fn only_the_whole_matrix_replaces_the_doc() {
        assert_eq!(VmTestArgs::defaults().restriction(), None);
        let every_line: Vec<&str> = kernels::LINES.iter().rev().map(|l| l.name).collect();
        let every_line = format!("--kernels={}", every_line.join(","));
        for whole in [
            &[every_line.as_str()][..],
            &["--modes", "kprobe,off,fentry"],
            &["--jobs", "1", "--capture", "--memory-mib", "2048"],
        ] {
            assert_eq!(args(whole).restriction(), None, "{whole:?}");
        }
        for (restricted, by) in [
            (&["--kernels", "6.1"][..], "--kernels"),
            (&["--modes", "off"], "--modes"),
            (&["--suites", "privileged"], "--suites"),
            (&["--once-suites", "privileged"], "--once-suites"),
            (&["--filter", "storm"], "a test filter"),
        ] {
            assert_eq!(args(restricted).restriction(), Some(by), "{restricted:?}");
        }
    }

    #[test]
    fn the_help_lists_every_kernel_line() {
        assert_eq!(
            args(&["--kernels", "5.10,7.x-rt"]).kernels,
            ["5.10", "7.x-rt"]
        );
        let help = <VmTestArgs as clap::Args>::augment_args(clap::Command::new("vm-test"))
            .render_help()
            .to_string();
        let names: Vec<&str> = kernels::LINES.iter().map(|l| l.name).collect();
        let listed = format!("[possible values: {}]", names.join(", "));
        assert!(help.contains(&listed), "no {listed:?} in\n{help}");
    }
}
