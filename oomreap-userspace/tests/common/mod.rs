//! Helpers for the privileged integration tests: serialisation, skipping, victims in
//! throwaway memory cgroups, and a tracefs mount when one is needed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod daemonset;

use std::{
    collections::BTreeSet,
    ffi::CString,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use oomreap::inject::cgroup::MemoryCgroup;
use serde_json::Value;

/// Privileged tests share one kernel and one oom_reaper thread: they run one at a time.
static PRIVILEGED: Mutex<()> = Mutex::new(());

/// The `oomreap` binary cargo built for these tests.
pub const OOMREAP: &str = env!("CARGO_BIN_EXE_oomreap");

/// How long a test waits for oomreap to say something a scenario makes certain. A bound, not a
/// speed test: a niced one-vCPU TCG guest beside the host's build (CI runs both at once) has
/// taken over 30 s to attach, and over 30 s more to trace a jammed victim to its end.
pub const GUEST_PACE: Duration = Duration::from_secs(120);

/// Takes the privileged-test lock, or returns `None` after saying why the test is skipped.
pub fn privileged(test: &str) -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Written to stderr directly: libtest hides eprintln! output of passing tests, and a skip
        // must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: needs root for BPF and memory cgroups; run `cargo xtask test`"
        );
        return None;
    }
    Some(PRIVILEGED.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Says on stderr that `test` was skipped and why. Written directly: libtest hides
/// `eprintln!` output of passing tests, and a skip must be seen.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Returns true if this kernel has process_mrelease(2) (5.15+); else says the test is
/// skipped. A bad pidfd answers EBADF where the call exists, ENOSYS where it does not.
pub fn process_mrelease_here(test: &str) -> bool {
    // SAFETY: process_mrelease on an invalid descriptor changes nothing.
    let rc = unsafe { libc::syscall(libc::SYS_process_mrelease, -1, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        skip(test, "this kernel has no process_mrelease(2) (Linux 5.15+)");
        return false;
    }
    true
}

/// The function attach mode forced for this run through `OOMREAP_FUNCTIONS` (as
/// `cargo xtask vm-test` does for each mode a kernel allows): `fentry`, `kprobe`, `off`, or
/// `None` for the default (the best the kernel allows).
pub fn forced_function_mode() -> Option<String> {
    std::env::var("OOMREAP_FUNCTIONS")
        .ok()
        .filter(|m| m != "auto")
}

/// A process of ours, killed (by pid) and reaped on drop if still running.
pub struct OwnChild(pub Child);

impl OwnChild {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for OwnChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// An OOM victim: `oomreap hog` touching `touch_mib` MiB inside a fresh memory cgroup limited
/// to `limit_mib` MiB. Field order matters: the child is reaped before the cgroup is removed.
pub struct CgroupVictim {
    pub child: OwnChild,
    pub cgroup: MemoryCgroup,
}

impl CgroupVictim {
    /// Starts the hog, waiting on stdin, moves it into the cgroup, then lets it go.
    pub fn start(limit_mib: u64, touch_mib: u64) -> Self {
        let cgroup = MemoryCgroup::create("oomreap-test", limit_mib << 20)
            .expect("create a memory cgroup with a hard limit");
        let child = Command::new(OOMREAP)
            .args(["hog", "--wait-for-go", "--mib", &touch_mib.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn oomreap hog");
        let mut victim = Self {
            child: OwnChild(child),
            cgroup,
        };
        victim
            .cgroup
            .add_process(victim.child.pid())
            .expect("move the hog into its cgroup");
        let mut stdin = victim.child.0.stdin.take().expect("hog stdin");
        stdin.write_all(b"g").expect("tell the hog to go");
        victim
    }

    /// Waits for the hog to end and asserts the OOM killer ended it (SIGKILL).
    pub fn expect_oom_kill(&mut self) {
        use std::os::unix::process::ExitStatusExt as _;
        let status = self
            .child
            .wait_timeout(Duration::from_secs(30))
            .expect("the hog was not OOM-killed within 30 s");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "hog ended with {status:?}"
        );
        assert!(self.cgroup.oom_kills().expect("read OOM kill count") >= 1);
    }
}

/// A tracefs mount we made because none existed; unmounted on drop.
pub struct TracefsMount(Option<&'static str>);

impl TracefsMount {
    /// Ensures tracefs is mounted at /sys/kernel/tracing, mounting it only if needed.
    pub fn ensure() -> Self {
        const AT: &str = "/sys/kernel/tracing";
        if Path::new(AT).join("events").is_dir() {
            return Self(None);
        }
        let target = CString::new(AT).expect("path");
        let fstype = CString::new("tracefs").expect("fstype");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "mount tracefs: {}", std::io::Error::last_os_error());
        Self(Some(AT))
    }
}

impl Drop for TracefsMount {
    fn drop(&mut self) {
        if let Some(at) = self.0 {
            let target = CString::new(at).expect("path");
            // SAFETY: unmounting the mount we made above.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Ids of the loaded BPF programs with this name (ours or anyone's).
pub fn loaded_program_ids(name: &str) -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(name))
        .map(|p| p.id())
        .collect()
}

/// A fresh folder readable by everyone (replays run as nobody), removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oomreap-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("make it readable");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads lines from a child's pipe on a thread, so a test can wait with a timeout.
pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `oomreap serve` on a free loopback port; stopped (by pid) on drop.
pub struct Serve {
    // Held for its Drop: serve is stopped when the test ends.
    _child: OwnChild,
    pub addr: SocketAddr,
}

impl Serve {
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// With more arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = OwnChild(
            Command::new(OOMREAP)
                .args(["serve", "--listen", "127.0.0.1:0"])
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn oomreap serve"),
        );
        let mut stderr = std::io::BufReader::new(child.0.stderr.take().expect("stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n =
                std::io::BufRead::read_line(&mut stderr, &mut line).expect("read serve's stderr");
            assert!(n > 0, "serve exited before listening");
            let announced = line.trim().strip_prefix("oomreap: serving ");
            if let Some(rest) = announced.and_then(|a| {
                a.strip_prefix("http://")
                    .or_else(|| a.strip_prefix("https://"))
            }) {
                break rest.trim_end_matches("/metrics").parse().expect("address");
            }
        };
        // Keep draining stderr so serve never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self {
            _child: child,
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self._child.pid()
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.addr, "/metrics", None);
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // A server may send a larger body in chunks (Prometheus's API does past a few KiB).
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The body of a `Transfer-Encoding: chunked` response: each chunk is its length in hex, a
/// line break, the bytes and a line break; a zero length ends it.
pub fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    body
}

/// The value of a sample line `name value`, if present.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `oomreap doctor ARGS --json` with `OOMREAP_FAULTS=faults` and the default function mode.
pub fn doctor_json(args: &[&str], faults: &str) -> Value {
    let out = Command::new(OOMREAP)
        .arg("doctor")
        .args(args)
        .arg("--json")
        .env("OOMREAP_FAULTS", faults)
        .env_remove("OOMREAP_FUNCTIONS")
        .output()
        .expect("run doctor");
    assert_eq!(
        out.status.code(),
        Some(0),
        "doctor with {faults:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("doctor JSON")
}

/// Whether hook `name` attaches on this kernel (asked of `oomreap doctor` once per test
/// binary): 5.10 has no `mmap:exit_mmap` and no `mmap_lock` tracepoints, for example.
pub fn hook_attaches(name: &str) -> bool {
    static REPORT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let report = REPORT.get_or_init(|| doctor_json(&[], ""));
    hook(report, name)["attached"] == true
}

/// Whether the running kernel has BTF: then oomreap reads the victim's mmap_lock where the
/// reaper skips it, and the trylock hook is not needed.
pub fn kernel_has_btf() -> bool {
    std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// Whether the reaper's skip causes are exact here: read from the lock itself where the
/// kernel has BTF, else told by the trylock hook where it attaches.
pub fn skip_causes_exact() -> bool {
    kernel_has_btf() || hook_attaches("mmap_lock:mmap_lock_acquire_returned")
}

/// Whether this process has capability `cap` in its effective set.
pub fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps >> cap & 1 == 1)
}

/// Returns true if and only if the running kernel is older than `major.minor`.
pub fn kernel_older_than(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (major, minor)
}

/// Returns true if and only if an OOM victim's own exit_mmap reaps it (`__oom_reap_task_mm`,
/// before the reaper can): kernels before 6.0, such as 5.10.
pub fn exit_reaps_victims() -> bool {
    kernel_older_than(6, 0)
}

/// The hook `name` of a doctor report.
pub fn hook<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hooks"]
        .as_array()
        .and_then(|hooks| hooks.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no hook {name} in {report}"))
}

/// Each thread's name and effective capabilities, with the hot hooks' gate thread apart:
/// it keeps exactly CAP_BPF and CAP_PERFMON, which re-attaching needs (checked here), so the
/// rest are returned without it.
pub fn front_end_thread_capabilities(pid: u32) -> Vec<u64> {
    use oomreap::kernel::privilege::{CAP_BPF, CAP_PERFMON};
    let (gate, rest): (Vec<_>, Vec<_>) = named_thread_capabilities(pid)
        .into_iter()
        .partition(|(name, _)| name == oomreap::capture::gate::THREAD_NAME);
    for (_, caps) in &gate {
        assert_eq!(
            *caps,
            (1 << CAP_BPF) | (1 << CAP_PERFMON),
            "the gate thread keeps CAP_BPF and CAP_PERFMON only: {caps:#x}"
        );
    }
    rest.into_iter().map(|(_, caps)| caps).collect()
}

fn named_thread_capabilities(pid: u32) -> Vec<(String, u64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            let name = status.lines().find_map(|l| l.strip_prefix("Name:"))?;
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            Some((
                name.trim().to_owned(),
                u64::from_str_radix(hex.trim(), 16).ok()?,
            ))
        })
        .collect()
}

/// Starts `cmd` (an oomreap command) with its stdout and stderr read line by line; waits
/// until it says it is tracing.
pub fn start_command(
    cmd: &mut Command,
) -> (
    OwnChild,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = OwnChild(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oomreap"),
    );
    let stdout = lines_of(child.0.stdout.take().expect("stdout"));
    let stderr = lines_of(child.0.stderr.take().expect("stderr"));
    loop {
        let line = stderr
            .recv_timeout(GUEST_PACE)
            .expect("oomreap announces itself");
        if line.contains("oomreap: tracing") {
            break;
        }
    }
    (child, stdout, stderr)
}

/// The BPF programs, maps and links a process holds fds of, from /proc/PID/fdinfo.
pub fn bpf_objects_of(pid: u32) -> BTreeSet<(&'static str, u32)> {
    let mut objects = BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return objects;
    };
    for fd in fds.filter_map(Result::ok) {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let (kind, key) = match target.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => ("prog", "prog_id:"),
            "anon_inode:bpf-map" => ("map", "map_id:"),
            "anon_inode:bpf_link" => ("link", "link_id:"),
            _ => continue,
        };
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        {
            objects.insert((kind, id));
        }
    }
    objects
}

/// Every BPF program, map and link loaded on this machine.
pub fn loaded_bpf_objects() -> BTreeSet<(&'static str, u32)> {
    let programs = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| ("prog", p.id()));
    let maps = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .map(|m| ("map", m.id()));
    let links = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| ("link", l.id()));
    programs.chain(maps).chain(links).collect()
}

/// Waits until `left` (given what is loaded now) is empty: the kernel frees objects shortly
/// after their last fd closes. Fails naming those left after 10 s.
#[track_caller]
pub fn assert_gone(
    how: &str,
    left: impl Fn(&BTreeSet<(&'static str, u32)>) -> Vec<(&'static str, u32)>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = left(&loaded_bpf_objects());
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {how}, BPF objects of ours are still loaded: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `oomreap inject ARGS --json`, which must succeed; its report.
pub fn inject(args: &[&str]) -> Value {
    let out = Command::new(OOMREAP)
        .arg("inject")
        .args(args)
        .arg("--json")
        .output()
        .expect("run inject");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report")
}

/// Whether `program` runs; if not, says that `test` was skipped.
pub fn have(program: &str, test: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        skip(
            test,
            &format!("{program} is not installed (`cargo xtask setup` installs it)"),
        );
    }
    found
}

/// The documents of a YAML text, as JSON values (keys that are not strings are dropped).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    yaml_rust2::YamlLoader::load_from_str(text)
        .expect("valid YAML")
        .iter()
        .map(to_json)
        .collect()
}

fn to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), to_json(v))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A real Prometheus server of the test's own: `config` (YAML) in `dir`, its API on a free
/// loopback port, stopped (by pid) on drop.
pub struct Prometheus {
    // Held for its Drop.
    _child: OwnChild,
    pub api: SocketAddr,
}

impl Prometheus {
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_in(dir, config, None)
    }

    /// As [`Prometheus::start`], inside network namespace `netns` (by name) if given.
    pub fn start_in(dir: &Path, config: &str, netns: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "prometheus"]);
                cmd
            }
            None => Command::new("prometheus"),
        };
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self {
            _child: OwnChild(cmd.spawn().expect("spawn prometheus")),
            api: format!("127.0.0.1:{port}").parse().expect("address"),
        }
    }
}
