//! The exporter's HTTP endpoints: `/metrics`, `/healthz` and an index page, over HTTP or
//! HTTPS, with basic auth on everything but `/healthz` when `--web-config` asks for it.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding, registry::Registry};

use super::web_config::BasicAuth;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
/// the event intake, nor it for them. `/healthz` stays open to liveness probes: it tells
/// nothing but "ok".
pub fn router(registry: Arc<Registry>, auth: Option<Arc<BasicAuth>>) -> Router {
    let mut guarded = Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/metrics", get(metrics))
        .with_state(registry);
    if let Some(auth) = auth {
        guarded = guarded.layer(axum::middleware::from_fn_with_state(auth, require_auth));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(guarded)
}

async fn require_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // bcrypt is slow on purpose: off the runtime's workers.
    let allowed = tokio::task::spawn_blocking(move || auth.allows(header.as_deref()))
        .await
        .unwrap_or(false);
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"oomreap\"")],
            "unauthorized\n",
        )
            .into_response()
    }
}

/// Serves `router` over TLS until the listener fails. Each connection is its own task: a slow
/// handshake or a silent client holds only itself.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of fds or the like: wait and go on, as axum::serve does.
            Err(err) => {
                log::warn!("accepting a connection failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
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
