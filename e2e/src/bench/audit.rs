//! The API server's audit log (JSON lines, level Metadata for the operator's user only): each
//! request once (by audit ID), with its verb, resource, times and status code.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Request {
    pub verb: String,
    /// `pods`, `pods/status`, `jobs`, `imagerecords.sbomjob.io`, ...
    pub resource: String,
    pub received: Timestamp,
    /// When the response was complete (for a watch: when it started).
    pub done: Timestamp,
    /// The response's HTTP status code (0 when the log has none).
    pub code: i64,
}

impl Request {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// The API server answered 2xx.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Reads the requests of `user`, ordered by the time they were received.
pub fn read(path: &Path, user: &str) -> std::io::Result<Vec<Request>> {
    let text = std::fs::read_to_string(path)?;
    let mut by_id: HashMap<String, Request> = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.pointer("/user/username").and_then(|u| u.as_str()) != Some(user) {
            continue;
        }
        let s = |p: &str| {
            v.pointer(p)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let ts = |p: &str| s(p).parse::<Timestamp>().ok();
        let (Some(received), Some(stage_at)) = (ts("/requestReceivedTimestamp"), ts("/stageTimestamp"))
        else {
            continue;
        };
        let mut resource = s("/objectRef/resource");
        let group = s("/objectRef/apiGroup");
        if !group.is_empty() && group != "batch" && group != "coordination.k8s.io" {
            resource = format!("{resource}.{group}");
        }
        let sub = s("/objectRef/subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        if resource.is_empty() {
            resource = s("/requestURI");
        }
        let request = Request {
            verb: s("/verb"),
            resource,
            received,
            done: stage_at,
            code: v
                .pointer("/responseStatus/code")
                .and_then(|c| c.as_i64())
                .unwrap_or(0),
        };
        // A watch logs ResponseStarted and, when it ends, ResponseComplete: keep the first.
        by_id.entry(s("/auditID")).or_insert(request);
    }
    let mut out: Vec<Request> = by_id.into_values().collect();
    out.sort_by_key(|r| r.received);
    Ok(out)
}

/// Requests received in `[from, to)`.
pub fn between(requests: &[Request], from: Timestamp, to: Timestamp) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.received >= from && r.received < to)
        .collect()
}

/// Counts by verb, and by `verb resource`.
pub fn count<'a>(
    requests: impl IntoIterator<Item = &'a Request>,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut by_verb = BTreeMap::new();
    let mut by_resource = BTreeMap::new();
    for r in requests {
        *by_verb.entry(r.verb.clone()).or_insert(0) += 1;
        *by_resource
            .entry(format!("{} {}", r.verb, r.resource))
            .or_insert(0) += 1;
    }
    (by_verb, by_resource)
}
