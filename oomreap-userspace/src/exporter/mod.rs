//! `oomreap serve`: the Prometheus exporter for fleets.
//!
//! Two tasks share nothing but metric handles: the intake folds kernel events into the
//! tracker and the tracker's changes into counters and histograms (atomics); the HTTP server
//! encodes the registry on each scrape. A slow or silent client holds only its own connection.

mod http;
mod labels;
mod metrics;
mod web_config;

use std::{net::SocketAddr, sync::Arc};

pub use http::is_loopback;
pub use labels::CgroupIdentity;
use labels::CgroupLabels;
pub use metrics::{LabelNames, Metrics, VictimNames};
use prometheus_client::registry::Registry;
pub use web_config::{BasicAuth, WebConfig, WebConfigError};

use crate::{
    intake::{Annotations, Intake, IntakeError, Step},
    tracker::{Notifiers, Victim},
};

/// The default `--listen`: loopback only, so exposing metrics is an explicit choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9717";

/// The default `--max-cgroups`.
pub const DEFAULT_MAX_CGROUPS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("failed to listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
}

/// How to serve.
#[derive(Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Memory cgroups with labels of their own; the rest are `other`.
    pub max_cgroups: usize,
    /// HTTPS instead of HTTP (`--web-config`'s tls_server_config).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users who may read the metrics (`--web-config`'s basic_auth_users).
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for ServeOptions {
    // Without the certificates and password hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("max_cgroups", &self.max_cgroups)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl ServeOptions {
    /// `http` or `https`, as the address is announced.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Serves metrics until `shutdown` completes. `ready` gets the address actually bound (the
/// port may have been 0).
pub async fn serve(
    mut intake: Intake,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (mut feed, registry) = MetricsFeed::new(options.max_cgroups, &intake);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(ServeError::Http)?;
    let router = http::router(registry, options.auth.clone());
    let mut server = match options.tls.clone() {
        Some(tls) => tokio::spawn(http::serve_tls(listener, tls, router)),
        None => tokio::spawn(async move { axum::serve(listener, router).await }),
    };
    ready(bound);

    tokio::pin!(shutdown);
    loop {
        let step = tokio::select! {
            () = &mut shutdown => break,
            result = &mut server => {
                let error = match result {
                    Ok(Ok(())) => std::io::Error::other("stopped"),
                    Ok(Err(error)) => error,
                    Err(join) => std::io::Error::other(join),
                };
                return Err(ServeError::Http(error));
            }
            step = intake.next() => step?,
        };
        // Only a replay ends, and serve is always live.
        let Some(step) = step else { break };
        feed.take(&intake, &step);
    }
    server.abort();
    Ok(())
}

/// What serve does with each step of the intake: the metrics it feeds and the names it gives.
pub struct MetricsFeed {
    metrics: Metrics,
    names: Names,
}

impl MetricsFeed {
    /// New metrics, their registry, and the intake's hooks set on them.
    pub fn new(max_cgroups: usize, intake: &Intake) -> (Self, Arc<Registry>) {
        let (metrics, registry) = Metrics::new();
        metrics.set_hooks(&intake.annotations().hooks);
        let names = Names::new(max_cgroups, &metrics);
        (Self { metrics, names }, registry)
    }

    /// Observes one step's changes, as the tracker stands right after it, and the losses.
    pub fn take(&mut self, intake: &Intake, step: &Step) {
        let mut names = AnnotatedNames {
            names: &mut self.names,
            annotations: intake.annotations(),
        };
        for change in &step.changes {
            self.metrics.observe(intake.tracker(), change, &mut names);
        }
        let losses = intake.losses();
        self.metrics.set_dropped(losses.kernel, losses.undecodable);
    }
}

/// Resolves victims' labels: cgroup identities (capped) and notifier owners.
struct Names {
    labels: CgroupLabels,
    /// The families whose series an evicted cgroup label leaves.
    families: labels::CgroupFamilies,
}

impl Names {
    fn new(max_cgroups: usize, metrics: &Metrics) -> Self {
        Self {
            labels: CgroupLabels::new(max_cgroups),
            families: metrics.cgroup_families(),
        }
    }

    fn of(&mut self, v: &Victim, annotations: &Annotations) -> VictimNames {
        let raw = match v.memcg_id() {
            Some(id) => match annotations.cgroup(id) {
                Some(info) => CgroupIdentity::of(info),
                None => CgroupIdentity::path(format!("id {id}")),
            },
            None => CgroupIdentity::path("unknown"),
        };
        let at = v.finished_at_ns.or(v.killed_at_ns()).unwrap_or_default();
        let cgroup = self.labels.label(raw, at, &self.families);
        let notifiers = v
            .notifiers()
            .map(|n| notifier_owners(n, annotations))
            .unwrap_or_default();
        VictimNames { cgroup, notifiers }
    }
}

/// The owners of `notifiers`' callbacks, `unknown` where a symbol is unresolved.
fn notifier_owners(notifiers: &Notifiers, annotations: &Annotations) -> Vec<String> {
    notifiers
        .callbacks
        .iter()
        .map(|&a| {
            annotations
                .notifier_owner(a)
                .unwrap_or("unknown")
                .to_owned()
        })
        .collect()
}

/// [`Names`] with the annotations of the step being observed.
struct AnnotatedNames<'a> {
    names: &'a mut Names,
    annotations: &'a Annotations,
}

impl LabelNames for AnnotatedNames<'_> {
    fn victim(&mut self, v: &Victim) -> VictimNames {
        self.names.of(v, self.annotations)
    }

    fn notifier_owners(&mut self, notifiers: &Notifiers) -> Vec<String> {
        notifier_owners(notifiers, self.annotations)
    }
}
