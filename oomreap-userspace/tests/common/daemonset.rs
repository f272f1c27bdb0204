//! deploy/kubernetes/daemonset.yaml as podman flags: the image is tested with exactly the
//! security context, mounts and limits the manifest gives, read from it, never copied. A field
//! this does not know how to reproduce fails the test by name instead of being left out.

use std::io::Write as _;

use serde_json::Value;

pub struct DaemonSet {
    /// The container's `args`.
    pub args: Vec<String>,
    /// The `metrics` port.
    pub metrics_port: u16,
    /// The readiness probe's HTTP path.
    pub readiness_path: String,
    pod: Value,
    container: Value,
}

impl DaemonSet {
    pub fn read() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/kubernetes/daemonset.yaml"
        );
        let text = std::fs::read_to_string(path).expect("read the DaemonSet");
        let daemonset = super::yaml_documents(&text)
            .into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("a DaemonSet in the manifest");
        let pod = daemonset["spec"]["template"]["spec"].clone();
        let container = pod["containers"][0].clone();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let metrics_port = container["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == "metrics"))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .expect("a metrics port");
        let readiness_path = container["readinessProbe"]["httpGet"]["path"]
            .as_str()
            .expect("an HTTP readiness probe")
            .to_owned();
        Self {
            args: strings(&container["args"]),
            metrics_port,
            readiness_path,
            pod,
            container,
        }
    }

    /// `podman run` flags for the pod's PID namespace and the container's security context,
    /// mounts and limits. A host folder a Kubernetes node has but this machine lacks (kubelet's
    /// log folders) is stood in for by an empty folder under `stand_in`.
    pub fn podman_flags(&self, stand_in: &std::path::Path) -> Vec<String> {
        let mut flags = Vec::new();
        if self.pod["hostPID"] == true {
            flags.push("--pid=host".to_owned());
        }
        let security = &self.container["securityContext"];
        for (key, value) in security.as_object().into_iter().flatten() {
            match key.as_str() {
                "privileged" if value == true => flags.push("--privileged".into()),
                "privileged" => {}
                "allowPrivilegeEscalation" if value == false => {
                    flags.push("--security-opt=no-new-privileges".into());
                }
                "readOnlyRootFilesystem" if value == true => flags.push("--read-only".into()),
                "capabilities" => {
                    for cap in value["drop"].as_array().into_iter().flatten() {
                        flags.push(format!("--cap-drop={}", cap_name(cap)));
                    }
                    for cap in value["add"].as_array().into_iter().flatten() {
                        flags.push(format!("--cap-add={}", cap_name(cap)));
                    }
                }
                "seccompProfile" => match value["type"].as_str() {
                    Some("Unconfined") => flags.push("--security-opt=seccomp=unconfined".into()),
                    // The runtime's own profile: podman's default.
                    Some("RuntimeDefault") => {}
                    other => panic!("seccompProfile type {other:?} is not reproduced"),
                },
                other => panic!("securityContext.{other} = {value} is not reproduced by the test"),
            }
        }
        for mount in self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = &mount["name"];
            let volume = self.pod["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| &v["name"] == name))
                .unwrap_or_else(|| panic!("no volume {name}"));
            let mut host = volume["hostPath"]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("volume {name} is not a hostPath"))
                .to_owned();
            if !std::path::Path::new(&host).exists() {
                let empty = stand_in.join(name.as_str().expect("volume name"));
                std::fs::create_dir_all(&empty).expect("a stand-in folder");
                // Said directly: libtest hides eprintln! output of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: {host} does not exist here (no kubelet): an empty folder stands in"
                );
                host = empty.to_string_lossy().into_owned();
            }
            let at = mount["mountPath"].as_str().expect("mountPath");
            let mode = if mount["readOnly"] == true {
                "ro"
            } else {
                "rw"
            };
            flags.push(format!("--volume={host}:{at}:{mode},rbind"));
        }
        let limits = &self.container["resources"]["limits"];
        if let Some(memory) = limits["memory"].as_str() {
            let mib = memory.strip_suffix("Mi").expect("memory in Mi");
            flags.push(format!("--memory={mib}m"));
        }
        if let Some(cpu) = limits["cpu"].as_str() {
            let milli: f64 = cpu
                .strip_suffix('m')
                .expect("cpu in m")
                .parse()
                .expect("cpu");
            flags.push(format!("--cpus={}", milli / 1000.0));
        }
        flags
    }
}

fn cap_name(cap: &Value) -> String {
    match cap.as_str().expect("a capability name") {
        "ALL" => "all".into(),
        name => format!("CAP_{name}"),
    }
}
