//! Requests to the Kubernetes API counted by verb and result: a layer of the operator's client
//! (outside kube's own retries, so a retried request counts once per attempt that reached the
//! client), feeding `sbomjob_kube_requests_total{verb, result}` ([`crate::metrics`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Method, Request, Response};
use tower::{BoxError, Layer, Service};

use crate::metrics::Metrics;

/// The verb of a request as RBAC names it: `get`, `list`, `watch`, `create`, `update`,
/// `patch`, `delete` (and `other`). A GET of a collection is a list, with `watch=true` a watch.
pub fn verb<B>(req: &Request<B>) -> &'static str {
    let query = req.uri().query().unwrap_or_default();
    let watching = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    match *req.method() {
        Method::GET if watching => "watch",
        Method::GET if is_collection(req.uri().path()) => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// Whether an API path names a collection (`/api/v1/pods`, `/apis/g/v/namespaces/n/jobs`), not
/// one object or its subresource: a resource segment comes last.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // After /api/v1 or /apis/<group>/<version>: [namespaces/<ns>/]<resource>[/<name>[/<sub>]].
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest else {
        return false;
    };
    if rest.len() >= 3 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    rest.len() == 1
}

/// The result class of a response: `2xx`, `4xx`, `5xx` (and `1xx`/`3xx`), or `error` when no
/// response came (connection refused, timeout, the fence).
pub fn result_of(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone)]
pub struct CountLayer(pub Arc<Metrics>);

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = verb(&req);
        let metrics = self.metrics.clone();
        let sent = self.inner.call(req);
        Box::pin(async move {
            let answer = sent.await.map_err(Into::into);
            let result = match &answer {
                Ok(r) => result_of(r.status().as_u16()),
                Err(_) => "error",
            };
            metrics.kube_request(verb, result);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn verbs_as_rbac_names_them() {
        for (method, uri, want) in [
            (Method::GET, "/api/v1/pods?labelSelector=a", "list"),
            (Method::GET, "/api/v1/pods?watch=true&resourceVersion=1", "watch"),
            (Method::GET, "/api/v1/namespaces/shop/pods/web", "get"),
            (Method::GET, "/api/v1/namespaces/shop/pods", "list"),
            (Method::GET, "/api/v1/namespaces/sbomjob/pods/j-1/log", "get"),
            (Method::GET, "/apis/sbomjob.io/v1alpha1/imagerecords", "list"),
            (
                Method::GET,
                "/apis/sbomjob.io/v1alpha1/imagerecords/sha256-ab",
                "get",
            ),
            (Method::GET, "/api/v1/namespaces", "list"),
            (Method::GET, "/api/v1/namespaces/shop", "get"),
            (Method::POST, "/apis/batch/v1/namespaces/sbomjob/jobs", "create"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                "update",
            ),
            (Method::PATCH, "/api/v1/namespaces/shop/pods/web", "patch"),
            (Method::DELETE, "/api/v1/namespaces/sbomjob/secrets/j-1", "delete"),
        ] {
            assert_eq!(verb(&req(method.clone(), uri)), want, "{method} {uri}");
        }
    }

    #[tokio::test]
    async fn every_request_is_counted_by_verb_and_result() {
        use tower::ServiceExt as _;
        let metrics = Arc::new(Metrics::new());
        let svc = CountLayer(metrics.clone()).layer(tower::service_fn(|r: Request<()>| async move {
            let status = if r.method() == Method::DELETE { 404 } else { 200 };
            Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
        }));
        for (m, u) in [
            (Method::GET, "/api/v1/pods"),
            (Method::DELETE, "/api/v1/namespaces/a/secrets/b"),
        ] {
            svc.clone().oneshot(req(m, u)).await.unwrap();
        }
        let text = metrics.encode();
        assert!(
            text.contains(r#"sbomjob_kube_requests_total{verb="list",result="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sbomjob_kube_requests_total{verb="delete",result="4xx"} 1"#),
            "{text}"
        );
    }
}
