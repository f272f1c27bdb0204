//! What users install, tested as they install it: the static binary, the .deb (dpkg, man,
//! systemd-analyze) and the container image (podman, run exactly as the DaemonSet manifest
//! says, scraped by a real Prometheus). `cargo xtask test` builds them first with
//! `cargo xtask dist` and names the folder in OOMREAP_DIST_DIR; without it these tests say
//! they were skipped.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    CgroupVictim, OwnChild, TempDir, TracefsMount, assert_gone, bpf_objects_of, privileged, skip,
    start_command,
};
use serde_json::Value;

/// The folder `cargo xtask dist` filled, or `None` after saying why the test is skipped.
fn dist(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("OOMREAP_DIST_DIR").map(PathBuf::from);
    if dir.is_none() {
        skip(
            test,
            "OOMREAP_DIST_DIR is not set; `cargo xtask test` builds the packages and sets it",
        );
    }
    dir
}

/// The one file in `dist` whose name ends with `suffix`.
fn dist_file(dist: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dist)
        .expect("list dist")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dist.display()))
}

/// This machine's architecture as Debian and OCI name it: the suffix of the dist files
/// that run here.
const HOST_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "amd64"
};

/// The other architecture the dist builds for, run here under qemu-user.
const FOREIGN_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "amd64"
} else {
    "arm64"
};

/// qemu-user for [`FOREIGN_ARCH`], or `None` after saying why the test is skipped.
fn foreign_runner(test: &str) -> Option<&'static str> {
    let runner = if FOREIGN_ARCH == "arm64" {
        "qemu-aarch64-static"
    } else {
        "qemu-x86_64-static"
    };
    let found = Command::new(runner).arg("--version").output().is_ok();
    if !found {
        skip(
            test,
            &format!("{runner} is not installed (`cargo xtask test` installs qemu-user-static)"),
        );
    }
    found.then_some(runner)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).trim().to_owned()
}

/// The revision `oomreap --version` must name: this checkout's HEAD.
fn head_revision() -> String {
    stdout(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    )
}

#[test]
fn static_binary_has_no_loader_and_names_its_revision() {
    let Some(dist) = dist("static_binary_has_no_loader_and_names_its_revision") else {
        return;
    };
    let binary = dist.join(format!("oomreap-{HOST_ARCH}"));
    let headers = stdout(Command::new("readelf").args(["-lW"]).arg(&binary));
    assert!(headers.contains("EXEC (Executable file)"), "{headers}");
    for forbidden in ["INTERP", "DYNAMIC"] {
        assert!(
            !headers
                .lines()
                .any(|l| l.trim_start().starts_with(forbidden)),
            "{forbidden} in {headers}"
        );
    }
    check_version(&stdout(Command::new(&binary).arg("--version")));
}

/// `oomreap --version`'s line names this version, HEAD's revision and a build date.
fn check_version(version: &str) {
    let prefix = format!(
        "oomreap {} (revision {}, built ",
        env!("CARGO_PKG_VERSION"),
        head_revision()
    );
    let date = version
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version:?} is not {prefix:?}DATE)"));
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "build date {date:?}"
    );
}

/// What only test builds may contain: the fault switches' variable and their messages, and
/// the test-support module's source paths (in panic locations).
const TEST_SEAM_MARKERS: [&str; 4] = [
    "OOMREAP_FAULTS",
    "asked for a panic once",
    "refused by",
    "src/testing/",
];

/// Where `haystack` holds `needle`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn what_users_install_carries_no_test_seam() {
    const TEST: &str = "what_users_install_carries_no_test_seam";
    let Some(dist) = dist(TEST) else {
        return;
    };
    // The .deb's binary, unpacked (its data is compressed); the image's layer is an
    // uncompressed tar, so the binary's bytes stand in the archive as they are.
    let mut shipped = Vec::new();
    let unpacked = TempDir::new();
    for arch in [HOST_ARCH, FOREIGN_ARCH] {
        let into = unpacked.0.join(arch);
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(dist_file(&dist, &format!("_{arch}.deb")))
            .arg(&into));
        shipped.extend([
            dist.join(format!("oomreap-{arch}")),
            into.join("usr/bin/oomreap"),
            dist_file(&dist, &format!("-{arch}.oci.tar")),
        ]);
    }
    for path in &shipped {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // The search must find what is there: the kernel object's program names.
        assert!(
            contains(&bytes, "mark_victim_btf"),
            "{} holds no oomreap",
            path.display()
        );
        for marker in TEST_SEAM_MARKERS {
            assert!(
                !contains(&bytes, marker),
                "{} contains {marker:?}",
                path.display()
            );
        }
    }
}

/// Also run by `cargo xtask vm-test` inside the oldest kernel of each architecture.
#[test]
fn static_binary_traces_a_kill() {
    let Some(dist) = dist("static_binary_traces_a_kill") else {
        return;
    };
    let Some(_lock) = privileged("static_binary_traces_a_kill") else {
        return;
    };
    let _tracefs = TracefsMount::ensure();
    let (mut trace, stdout, _stderr) = start_command(
        Command::new(dist.join(format!("oomreap-{HOST_ARCH}"))).args(["trace", "--json"]),
    );
    let mut victim = CgroupVictim::start(32, 256);
    victim.expect_oom_kill();
    let pid = u64::from(victim.child.pid());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut steps = Vec::new();
    while !steps.iter().any(|s: &Value| s["step"] == "outcome") {
        let line = stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no outcome for victim {pid}: {steps:?}"));
        let step: Value = serde_json::from_str(&line).expect("JSON line");
        if step["victim"]["pid"] == pid {
            steps.push(step);
        }
    }
    assert_eq!(steps[0]["step"], "kill", "{steps:?}");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(trace.pid() as i32, libc::SIGINT) };
    let status = trace
        .wait_timeout(Duration::from_secs(10))
        .expect("trace stops");
    assert_eq!(status.code(), Some(0));
}

/// The .deb's files, as dpkg lists them once installed.
fn package_files() -> Vec<PathBuf> {
    stdout(Command::new("dpkg").args(["-L", "oomreap"]))
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

fn is_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "oomreap"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// Purges the package on drop, so a failed assertion leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "oomreap"]).output();
    }
}

#[test]
fn deb_installs_a_working_oomreap_and_purges_without_a_trace() {
    const TEST: &str = "deb_installs_a_working_oomreap_and_purges_without_a_trace";
    let Some(dist) = dist(TEST) else {
        return;
    };
    let Some(_lock) = privileged(TEST) else {
        return;
    };
    if is_installed() {
        skip(
            TEST,
            "an oomreap package is already installed here; it is not ours to remove",
        );
        return;
    }
    let deb = dist_file(&dist, &format!("_{HOST_ARCH}.deb"));
    let guard = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));

    let version = stdout(Command::new("/usr/bin/oomreap").arg("--version"));
    assert!(version.contains(&head_revision()), "{version}");
    for page in ["oomreap", "oomreap-top", "oomreap-serve", "oomreap-run"] {
        let path = stdout(Command::new("man").args(["-w", page]));
        assert!(
            path.ends_with(&format!("man1/{page}.1.gz")),
            "{page}: {path}"
        );
    }
    for (file, needle) in [
        (
            "/usr/share/bash-completion/completions/oomreap",
            "_oomreap()",
        ),
        (
            "/usr/share/zsh/vendor-completions/_oomreap",
            "#compdef oomreap",
        ),
        (
            "/usr/share/fish/vendor_completions.d/oomreap.fish",
            "complete -c oomreap",
        ),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(needle), "{file} lacks {needle:?}");
        assert!(text.contains("serve"), "{file} completes no subcommand");
    }
    let unit = "/usr/lib/systemd/system/oomreap.service";
    let verify = Command::new("systemd-analyze")
        .args(["verify", unit])
        .output()
        .expect("systemd-analyze");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !complaints.contains("oomreap"),
        "systemd-analyze verify: {complaints}"
    );
    let enabled = Command::new("systemctl")
        .args(["is-enabled", "oomreap.service"])
        .output()
        .expect("systemctl");
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout).trim(),
        "disabled",
        "installing must not enable the service"
    );
    serve_within_the_units_capabilities(Path::new(unit));

    let files = package_files();
    assert!(
        files.iter().any(|f| f == Path::new("/etc/default/oomreap")),
        "{files:?}"
    );
    drop(guard);
    assert!(!is_installed());
    let left: Vec<_> = files.iter().filter(|f| f.exists()).collect();
    assert!(left.is_empty(), "dpkg --purge left {left:?}");
}

/// Runs the installed `oomreap serve` with the unit's capability bounding set and
/// NoNewPrivileges (setpriv from util-linux does what systemd would): it must attach and
/// serve. With one capability fewer (CAP_BPF) it must not.
fn serve_within_the_units_capabilities(unit: &Path) {
    let text = std::fs::read_to_string(unit).expect("read the unit");
    let setting = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .trim()
            .to_owned()
    };
    assert_eq!(setting("NoNewPrivileges"), "yes");
    let caps: Vec<String> = setting("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect();
    let serve = |caps: &[String]| {
        let bounding = format!(
            "-all,{}",
            caps.iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--bounding-set",
            &bounding,
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ])
        .args(["/usr/bin/oomreap", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = OwnChild(cmd.spawn().expect("setpriv"));
        let lines = common::lines_of(child.0.stderr.take().expect("stderr"));
        let mut said = Vec::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
            if line.starts_with("oomreap: serving http://") {
                return (true, said);
            }
            said.push(line);
        }
        (false, said)
    };
    let (served, said) = serve(&caps);
    assert!(served, "serve within {caps:?} did not serve: {said:?}");
    let fewer: Vec<String> = caps.iter().filter(|c| *c != "bpf").cloned().collect();
    let (served, said) = serve(&fewer);
    assert!(!served, "serve without CAP_BPF served: {said:?}");
}

/// A network namespace of our own, deleted on drop: the container's network and
/// Prometheus's, so nothing listens on the host's interfaces.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("oomreap-test-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self(name);
        run(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    /// Runs `f` on a thread that has joined this namespace (network namespaces are per thread).
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        use std::os::fd::AsRawFd as _;
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the netns");
            // SAFETY: a valid namespace fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// podman with this machine's two needs: runc (crun refuses hybrid cgroups) and explicit
/// ulimits (the defaults exceed the VM's hard limits).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    if Command::new("runc").arg("--version").output().is_ok() {
        cmd.args(["--runtime", "runc"]);
    }
    cmd
}

fn podman_ulimits() -> Vec<String> {
    let limit = |resource| {
        let mut rlimit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit.
        unsafe { libc::getrlimit(resource, &mut rlimit) };
        // Well below the hard limit: runc cannot set one as high as it once it has dropped
        // CAP_SYS_RESOURCE. oomreap needs about a hundred fds.
        rlimit.rlim_max.min(4096)
    };
    vec![
        "--ulimit".into(),
        format!("nofile={0}:{0}", limit(libc::RLIMIT_NOFILE)),
        "--ulimit".into(),
        format!("nproc={0}:{0}", limit(libc::RLIMIT_NPROC)),
    ]
}

/// The loaded image, removed on drop.
struct Image(String);

impl Image {
    fn load(archive: &Path) -> Self {
        let said = stdout(podman().args(["load", "-q", "-i"]).arg(archive));
        let name = said
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| panic!("podman load said {said:?}"))
            .trim()
            .to_owned();
        Self(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "-f", &self.0]).output();
    }
}

/// A container we started, removed (by name) on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "5", &self.0]).output();
    }
}

/// The cgroups podman makes for its containers (`libpod_parent` in every hierarchy, with
/// `conmon` below it) when they were not there before: removed, innermost first, on drop,
/// once empty. They are left as found if they already existed.
struct PodmanCgroups(Vec<PathBuf>);

impl PodmanCgroups {
    fn track() -> Self {
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("libpod_parent"));
        // A cgroup v2 root is a hierarchy itself.
        let mut new: Vec<PathBuf> = hierarchies
            .chain([PathBuf::from("/sys/fs/cgroup/libpod_parent")])
            .filter(|p| !p.exists())
            .collect();
        new.sort();
        new.dedup();
        Self(new)
    }
}

impl Drop for PodmanCgroups {
    fn drop(&mut self) {
        for parent in &self.0 {
            let children = std::fs::read_dir(parent)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path());
            for dir in children.chain([parent.clone()]) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// The dist folder and the privileged tests' lock for a test that runs podman, or `None`
/// after saying why it is skipped.
fn podman_test(test: &str) -> Option<(PathBuf, std::sync::MutexGuard<'static, ()>)> {
    let dist = dist(test)?;
    let lock = privileged(test)?;
    have_podman(test).then_some((dist, lock))
}

fn have_podman(test: &str) -> bool {
    let found = Command::new("podman").arg("--version").output().is_ok();
    if !found {
        skip(
            test,
            "podman is not installed (`cargo xtask test` installs it)",
        );
    }
    found
}

#[test]
fn image_runs_as_the_daemonset_says_and_prometheus_scrapes_a_victim_through_it() {
    const TEST: &str =
        "image_runs_as_the_daemonset_says_and_prometheus_scrapes_a_victim_through_it";
    let Some(dist) = dist(TEST) else {
        return;
    };
    let Some(_lock) = privileged(TEST) else {
        return;
    };
    if !have_podman(TEST) || !common::have("prometheus", TEST) {
        return;
    }
    let _tracefs = TracefsMount::ensure();
    let _podman_cgroups = PodmanCgroups::track();
    let spec = common::daemonset::DaemonSet::read();
    let archive = dist_file(&dist, &format!("-{HOST_ARCH}.oci.tar"));
    let image = Image::load(&archive);
    let netns = Netns::new();
    let container = Container(format!("oomreap-test-{}", std::process::id()));
    let stand_in = TempDir::new();
    let mut cmd = podman();
    cmd.args(["run", "-d", "--name", &container.0])
        .arg(format!("--network=ns:{}", netns.path()))
        .args(podman_ulimits())
        .args(spec.podman_flags(&stand_in.0))
        .arg(&image.0)
        .args(&spec.args);
    let id = stdout(&mut cmd);
    assert!(!id.is_empty());

    // The container's main process, by its host pid (hostPID: the pid namespace is the host's).
    let pid: u32 = stdout(podman().args(["inspect", "-f", "{{.State.Pid}}", &container.0]))
        .parse()
        .expect("container pid");
    let port = spec.metrics_port;
    let readiness = spec.readiness_path.clone();
    let ready = netns.enter(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let addr = format!("127.0.0.1:{port}").parse().expect("address");
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return common::http_get(addr, &readiness, None).0;
            }
            // hostPID: the container's process is ours to see; gone means it gave up.
            if Instant::now() > deadline || !Path::new(&format!("/proc/{pid}")).exists() {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let logs = || {
        stdout(
            podman()
                .args(["logs", &container.0])
                .stderr(Stdio::inherit()),
        )
    };
    assert_eq!(ready, 200, "the readiness endpoint; logs: {}", logs());
    let ours = bpf_objects_of(pid);
    assert!(
        ours.iter().any(|(k, _)| *k == "prog"),
        "no BPF program held by {pid}: {}",
        logs()
    );

    // A real Prometheus in the same namespace scrapes the container while a victim dies.
    let dir = TempDir::new();
    let prometheus = common::Prometheus::start_in(
        &dir.0,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oomreap\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
        Some(&netns.0),
    );
    let prometheus_api = prometheus.api;
    let report = common::inject(&["stuck-victim"]);
    let victim_pid = report["victims"][0]["pid"].as_u64().expect("victim pid");
    let cgroup = report["cgroup"]["path"]
        .as_str()
        .expect("cgroup path")
        .to_owned();
    let cgroup = cgroup
        .rsplit_once('/')
        .map_or(cgroup.clone(), |(_, n)| n.to_owned());
    // Every outcome's series exists from the kill on, at 0: the victim's is the one above.
    let query = format!("oomreap_cgroup_victims_total%7Bcgroup%3D%22%2F{cgroup}%22%7D%20%3E%200");
    let seen = netns.enter(move || {
        let api = prometheus_api;
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let body = std::net::TcpStream::connect_timeout(&api, Duration::from_secs(1))
                .ok()
                .map(|_| common::http_get(api, &format!("/api/v1/query?query={query}"), None).1);
            let result: Value = body
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            if result["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                || Instant::now() > deadline
            {
                return result;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let series = &seen["data"]["result"][0];
    assert_eq!(
        series["metric"]["outcome"],
        "reaped",
        "Prometheus's view of victim {victim_pid} in {cgroup}: {seen}; logs: {}",
        logs()
    );
    assert_eq!(series["value"][1], "1", "{seen}");

    // Stopping the container releases every BPF object it held.
    run(podman().args(["stop", "-t", "10", &container.0]));
    assert_gone("podman stop", |loaded| {
        loaded.intersection(&ours).copied().collect()
    });
}

#[test]
fn the_containerfile_builds_the_image_dist_wrote() {
    const TEST: &str = "the_containerfile_builds_the_image_dist_wrote";
    let Some((dist, _lock)) = podman_test(TEST) else {
        return;
    };
    let _podman_cgroups = PodmanCgroups::track();
    let archive = dist_file(&dist, &format!("-{HOST_ARCH}.oci.tar"));
    let offline = Image::load(&archive);
    let containerfile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/container/Containerfile");
    let built = Image(format!(
        "localhost/oomreap-containerfile-test:{}",
        std::process::id()
    ));
    let revision = head_revision();
    run(podman()
        .args(["build", "-q", "--pull=never", "--layers=false", "-f"])
        .arg(&containerfile)
        .args([
            "--build-arg",
            &format!("VERSION={}", env!("CARGO_PKG_VERSION")),
        ])
        .args(["--build-arg", &format!("REVISION={revision}")])
        .args(["-t", &built.0])
        .arg(&dist));
    let config = |image: &str| -> Value {
        let json = stdout(podman().args(["image", "inspect", image]));
        let inspected: Value = serde_json::from_str(&json).expect("inspect JSON");
        let config = &inspected[0]["Config"];
        serde_json::json!({
            "Entrypoint": config["Entrypoint"],
            "Cmd": config["Cmd"],
            "ExposedPorts": config["ExposedPorts"],
            "Labels": config["Labels"],
        })
    };
    // buildah adds a label naming itself; everything else must match.
    let mut from_containerfile = config(&built.0);
    if let Some(labels) = from_containerfile["Labels"].as_object_mut() {
        labels.remove("io.buildah.version");
    }
    assert_eq!(config(&offline.0), from_containerfile);
    let version = |image: &str| {
        stdout(
            podman()
                .args(["run", "--rm", "--network=none"])
                .args(podman_ulimits())
                .args([image, "--version"]),
        )
    };
    assert_eq!(version(&offline.0), version(&built.0));
    assert!(version(&offline.0).contains(&revision));
}

#[test]
fn the_other_architectures_binary_runs_under_qemu_user() {
    const TEST: &str = "the_other_architectures_binary_runs_under_qemu_user";
    let Some(dist) = dist(TEST) else {
        return;
    };
    let Some(runner) = foreign_runner(TEST) else {
        return;
    };
    let binary = dist.join(format!("oomreap-{FOREIGN_ARCH}"));
    let machine = if FOREIGN_ARCH == "arm64" {
        "AArch64"
    } else {
        "Advanced Micro Devices X86-64"
    };
    let header = stdout(Command::new("readelf").args(["-hW"]).arg(&binary));
    assert!(header.contains(machine), "{header}");
    let program_headers = stdout(Command::new("readelf").args(["-lW"]).arg(&binary));
    assert!(
        !program_headers
            .lines()
            .any(|l| l.trim_start().starts_with("INTERP")),
        "{program_headers}"
    );
    check_version(&stdout(Command::new(runner).arg(&binary).arg("--version")));
    // qemu-user passes no bpf(2) through, so the hooks cannot load: doctor says so, in JSON.
    let doctor = Command::new(runner)
        .arg(&binary)
        .args(["doctor", "--json"])
        .output()
        .expect("run doctor under qemu-user");
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&doctor.stdout),
            String::from_utf8_lossy(&doctor.stderr)
        )
    });
    assert!(
        report["hooks"].as_array().is_some_and(|h| !h.is_empty()),
        "{report}"
    );
    assert!(report["kernel"].is_string(), "{report}");
}

#[test]
fn the_other_architectures_deb_names_it_and_holds_its_binary() {
    const TEST: &str = "the_other_architectures_deb_names_it_and_holds_its_binary";
    let Some(dist) = dist(TEST) else {
        return;
    };
    let foreign = dist_file(&dist, &format!("_{FOREIGN_ARCH}.deb"));
    let host = dist_file(&dist, &format!("_{HOST_ARCH}.deb"));
    let field =
        |deb: &Path, name: &str| stdout(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(name));
    assert_eq!(field(&foreign, "Architecture"), FOREIGN_ARCH);
    assert_eq!(field(&host, "Architecture"), HOST_ARCH);
    // The same files, by name.
    let listing = |deb: &Path| -> Vec<String> {
        stdout(Command::new("dpkg-deb").arg("-c").arg(deb))
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect()
    };
    assert_eq!(listing(&foreign), listing(&host));
    let unpacked = TempDir::new();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&foreign)
        .arg(&unpacked.0));
    let inside = std::fs::read(unpacked.0.join("usr/bin/oomreap")).expect("the packaged binary");
    let built = std::fs::read(dist.join(format!("oomreap-{FOREIGN_ARCH}"))).expect("the binary");
    assert!(
        inside == built,
        "the {FOREIGN_ARCH} .deb holds another binary than oomreap-{FOREIGN_ARCH}"
    );
}

#[test]
fn the_other_architectures_image_loads_with_its_platform_and_entrypoint() {
    const TEST: &str = "the_other_architectures_image_loads_with_its_platform_and_entrypoint";
    let Some((dist, _lock)) = podman_test(TEST) else {
        return;
    };
    let image = Image::load(&dist_file(&dist, &format!("-{FOREIGN_ARCH}.oci.tar")));
    assert!(
        image.0.ends_with(&format!("-{FOREIGN_ARCH}")),
        "{}",
        image.0
    );
    let json = stdout(podman().args(["image", "inspect", &image.0]));
    let inspected: Value = serde_json::from_str(&json).expect("inspect JSON");
    assert_eq!(inspected[0]["Architecture"], FOREIGN_ARCH, "{json}");
    assert_eq!(inspected[0]["Os"], "linux");
    assert_eq!(
        inspected[0]["Config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/oomreap"])
    );
    assert_eq!(inspected[0]["Config"]["Cmd"], serde_json::json!(["serve"]));
}

/// A manifest list we created, removed (by name) on drop.
struct Manifest(String);

impl Drop for Manifest {
    fn drop(&mut self) {
        let _ = podman().args(["manifest", "rm", &self.0]).output();
    }
}

#[test]
fn both_images_join_into_one_multi_architecture_manifest() {
    // deploy/README.md's steps, but the push: `podman manifest create`, then `add` of each
    // architecture's archive.
    const TEST: &str = "both_images_join_into_one_multi_architecture_manifest";
    let Some((dist, _lock)) = podman_test(TEST) else {
        return;
    };
    let manifest = Manifest(format!(
        "localhost/oomreap-manifest-test:{}",
        std::process::id()
    ));
    run(podman().args(["manifest", "create", &manifest.0]));
    for arch in [HOST_ARCH, FOREIGN_ARCH] {
        let archive = dist_file(&dist, &format!("-{arch}.oci.tar"));
        run(podman()
            .args(["manifest", "add", &manifest.0])
            .arg(format!("oci-archive:{}", archive.display())));
    }
    let json = stdout(podman().args(["manifest", "inspect", &manifest.0]));
    let inspected: Value = serde_json::from_str(&json).expect("manifest JSON");
    let mut platforms: Vec<(String, String)> = inspected["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let text = |key: &str| m["platform"][key].as_str().unwrap_or_default().to_owned();
            (text("os"), text("architecture"))
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        [
            ("linux".to_owned(), "amd64".to_owned()),
            ("linux".to_owned(), "arm64".to_owned())
        ]
    );
}
