//! The mocked-API test tier: a kube [`Client`] whose requests go to a handler in the test
//! instead of an API server (as kube-rs's controller-rs tests its reconciler), and a cycle
//! [`Context`] built on it. Every request is recorded, so a test asserts on what the operator
//! asked the API server to do.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::{
    Client,
    client::Body,
    runtime::events::{Recorder, Reporter},
};
use serde_json::{Value, json};

use crate::{
    cache::JobIdentity, cycle::Context, metrics::Metrics, pod::WatchedPod, settings::Settings, trigger,
};

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Seen {
    /// `"PATCH /api/v1/namespaces/shop/pods/web"`, for assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// A query parameter, decoded (`labelSelector`).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The requests made so far.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("log").clone()
    }

    /// `METHOD path` of every request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.all().iter().map(Seen::line).collect()
    }

    pub fn clear(&self) {
        self.0.lock().expect("log").clear();
    }
}

/// A client whose every request is answered by `handler` (status and JSON body).
pub fn client(handler: impl Fn(&Seen) -> (u16, Value) + Send + Sync + 'static) -> (Client, Log) {
    let log = Log::default();
    let handler = Arc::new(handler);
    let recorded = log.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let (handler, log) = (handler.clone(), recorded.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, answer) = handler(&seen);
            // A container log is text: a JSON string answered for `.../log` is sent as it is.
            let body = match (&answer, seen.path.ends_with("/log")) {
                (Value::String(text), true) => text.clone().into_bytes(),
                _ => serde_json::to_vec(&answer).expect("JSON"),
            };
            log.0.lock().expect("log").push(seen);
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("response");
            Ok::<_, Infallible>(response)
        }
    });
    (Client::new(service, "sbomjob"), log)
}

/// What the API server answers for an object that is not there.
pub fn not_found(kind: &str, name: &str) -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
               "message": format!("{kind} {name:?} not found"), "code": 404}),
    )
}

/// A 409, as on a stale resourceVersion or a create of an existing object.
pub fn conflict(name: &str) -> (u16, Value) {
    (
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
               "message": format!("{name}: the object has been modified"), "code": 409}),
    )
}

/// An empty list of `kind`.
pub fn empty_list(kind: &str) -> (u16, Value) {
    (
        200,
        json!({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": []}),
    )
}

/// A cycle context on `client` with the settings `vars` (plus `SBOM_JOB_IMAGE`) and the pods
/// of `pods` in its pod store; Jobs and Secrets live in namespace `sbomjob`.
pub fn context(client: Client, vars: &[(&str, &str)], pods: Vec<WatchedPod>) -> Context {
    let mut list = vec![("SBOM_JOB_IMAGE".to_string(), "reg.example/job:1".to_string())];
    list.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    // No registry is asked unless a test says so (tests talk to loopback only).
    if !vars.iter().any(|(k, _)| *k == "SBOM_REGISTRY_LOOKUP") {
        list.push(("SBOM_REGISTRY_LOOKUP".into(), "false".into()));
    }
    let settings = Settings::from_vars(list).expect("test settings");
    let (new_digests, _asks) = trigger::channel(&settings.annotation_prefix, None);
    Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sbomjob".into(),
                instance: Some("test".into()),
            },
        ),
        identity: JobIdentity::from_settings(&settings.job),
        cache_ttl: settings.ops.cache_ttl,
        client,
        settings,
        namespace: "sbomjob".into(),
        pods: crate::pod_store::PodStore::from_pods(pods),
        namespaces: None,
        sources: None,
        metrics: Arc::new(Metrics::new()),
        new_digests,
        instance: "test".into(),
        failures: Default::default(),
        refused: Default::default(),
        job_image_digest: Default::default(),
        skip_warned: Default::default(),
        found: Default::default(),
        results_counted: Default::default(),
        health: crate::health::Health::new(std::time::Duration::from_secs(600)),
        drift_tags: Default::default(),
        trust: None,
        provenance: Default::default(),
        recorded_drift: Default::default(),
    }
}
