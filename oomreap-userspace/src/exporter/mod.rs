//! `oomreap serve`: the Prometheus exporter for fleets.
//!
//! Two tasks share nothing but metric handles: the intake folds kernel events into the
//! tracker and the tracker's changes into counters and histograms (atomics); the HTTP server
//! encodes the registry on each scrape. A slow or silent client holds only its own connection.

mod http;
mod labels;
mod metrics;
mod web_config;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

pub use http::is_loopback;
pub use labels::CgroupIdentity;
use labels::CgroupLabels;
pub use metrics::{Metrics, VictimNames};
pub use web_config::{BasicAuth, WebConfig, WebConfigError};

use crate::{
    capture::{Capture, CaptureError},
    display::monotonic_now_ns,
    enrich::{Enricher, notifier_owner},
    tracker::{SETTLE_NS, Tracker, Victim},
};

/// The default `--listen`: loopback only, so exposing metrics is an explicit choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9717";

/// The default `--max-cgroups`.
pub const DEFAULT_MAX_CGROUPS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
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
    mut capture: Capture,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (mut metrics, registry) = Metrics::new();
    metrics.set_hooks(capture.hooks());
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

    let mut tracker = Tracker::default();
    let mut names = Names::new(options.max_cgroups);
    let mut undecodable = 0;
    let mut settle = tokio::time::interval(Duration::from_nanos(SETTLE_NS / 4));
    tokio::pin!(shutdown);
    loop {
        let changes = tokio::select! {
            () = &mut shutdown => break,
            result = &mut server => {
                let error = match result {
                    Ok(Ok(())) => std::io::Error::other("stopped"),
                    Ok(Err(error)) => error,
                    Err(join) => std::io::Error::other(join),
                };
                return Err(ServeError::Http(error));
            }
            batch = capture.next_batch() => {
                let batch = batch?;
                undecodable += batch.errors.len() as u64;
                let mut changes = Vec::new();
                for event in &batch.events {
                    changes.extend(tracker.tick(event.timestamp_ns()));
                    tracker.apply_into(event, &mut changes);
                }
                changes
            }
            // Silence settles outcomes, but only while a victim is open: idle, nothing ticks.
            _ = settle.tick(), if tracker.has_active() => tracker.tick(monotonic_now_ns()),
        };
        for change in &changes {
            metrics.observe(&tracker, change, &mut |v| names.of(v, &metrics));
        }
        metrics.set_dropped(capture.counters()?, undecodable);
    }
    server.abort();
    Ok(())
}

/// Cgroup names kept for label lookups; the cache starts over beyond this.
const MAX_NAMED_CGROUPS: usize = 4096;

/// Resolves victims' labels: cgroup paths (capped) and notifier owners.
struct Names {
    enricher: Enricher,
    labels: CgroupLabels,
    cgroups: HashMap<u64, CgroupIdentity>,
}

impl Names {
    fn new(max_cgroups: usize) -> Self {
        Self {
            enricher: Enricher::live(),
            labels: CgroupLabels::new(max_cgroups),
            cgroups: HashMap::new(),
        }
    }

    fn of(&mut self, v: &Victim, metrics: &Metrics) -> VictimNames {
        // Bounded like the enricher's cache: cgroups come and go.
        if self.cgroups.len() >= MAX_NAMED_CGROUPS {
            self.cgroups.clear();
        }
        let raw = match v.memcg_id {
            Some(id) => self
                .cgroups
                .entry(id)
                .or_insert_with(|| match self.enricher.cgroup(id) {
                    Some(info) => CgroupIdentity::of(info),
                    None => CgroupIdentity::path(format!("id {id}")),
                })
                .clone(),
            None => CgroupIdentity::path("unknown"),
        };
        let at = v.finished_at_ns.or(v.killed_at_ns).unwrap_or_default();
        let cgroup = self.labels.label(raw, at, &metrics.cgroup_victims);
        let notifiers = v
            .notifiers
            .iter()
            .flat_map(|n| n.callbacks.iter())
            .map(|&a| {
                self.enricher
                    .symbol(a)
                    .map_or_else(|_| "unknown".into(), |s| notifier_owner(&s))
            })
            .collect();
        VictimNames { cgroup, notifiers }
    }
}
