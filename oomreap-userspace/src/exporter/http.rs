//! The exporter's HTTP endpoints: `/metrics`, `/healthz` and an index page.
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding, registry::Registry};

/// The OpenMetrics content type, served when a scraper asks for it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const INDEX: &str = "<!doctype html>
<html><head><title>oomreap</title></head><body>
<h1>oomreap</h1>
<p>What the Linux kernel's OOM reaper does, and why it fails.</p>
<ul>
<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics (OpenMetrics when the Accept header asks for it)</li>
<li><a href=\"/healthz\">/healthz</a>: liveness</li>
</ul>
</body></html>
";

/// The router over a shared registry. Scrapes read the metrics' atomics; they never wait for
/// the event intake, nor it for them.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(registry)
}

async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if wants_openmetrics {
        (encoding::text::encode(&mut body, &registry), OPENMETRICS)
    } else {
        (
            encoding::prometheus_text::encode(&mut body, &registry),
            encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics\n",
        )
            .into_response(),
    }
}

/// Returns true if and only if `addr` is a loopback address.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
