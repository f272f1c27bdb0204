//! The Kubernetes identity of a pod's cgroup (namespace, pod name, container name), read on the
//! node without API credentials. Kubelet keeps a log folder per pod and a link per container:
//!
//! - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/`
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`
//!
//! Kubernetes names cannot hold `_`, so both split without ambiguity. The DaemonSet mounts
//! `/var/log/pods` and `/var/log/containers` read-only.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Where kubelet keeps them; `OOMREAP_POD_LOGS` names another folder holding `pods/` and
/// `containers/` (tests use it).
pub const DEFAULT_ROOT: &str = "/var/log";

/// A miss rescans the folders, but not more often than this: a node without Kubernetes must
/// not list them for every victim of a storm.
const RESCAN_AFTER: Duration = Duration::from_secs(1);

/// Pods remembered at most; the table starts over beyond this.
const MAX_PODS: usize = 4096;

/// Who a cgroup belongs to in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod: String,
    /// The container's name, when the cgroup is one container's (not the pod's own).
    pub container: Option<String>,
    pub uid: String,
}

/// Kubelet's log folders, read on demand.
pub struct PodDirectory {
    root: PathBuf,
    /// pod uid → (namespace, pod, container names)
    pods: HashMap<String, (String, String, Vec<String>)>,
    /// container id → container name
    containers: HashMap<String, String>,
    scanned: Option<Instant>,
}

impl PodDirectory {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            pods: HashMap::new(),
            containers: HashMap::new(),
            scanned: None,
        }
    }

    /// The folder of `OOMREAP_POD_LOGS`, else kubelet's.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os("OOMREAP_POD_LOGS")
                .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from),
        )
    }

    /// The identity of the pod with `uid` and, if known, its container `container_id`.
    pub fn lookup(&mut self, uid: &str, container_id: Option<&str>) -> Option<PodIdentity> {
        let known = |d: &Self| {
            d.pods.contains_key(uid) && container_id.is_none_or(|id| d.containers.contains_key(id))
        };
        if !known(self) && self.scanned.is_none_or(|t| t.elapsed() >= RESCAN_AFTER) {
            self.scan();
        }
        let (namespace, pod, names) = self.pods.get(uid)?;
        let container = match container_id.and_then(|id| self.containers.get(id)) {
            Some(name) => Some(name.clone()),
            // A pod with one container: the cgroup with a container id is that one.
            None if container_id.is_some() && names.len() == 1 => names.first().cloned(),
            None => None,
        };
        Some(PodIdentity {
            namespace: namespace.clone(),
            pod: pod.clone(),
            container,
            uid: uid.to_owned(),
        })
    }

    fn scan(&mut self) {
        self.scanned = Some(Instant::now());
        if self.pods.len() >= MAX_PODS {
            self.pods.clear();
            self.containers.clear();
        }
        for (name, path) in entries(&self.root.join("pods")) {
            if let Some((namespace, pod, uid)) = split3(&name) {
                let containers = entries(&path).into_iter().map(|(c, _)| c).collect();
                self.pods.insert(
                    uid.to_owned(),
                    (namespace.to_owned(), pod.to_owned(), containers),
                );
            }
        }
        for (name, _) in entries(&self.root.join("containers")) {
            let Some((front, id)) = name.strip_suffix(".log").and_then(|n| n.rsplit_once('-'))
            else {
                continue;
            };
            if let Some((_, _, container)) = split3(front) {
                self.containers.insert(id.to_owned(), container.to_owned());
            }
        }
    }
}

/// `a_b_c` → (a, b, c); anything else is not kubelet's.
fn split3(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.split('_');
    let found = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(found)
}

/// (name, path) of each entry of `dir`; none if it cannot be read.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1b2c3d4e-1111-2222-3333-444455556666";
    const CART: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const SIDECAR: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    /// A kubelet log tree: pod `shop/cart-7d9f` with containers `cart` and `envoy`.
    fn kubelet_tree() -> PathBuf {
        let root = std::env::temp_dir().join(format!("oomreap-pods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pod = root.join(format!("pods/shop_cart-7d9f_{UID}"));
        for container in ["cart", "envoy"] {
            std::fs::create_dir_all(pod.join(container)).expect("pod folder");
        }
        std::fs::create_dir_all(root.join("containers")).expect("containers folder");
        for (container, id) in [("cart", CART), ("envoy", SIDECAR)] {
            std::fs::write(
                root.join(format!("containers/cart-7d9f_shop_{container}-{id}.log")),
                "",
            )
            .expect("container link");
        }
        root
    }

    #[test]
    fn names_namespace_pod_and_container_from_kubelets_folders() {
        let root = kubelet_tree();
        let mut pods = PodDirectory::new(&root);
        let cart = pods.lookup(UID, Some(CART)).expect("found");
        assert_eq!(
            cart,
            PodIdentity {
                namespace: "shop".into(),
                pod: "cart-7d9f".into(),
                container: Some("cart".into()),
                uid: UID.into(),
            }
        );
        assert_eq!(
            pods.lookup(UID, Some(SIDECAR))
                .and_then(|p| p.container)
                .as_deref(),
            Some("envoy")
        );
        // The pod's own cgroup (no container id): the pod, no container.
        assert_eq!(pods.lookup(UID, None).map(|p| p.container), Some(None));
        assert_eq!(pods.lookup("no-such-uid", None), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn no_kubelet_means_no_identity_and_few_scans() {
        let mut pods = PodDirectory::new("/nonexistent/oomreap");
        assert_eq!(pods.lookup(UID, Some(CART)), None);
        let first = pods.scanned;
        assert_eq!(pods.lookup(UID, Some(CART)), None);
        assert_eq!(
            pods.scanned, first,
            "no second scan within {RESCAN_AFTER:?}"
        );
    }

    #[test]
    fn names_that_are_not_kubelets_are_ignored() {
        assert_eq!(split3("shop_cart_uid"), Some(("shop", "cart", "uid")));
        assert_eq!(split3("shop_cart"), None);
        assert_eq!(split3("a_b_c_d"), None);
    }
}
