//! Caps how many memory cgroups get a label of their own, so a node with thousands of
//! short-lived cgroups cannot blow up Prometheus: the most recently active `cap` cgroups keep
//! their series; the rest are counted as `other`.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

use crate::intake::CgroupInfo;

/// The label of cgroups beyond the cap.
pub const OTHER: &str = "other";

/// The labels that name a victim's memory cgroup: its path, and in Kubernetes its namespace,
/// pod, container and pod uid (empty elsewhere, which Prometheus reads as absent). It is
/// the label set of `oomreap_cgroup_oom_loops_total`, and the first labels of
/// `oomreap_cgroup_victims_total`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CgroupIdentity {
    pub cgroup: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: String,
}

impl CgroupIdentity {
    /// A cgroup known only by its path.
    pub fn path(cgroup: impl Into<String>) -> Self {
        Self {
            cgroup: cgroup.into(),
            ..Self::default()
        }
    }

    pub fn of(info: &CgroupInfo) -> Self {
        let pod = info.pod.as_ref();
        Self {
            cgroup: info.path.clone(),
            namespace: pod.map(|p| p.namespace.clone()).unwrap_or_default(),
            pod: pod.map(|p| p.pod.clone()).unwrap_or_default(),
            container: pod.and_then(|p| p.container.clone()).unwrap_or_default(),
            pod_uid: info.pod_uid.clone().unwrap_or_default(),
        }
    }
}

/// An admitted cgroup that has been quiet this long may give its slot to a new one (its
/// series are then removed).
const IDLE_NS: u64 = 10 * 60 * 1_000_000_000;

/// Which cgroups have labels of their own.
pub struct CgroupLabels {
    cap: usize,
    /// Labels and when each was last active (CLOCK_MONOTONIC ns).
    admitted: Vec<(CgroupIdentity, u64)>,
}

impl CgroupLabels {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            admitted: Vec::new(),
        }
    }

    /// The labels to use for a victim in this cgroup at `now_ns`: its own if admitted or a
    /// slot is free (or can be freed from an idle cgroup, whose series leave `family`),
    /// `other` otherwise.
    pub fn label(
        &mut self,
        labels: CgroupIdentity,
        now_ns: u64,
        families: &CgroupFamilies,
    ) -> CgroupIdentity {
        if let Some(entry) = self.admitted.iter_mut().find(|(l, _)| *l == labels) {
            entry.1 = now_ns;
            return labels;
        }
        if self.admitted.len() < self.cap {
            self.admitted.push((labels.clone(), now_ns));
            return labels;
        }
        let idlest = self
            .admitted
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, last))| *last)
            .filter(|(_, (_, last))| now_ns.saturating_sub(*last) >= IDLE_NS)
            .map(|(index, _)| index);
        match idlest {
            Some(index) => {
                let (idle, _) =
                    std::mem::replace(&mut self.admitted[index], (labels.clone(), now_ns));
                for outcome in crate::tracker::Outcome::ALL {
                    families
                        .victims
                        .remove(&CgroupOutcome::new(&idle, outcome.name()));
                }
                families.loops.remove(&idle);
                labels
            }
            None => CgroupIdentity::path(OTHER),
        }
    }
}

/// The per-cgroup families, whose series a cgroup that gives its slot away leaves.
#[derive(Clone, Default)]
pub struct CgroupFamilies {
    pub victims: Family<CgroupOutcome, Counter>,
    pub loops: Family<CgroupIdentity, Counter>,
}

/// A cgroup's labels and a victim outcome: the series of `oomreap_cgroup_victims_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CgroupOutcome {
    #[prometheus(flatten)]
    cgroup: CgroupIdentity,
    outcome: String,
}

impl CgroupOutcome {
    pub fn new(cgroup: &CgroupIdentity, outcome: &str) -> Self {
        Self {
            cgroup: cgroup.clone(),
            outcome: outcome.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(name: &str) -> CgroupIdentity {
        CgroupIdentity::path(name)
    }

    #[test]
    fn beyond_the_cap_is_other_until_a_slot_idles() {
        let families = CgroupFamilies::default();
        let mut labels = CgroupLabels::new(2);
        assert_eq!(labels.label(cg("/a"), 0, &families), cg("/a"));
        assert_eq!(labels.label(cg("/b"), 1, &families), cg("/b"));
        assert_eq!(labels.label(cg("/c"), 2, &families).cgroup, OTHER);
        // /a stays active; /b goes quiet and gives its slot away after IDLE_NS.
        labels.label(cg("/a"), IDLE_NS, &families);
        families
            .victims
            .get_or_create(&CgroupOutcome::new(&cg("/b"), "reaped"))
            .inc();
        families.loops.get_or_create(&cg("/b")).inc();
        assert_eq!(labels.label(cg("/c"), IDLE_NS + 5, &families), cg("/c"));
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("v", "h", families.victims.clone());
        registry.register("l", "h", families.loops.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("/b"), "idle cgroup's series removed: {text}");
    }
}
