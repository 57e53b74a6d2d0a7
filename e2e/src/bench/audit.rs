//! The API server's audit log (JSON lines, level Metadata for the operator's user only): each
//! request once (by audit ID), with its verb, resource, times and status code.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
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

/// The log at `path` and the backups the API server's log writer (lumberjack) rotated it to,
/// `<stem>-<time>.<ext>` beside it, oldest first: a run is only whole with all of them.
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or_default();
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(stem)
                    .and_then(|n| n.strip_prefix('-'))
                    .and_then(|n| n.strip_suffix(ext))
                    .is_some_and(|time| time.starts_with(|c: char| c.is_ascii_digit()) && time.contains('T'))
            })
        })
        .collect();
    // lumberjack's backup names carry the time of rotation, so their order is the time order.
    backups.sort();
    backups.push(path.to_path_buf());
    Ok(backups)
}

/// Reads the requests of `user` from the log at `path` and its rotated backups, ordered by the
/// time they were received.
pub fn read(path: &Path, user: &str) -> std::io::Result<Vec<Request>> {
    let mut text = String::new();
    for file in files(path)? {
        text.push_str(&std::fs::read_to_string(file)?);
        text.push('\n');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_backups_are_read_oldest_first_then_the_log() {
        let dir = std::env::temp_dir().join(format!("sbomjob-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |id: &str, at: &str| {
            format!(
                r#"{{"auditID":"{id}","verb":"get","user":{{"username":"op"}},"objectRef":{{"resource":"leases"}},"requestReceivedTimestamp":"{at}","stageTimestamp":"{at}","responseStatus":{{"code":200}}}}"#
            )
        };
        std::fs::write(
            dir.join("audit-2026-12-02T18-50-00.000.log"),
            line("b", "2026-12-02T18:45:00Z"),
        )
        .unwrap();
        std::fs::write(
            dir.join("audit-2026-12-02T18-40-00.000.log"),
            line("a", "2026-12-02T18:35:00Z"),
        )
        .unwrap();
        std::fs::write(dir.join("audit.log"), line("c", "2026-12-02T18:55:00Z")).unwrap();
        // Not backups: another log, and a copy named like the bench's output.
        std::fs::write(
            dir.join("other-2026-12-02T18-40-00.000.log"),
            line("x", "2026-12-02T18:00:00Z"),
        )
        .unwrap();
        std::fs::write(dir.join("audit-100000.log"), line("y", "2026-12-02T18:00:00Z")).unwrap();
        let names: Vec<String> = files(&dir.join("audit.log"))
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "audit-2026-12-02T18-40-00.000.log",
                "audit-2026-12-02T18-50-00.000.log",
                "audit.log"
            ]
        );
        let requests = read(&dir.join("audit.log"), "op").unwrap();
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert!(requests.windows(2).all(|w| w[0].received <= w[1].received));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
