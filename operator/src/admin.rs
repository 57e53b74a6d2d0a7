//! The admin endpoint (`SBOM_ADMIN_ADDR`, default `0.0.0.0:8080`): plain HTTP/1.1 for the
//! kubelet's probes and Prometheus.
//!
//! - `GET /metrics`: every metric, OpenMetrics text ([`crate::metrics`]).
//! - `GET /healthz`: 200 while the main loop makes progress and the watches deliver, 503 with
//!   the reason otherwise ([`crate::health`]; liveness).
//! - `GET /readyz`: 200 once [`Ready::set`] was called (after the caches are filled), 503 before.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use sbomjob::{admin, metrics::Metrics, settings::Settings};
//! # async fn example(settings: Settings, metrics: Arc<Metrics>) -> Result<(), admin::BindError> {
//! let ready = admin::Ready::default();
//! let health = sbomjob::health::Health::new(settings.ops.health_timeout);
//! let server = admin::AdminServer::bind(settings.ops.admin_addr, metrics.clone(), ready.clone(), health).await?;
//! tokio::spawn(server.run());
//! // ... caches filled:
//! ready.set();
//! # Ok(())
//! # }
//! ```

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::{
    health::Health,
    metrics::{self, Metrics},
};

/// A client that sends no complete request head within this time is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the operator is ready; cheap to clone, every clone shares one flag.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// `/readyz` answers 200 from now on.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// `/readyz` answers 503 again (e.g. while shutting down).
    pub fn clear(&self) {
        self.0.store(false, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("binding the admin endpoint to {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The admin endpoint, bound and ready to [`run`](AdminServer::run).
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Ready,
    health: Health,
}

impl AdminServer {
    /// Binds the address now, so a port in use fails start-up instead of a background task.
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        ready: Ready,
        health: Health,
    ) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        Ok(AdminServer {
            listener,
            metrics,
            ready,
            health,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until the task is dropped or aborted; never returns on its own.
    pub async fn run(self) {
        if let Ok(addr) = self.listener.local_addr() {
            info!(%addr, "admin endpoint listening: /metrics, /healthz, /readyz");
        }
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (metrics, ready, health) = (self.metrics.clone(), self.ready.clone(), self.health.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    // Checked only when asked: /metrics scrapes take no lock of it.
                    let healthy = || health.check(chrono::Utc::now());
                    let response = respond(req.method(), req.uri().path(), &metrics, ready.is_set(), healthy);
                    async move { Ok::<_, Infallible>(response) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    debug!(%peer, error = %e, "admin connection ended with an error");
                }
            });
        }
    }
}

/// The answer to one request (pure apart from reading the metrics).
fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    ready: bool,
    healthy: impl FnOnce() -> Result<(), String>,
) -> Response<Full<Bytes>> {
    let text =
        |status: StatusCode, body: &'static str| reply(status, "text/plain; charset=utf-8", body.into());
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => reply(StatusCode::OK, metrics::CONTENT_TYPE, metrics.encode()),
        "/healthz" => match healthy() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("unhealthy: {why}\n"),
            ),
        },
        "/readyz" if ready => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One request over a real TCP connection; returns the status code and the body.
    async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    #[tokio::test]
    async fn serves_probes_and_metrics_over_tcp() {
        let metrics = Arc::new(Metrics::new());
        let ready = Ready::default();
        let health = Health::new(Duration::from_secs(60));
        let server = AdminServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            ready.clone(),
            health.clone(),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(server.run());

        assert_eq!(get(addr, "GET", "/healthz").await, (200, "ok\n".into()));
        assert_eq!(get(addr, "GET", "/readyz").await.0, 503);
        ready.set();
        assert_eq!(get(addr, "GET", "/readyz").await, (200, "ready\n".into()));
        ready.clear();
        assert_eq!(get(addr, "GET", "/readyz").await.0, 503);

        metrics.annotated(3);
        let (status, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("sbomjob_pods_annotated_total 3"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        // A watch failing for longer than the timeout: unhealthy, with why.
        let stuck = Health::new(Duration::from_secs(10));
        let r = respond(&Method::GET, "/healthz", &metrics, true, || {
            stuck.check(chrono::Utc::now() + chrono::TimeDelta::seconds(11))
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        health.watch_failed("pod");
        assert_eq!(
            get(addr, "GET", "/healthz").await,
            (200, "ok\n".into()),
            "failing, not for long"
        );
        health.watch_ok("pod");
        assert_eq!(get(addr, "GET", "/nope").await.0, 404);
        assert_eq!(get(addr, "POST", "/healthz").await.0, 405);
        task.abort();
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = AdminServer::bind(
            addr,
            Arc::new(Metrics::new()),
            Ready::default(),
            Health::new(Duration::from_secs(60)),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!("binding the admin endpoint to {addr}")),
            "{err}"
        );
    }

    #[test]
    fn metrics_have_the_openmetrics_content_type() {
        let r = respond(&Method::GET, "/metrics", &Metrics::new(), false, || Ok(()));
        assert_eq!(r.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
        let r = respond(&Method::HEAD, "/healthz", &Metrics::new(), false, || Ok(()));
        assert_eq!(r.status(), StatusCode::OK);
    }
}
