//! `oomreap serve` for real: promtool lints its /metrics, a real Prometheus server scrapes it
//! while a scenario runs, and concurrent scrapes (and silent clients) during a storm neither
//! fail nor cost events. Needs root; the promtool and Prometheus tests skip without them.

mod common;

use std::{
    io::Write as _,
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    OwnChild, Prometheus, Serve, TempDir, have, http_get as get, inject, privileged, sample,
};
use serde_json::Value;

#[test]
fn metrics_endpoints_and_promtool() {
    let Some(_lock) = privileged("metrics_endpoints_and_promtool") else {
        return;
    };
    let serve = Serve::start();
    let report = inject(&["quick-exit"]);
    let cgroup = report["cgroup"]["path"].as_str().expect("cgroup path");
    let cgroup = cgroup.rsplit_once('/').map_or(cgroup, |(_, name)| name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = serve.metrics();
        if metrics.contains(&format!("cgroup=\"/{cgroup}\"")) || Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains(&format!(
            "oomreap_cgroup_victims_total{{cgroup=\"/{cgroup}\",namespace=\"\",pod=\"\",container=\"\",pod_uid=\"\",outcome=\"exited\"}} 1"
        )),
        "{metrics}"
    );
    assert!(sample(&metrics, "oomreap_victims_killed_total") >= Some(1.0));
    assert!(
        metrics
            .contains("oomreap_hook_attached{hook=\"oom:mark_victim\",kind=\"tracepoint\",mode=\"btf_tracepoint\"} 1")
    );

    let (status, open) = get(
        serve.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert_eq!(status, 200);
    assert!(
        open.trim_end().ends_with("# EOF"),
        "OpenMetrics when asked: {open}"
    );
    assert_eq!(get(serve.addr, "/healthz", None), (200, "ok\n".into()));
    let (status, index) = get(serve.addr, "/", None);
    assert!(status == 200 && index.contains("/metrics") && index.contains("/healthz"));
    assert_eq!(get(serve.addr, "/nope", None).0, 404);

    if have(
        "promtool",
        "the promtool half of metrics_endpoints_and_promtool",
    ) {
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .output_with_stdin(metrics.as_bytes());
        assert!(
            promtool.status.success(),
            "promtool check metrics: {}",
            String::from_utf8_lossy(&promtool.stdout)
        );
        promtool = Command::new("promtool")
            .args([
                "check",
                "rules",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../deploy/prometheus/rules.yml"
                ),
            ])
            .output_with_stdin(&[]);
        assert!(
            promtool.status.success(),
            "promtool check rules: {}",
            String::from_utf8_lossy(&promtool.stdout)
        );
    }
}

/// Runs a command with `input` on stdin and collects its output.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

#[test]
fn a_real_prometheus_scrapes_a_scenario() {
    let Some(_lock) = privileged("a_real_prometheus_scrapes_a_scenario") else {
        return;
    };
    if !have("prometheus", "a_real_prometheus_scrapes_a_scenario") {
        return;
    }
    let serve = Serve::start();
    let dir = TempDir::new();
    let prometheus = Prometheus::start(
        &dir.0,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oomreap\n    static_configs:\n      - targets: ['{}']\n",
            serve.addr
        ),
    );
    let api = prometheus.api;
    let report = inject(&["stuck-victim"]);
    let cgroup = report["cgroup"]["path"].as_str().expect("cgroup path");
    let cgroup = cgroup.rsplit_once('/').map_or(cgroup, |(_, name)| name);
    // Every outcome's series exists from the kill on, at 0: the victim's is the one above.
    let query = format!("oomreap_cgroup_victims_total%7Bcgroup%3D%22%2F{cgroup}%22%7D%20%3E%200");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(api, &format!("/api/v1/query?query={query}"), None);
        let result: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let series = &result["data"]["result"];
        if status == 200
            && let Some(first) = series.as_array().and_then(|s| s.first())
        {
            assert_eq!(first["metric"]["outcome"], "reaped", "{result}");
            assert_eq!(first["value"][1], "1", "{result}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the victim: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, body) = get(
        api,
        "/api/v1/query?query=oomreap_victims_killed_total",
        None,
    );
    let killed: Value = serde_json::from_str(&body).expect("query result");
    let killed: f64 = killed["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(killed >= 1.0, "{body}");
}

#[test]
fn concurrent_scrapes_during_a_storm_lose_nothing() {
    let Some(_lock) = privileged("concurrent_scrapes_during_a_storm_lose_nothing") else {
        return;
    };
    let serve = Serve::start();
    let addr = serve.addr;
    // Clients that connect and say nothing must not starve anyone.
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(addr).expect("idle client"))
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut scrapes = 0u32;
                // Bounded in count and time.
                let deadline = Instant::now() + Duration::from_secs(120);
                while !done.load(std::sync::atomic::Ordering::Relaxed)
                    && scrapes < 5_000
                    && Instant::now() < deadline
                {
                    let (status, _) = get(addr, "/metrics", None);
                    assert_eq!(status, 200, "scrape {scrapes} failed");
                    scrapes += 1;
                }
                scrapes
            })
        })
        .collect();
    let report = inject(&["storm", "--count", "300"]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes: u32 = scrapers
        .into_iter()
        .map(|s| s.join().expect("scraper"))
        .sum();
    assert!(scrapes >= 8, "the scrapers ran: {scrapes}");
    drop(idle);
    let cgroup = report["cgroup"]["path"].as_str().expect("cgroup path");
    let cgroup = cgroup.rsplit_once('/').map_or(cgroup, |(_, name)| name);
    let kills = report["cgroup"]["oom_kills"].as_f64().expect("oom_kills");
    let name = format!(
        "oomreap_cgroup_victims_total{{cgroup=\"/{cgroup}\",namespace=\"\",pod=\"\",container=\"\",pod_uid=\"\",outcome=\"exited\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = serve.metrics();
        if sample(&metrics, &name) == Some(kills) || Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(&metrics, &name),
        Some(kills),
        "every kill counted once:\n{metrics}"
    );
    for reason in ["ring_buffer_full", "read_failed", "undecodable"] {
        let name = format!("oomreap_dropped_events_total{{reason=\"{reason}\"}}");
        assert_eq!(
            sample(&metrics, &name),
            Some(0.0),
            "events were dropped:\n{metrics}"
        );
    }
}

/// Folders of a cgroup path shaped as kubelet makes them (`.../pod<uid>/<container id>`),
/// below one of our cgroups; removed innermost first on drop.
struct PodCgroups(Vec<std::path::PathBuf>);

impl PodCgroups {
    fn new(
        parent: &std::path::Path,
        version: oomreap::cgroup::CgroupVersion,
        names: &[&str],
    ) -> Self {
        let mut made = Self(Vec::new());
        let mut at = parent.to_owned();
        for name in names {
            if version == oomreap::cgroup::CgroupVersion::V2 {
                // cgroup v2: a child gets memory control only if its parent hands it down.
                std::fs::write(at.join("cgroup.subtree_control"), "+memory")
                    .expect("subtree_control");
            }
            at = at.join(name);
            std::fs::create_dir(&at).expect("create a pod-shaped cgroup");
            made.0.push(at.clone());
        }
        made
    }

    fn leaf(&self) -> &std::path::Path {
        self.0.last().expect("a leaf")
    }
}

impl Drop for PodCgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            for _ in 0..250 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_pod_victim_is_named_by_namespace_pod_and_container() {
    const TEST: &str = "a_pod_victim_is_named_by_namespace_pod_and_container";
    let Some(_lock) = privileged(TEST) else {
        return;
    };
    const UID: &str = "5e1f0c2a-7b3d-4e9f-8a6b-1c2d3e4f5a6b";
    const CONTAINER_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    // kubelet's log folders as a node has them, in a folder of ours.
    let kubelet = TempDir::new();
    std::fs::create_dir_all(kubelet.0.join(format!("pods/shop_cart-7d9f_{UID}/cart")))
        .expect("pod log folder");
    std::fs::create_dir_all(kubelet.0.join("containers")).expect("containers folder");
    std::fs::write(
        kubelet
            .0
            .join(format!("containers/cart-7d9f_shop_cart-{CONTAINER_ID}.log")),
        "",
    )
    .expect("container link");
    let pod_logs = kubelet.0.to_string_lossy().into_owned();
    let serve = Serve::start_with(&[], &[("OOMREAP_POD_LOGS", &pod_logs)]);

    // The limit is on our outer cgroup; the victim runs in the container's, below the pod's.
    let outer = oomreap::inject::cgroup::MemoryCgroup::create("oomreap-test-pod", 32 << 20)
        .expect("cgroup");
    let pod = PodCgroups::new(
        outer.path(),
        outer.version(),
        &[&format!("pod{UID}"), CONTAINER_ID],
    );
    let mut hog = OwnChild(
        Command::new(common::OOMREAP)
            .args(["hog", "--wait-for-go", "--mib", "256"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn hog"),
    );
    std::fs::write(pod.leaf().join("cgroup.procs"), hog.pid().to_string()).expect("move the hog");
    hog.0
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"g")
        .expect("go");
    hog.wait_timeout(Duration::from_secs(30))
        .expect("the hog is OOM-killed");

    let name = |outcome: &str| {
        format!(
            "oomreap_cgroup_victims_total{{cgroup=\"/{}/pod{UID}/{CONTAINER_ID}\",namespace=\"shop\",pod=\"cart-7d9f\",container=\"cart\",pod_uid=\"{UID}\",outcome=\"{outcome}\"}}",
            outer.path().file_name().expect("name").to_string_lossy()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = serve.metrics();
        if sample(&metrics, &name("exited")) == Some(1.0) || Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sample(&metrics, &name("exited")), Some(1.0), "{metrics}");
    // Created at 0 with the kill, so the cgroup's first give-up would be an increase.
    assert_eq!(sample(&metrics, &name("gave_up")), Some(0.0), "{metrics}");
    drop(hog);
    drop(pod);
}

/// Runs openssl in `dir`; panics with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate it signed for 127.0.0.1, and an unrelated CA, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=oomreap test CA"),
        ("other-ca", "/CN=somebody else"),
    ] {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec![
            "req", "-x509", "-days", "1", "-subj", subject, "-keyout", &key, "-out", &crt,
        ];
        args.extend(ec);
        openssl(dir, &args);
    }
    let mut args = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ];
    args.extend(ec);
    openssl(dir, &args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_the_wrong_ones_are_refused() {
    const TEST: &str = "prometheus_scrapes_over_tls_with_basic_auth_and_the_wrong_ones_are_refused";
    let Some(_lock) = privileged(TEST) else {
        return;
    };
    if !have("prometheus", TEST) || !have("openssl", TEST) {
        return;
    }
    let dir = TempDir::new();
    make_certificates(&dir.0);
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    // Relative file names: the exporter-toolkit reads them next to the config file.
    std::fs::write(
        dir.0.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .expect("write web.yml");
    let web = dir.0.join("web.yml").to_string_lossy().into_owned();
    let serve = Serve::start_with(&["--web-config", &web], &[]);

    let ca = dir.0.join("ca.crt");
    let other = dir.0.join("other-ca.crt");
    let job = |name: &str, ca: &std::path::Path, auth: bool| {
        let auth = if auth {
            "    basic_auth: {username: prometheus, password: s3cret}\n"
        } else {
            ""
        };
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config: {{ca_file: '{}'}}\n{auth}    static_configs:\n      - targets: ['{}']\n",
            ca.display(),
            serve.addr
        )
    };
    let prometheus = Prometheus::start(
        &dir.0,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}",
            job("trusted", &ca, true),
            job("no_credentials", &ca, false),
            job("wrong_ca", &other, true),
        ),
    );
    let api = prometheus.api;
    // Each job's target once scraped: (health, lastError).
    let deadline = Instant::now() + Duration::from_secs(45);
    let targets = loop {
        let body = TcpStream::connect(api)
            .ok()
            .map(|_| get(api, "/api/v1/targets", None).1)
            .unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let scraped: std::collections::BTreeMap<String, (String, String)> =
            parsed["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["health"] != "unknown")
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                        (
                            t["health"].as_str().unwrap_or_default().to_owned(),
                            t["lastError"].as_str().unwrap_or_default().to_owned(),
                        ),
                    )
                })
                .collect();
        if scraped.len() == 3 || Instant::now() > deadline {
            break scraped;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(targets.len(), 3, "not every job scraped: {targets:?}");
    assert_eq!(
        targets["trusted"],
        ("up".to_owned(), String::new()),
        "{targets:?}"
    );
    let (health, error) = &targets["no_credentials"];
    assert!(health == "down" && error.contains("401"), "{targets:?}");
    let (health, error) = &targets["wrong_ca"];
    assert!(
        health == "down" && error.contains("certificate"),
        "{targets:?}"
    );

    // What came over TLS is oomreap's own exposition.
    let (_, body) = get(
        api,
        "/api/v1/query?query=oomreap_build_info%7Bjob%3D%22trusted%22%7D",
        None,
    );
    let result: Value = serde_json::from_str(&body).expect("query result");
    assert_eq!(result["data"]["result"][0]["value"][1], "1", "{body}");
    // Liveness stays open to probes; the metrics do not, even over plain TCP.
    let plain = TcpStream::connect(serve.addr).and_then(|mut s| {
        use std::io::Read as _;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    });
    assert!(
        !String::from_utf8_lossy(&plain.unwrap_or_default()).contains("oomreap_build_info"),
        "metrics served in clear text"
    );
}

#[test]
fn prometheus_with_the_shipped_rules_alerts_on_a_victim_the_reaper_gave_up_on() {
    const TEST: &str = "prometheus_with_the_shipped_rules_alerts_on_a_victim_the_reaper_gave_up_on";
    let Some(_lock) = privileged(TEST) else {
        return;
    };
    if !have("prometheus", TEST) {
        return;
    }
    let serve = Serve::start();
    let dir = TempDir::new();
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/rules.yml"
    );
    let prometheus = Prometheus::start(
        &dir.0,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{rules}'\nscrape_configs:\n  - job_name: oomreap\n    static_configs:\n      - targets: ['{}']\n",
            serve.addr
        ),
    );
    let api = prometheus.api;
    // Prometheus has scraped oomreap once before the kill: the series it creates at the kill
    // are then new, as on a node's first victim.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(api).is_err()
        || !get(api, "/api/v1/query?query=up%7Bjob%3D%22oomreap%22%7D", None)
            .1
            .contains("\"1\"")
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped oomreap"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let report = inject(&["lock-contended"]);
    let cgroup = report["cgroup"]["path"].as_str().expect("cgroup path");
    let cgroup = format!(
        "/{}",
        cgroup.rsplit_once('/').map_or(cgroup, |(_, name)| name)
    );
    let victim = report["victims"][0]["pid"].as_u64().expect("victim pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let (_, body) = get(api, "/api/v1/alerts", None);
        let alerts: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let ours = alerts["data"]["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|a| {
                    a["labels"]["alertname"] == "OomreapVictimNotReaped"
                        && a["labels"]["cgroup"] == cgroup.as_str()
                })
                .cloned()
        });
        if let Some(alert) = ours {
            break alert;
        }
        assert!(
            Instant::now() < deadline,
            "no OomreapVictimNotReaped for victim {victim} in {cgroup}: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        ["pending", "firing"].contains(&alert["state"].as_str().unwrap_or("")),
        "{alert}"
    );
    assert_eq!(alert["labels"]["outcome"], "gave_up", "{alert}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&cgroup)),
        "{alert}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("#oomreapvictimnotreaped"))
    );
}

/// The test client reads a chunked body whole: Prometheus's alerts API sends one once it
/// holds a few alerts.
#[test]
fn a_chunked_body_is_read_whole() {
    let body = "4\r\n{\"a\"\r\n5;x=1\r\n: 12}\r\n0\r\n\r\n";
    assert_eq!(common::dechunk(body), "{\"a\": 12}");
}
