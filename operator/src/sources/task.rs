//! The sources task: on the leader, a loop over the ImageSources (the controller watches them)
//! that scans each one when it is due ([`next`]: a new generation, its interval passed, or a
//! failed scan's retry) and writes what it found into its status. The cycle reads the status ([`super::feed`]); a
//! scan that found digests not listed before asks for a cycle.
//!
//! Sources are scanned one at a time: one slow registry delays the others, never the cycles.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams},
    runtime::reflector::Store,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{Instrument as _, info, info_span, warn};

use super::{
    scan::{self, Limits, Scan},
    spec::{AllowedRegistries, ImageSource, ImageSourceStatus, SourceError, ValidSource},
};
use crate::{credentials, metrics::Metrics, registry, trigger::NewDigests};

/// How often the loop looks for a source that is due (the store is in memory: cheap).
const TICK: Duration = Duration::from_secs(5);
/// The first retry of a failed scan, doubled for each failure in a row, at most [`RETRY_MAX`]
/// (and never later than the source's interval).
pub const RETRY_FIRST: Duration = Duration::from_secs(15);
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// What the loop needs.
pub struct Sources {
    pub client: Client,
    pub store: Store<ImageSource>,
    /// The namespaces the namespace selector matches (`None`: every namespace): sources
    /// elsewhere are another release's.
    pub namespaces: Option<Store<k8s_openapi::api::core::v1::Namespace>>,
    /// `SBOM_SOURCE_REGISTRIES`.
    pub allowed: AllowedRegistries,
    /// `SBOM_REGISTRY_LOOKUP_INSECURE`: registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// Asked for a cycle when a scan found digests not listed before.
    pub new_digests: NewDigests,
    pub limits: Limits,
}

/// Failed scans in a row of one source, and when the last ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub at: DateTime<Utc>,
}

/// What to do with a source now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Wait,
    /// Its spec is refused: say so in its status (once per generation).
    Refuse,
    Scan,
}

/// Whether `source` is due: a spec the operator refuses is reported once per generation; a
/// generation not scanned yet, a source never scanned, or one whose interval has passed is
/// scanned; after failed scans, only once the retry delay passed.
/// `checked` is the source's spec as [`ImageSourceSpec::validate`] found it.
///
/// [`ImageSourceSpec::validate`]: super::spec::ImageSourceSpec::validate
pub fn next(
    source: &ImageSource,
    checked: &Result<ValidSource, SourceError>,
    failures: Option<Failures>,
    now: DateTime<Utc>,
) -> Next {
    let status = source.status.as_ref();
    let generation = source.metadata.generation;
    let seen = status.and_then(|s| s.observed_generation) == generation && generation.is_some();
    let valid = match checked {
        Ok(v) => v,
        Err(e) => {
            let said = status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "False" && c.message == e.to_string())
            });
            return if seen && said { Next::Wait } else { Next::Refuse };
        }
    };
    if !seen {
        return Next::Scan;
    }
    if let Some(f) = failures {
        let wait = retry_delay(f.count).min(valid.interval);
        return if now >= f.at + delta(wait) {
            Next::Scan
        } else {
            Next::Wait
        };
    }
    match status.and_then(|s| s.last_scan_time) {
        Some(last) if now < last + delta(valid.interval) => Next::Wait,
        _ => Next::Scan,
    }
}

/// The wait after `count` failed scans in a row: [`RETRY_FIRST`] doubled, at most [`RETRY_MAX`].
pub fn retry_delay(count: u32) -> Duration {
    crate::backoff::delay(count, RETRY_FIRST, RETRY_MAX)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Sources {
    /// Scans due sources while this replica leads, until the process stops.
    pub async fn run(self, leader: watch::Receiver<bool>) {
        let http = match registry::http_client() {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "no HTTP client: ImageSources are not scanned");
                return;
            }
        };
        if self.store.wait_until_ready().await.is_err() {
            return;
        }
        let mut failures: HashMap<String, Failures> = HashMap::new();
        // Each source's spec as checked, by uid, for the generation checked: the patterns are
        // compiled once per generation, not at every tick.
        let mut checked: HashMap<String, (Option<i64>, Result<ValidSource, SourceError>)> = HashMap::new();
        loop {
            if *leader.borrow() {
                let mut sources = self.store.state();
                sources.retain(|s| {
                    crate::worklist::selected(self.namespaces.as_ref(), &s.namespace().unwrap_or_default())
                });
                sources.sort_by_key(|s| (s.namespace(), s.name_any()));
                let uids: BTreeSet<String> = sources.iter().filter_map(|s| s.uid()).collect();
                failures.retain(|uid, _| uids.contains(uid));
                checked.retain(|uid, _| uids.contains(uid));
                for source in sources {
                    let uid = source.uid().unwrap_or_default();
                    let span = info_span!("source", namespace = %source.namespace().unwrap_or_default(), name = %source.name_any());
                    let failed = failures.get(&uid).copied();
                    let generation = source.metadata.generation;
                    if checked.get(&uid).is_none_or(|(g, _)| *g != generation) {
                        checked.insert(uid.clone(), (generation, source.spec.validate(&self.allowed)));
                    }
                    let spec = &checked[&uid].1;
                    match (next(&source, spec, failed, Utc::now()), spec) {
                        (Next::Refuse, Err(e)) => self.refuse(&source, e).instrument(span).await,
                        (Next::Scan, Ok(valid)) => {
                            let ok = self.scan(&http, &source, valid).instrument(span).await;
                            if ok {
                                failures.remove(&uid);
                            } else {
                                let count = failed.map_or(1, |f| f.count.saturating_add(1));
                                failures.insert(
                                    uid,
                                    Failures {
                                        count,
                                        at: Utc::now(),
                                    },
                                );
                            }
                        }
                        // Waiting (next() refuses only a refused spec and scans only a valid one).
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn refuse(&self, source: &ImageSource, e: &SourceError) {
        warn!(error = %e, "ImageSource refused");
        let reason = match e {
            SourceError::RegistryNotAllowed(_) => "RegistryNotAllowed",
            _ => "InvalidSpec",
        };
        let failed = Scan {
            failed: Some((reason, e.to_string())),
            ..Default::default()
        };
        let status = failed.status(None, source.metadata.generation, Utc::now());
        self.write_status(source, &status).await;
    }

    /// One scan, its status written; whether it succeeded (errors of single tags count as
    /// success: they are in the status, and the next interval tries again).
    async fn scan(&self, http: &reqwest::Client, source: &ImageSource, valid: &ValidSource) -> bool {
        let previous = source.status.clone().unwrap_or_default();
        let now = Utc::now();
        let mut scanning = previous.clone();
        scanning.conditions.retain(|c| c.type_ != "Scanning");
        scanning.conditions.push(scan::condition(
            &[],
            "Scanning",
            "True",
            "Scanning",
            "listing tags",
            now,
        ));
        self.write_status(source, &scanning).await;

        let result = match self.credential(source, valid).await {
            Ok(auth) => {
                let insecure = self
                    .insecure
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&valid.registry));
                scan::scan(http, valid, auth, insecure, self.limits).await
            }
            Err(message) => Scan {
                failed: Some(("CredentialsUnavailable", message)),
                ..Default::default()
            },
        };
        let status = result.status(Some(&previous), source.metadata.generation, Utc::now());
        let outcome = match (&result.failed, result.errors.is_empty()) {
            (Some(_), _) => "failed",
            (None, true) => "ok",
            (None, false) => "errors",
        };
        self.metrics.source_scan(outcome, result.retries);
        match &result.failed {
            Some((reason, message)) => {
                warn!(%reason, %message, retries = result.retries, "ImageSource scan failed")
            }
            None => info!(
                tags = result.tags,
                digests = status.digests,
                errors = result.errors.len(),
                "ImageSource scanned"
            ),
        }
        self.write_status(source, &status).await;
        let before: BTreeSet<&str> = previous.images.iter().map(|i| i.digest.as_str()).collect();
        if status.images.iter().any(|i| !before.contains(i.digest.as_str())) {
            self.new_digests.ask();
        }
        result.failed.is_none()
    }

    /// The (user, password) of the source's credentials Secret for its registry; `None` without
    /// a Secret or without an entry for the registry. A Secret that is missing or is no docker
    /// config fails the scan, naming it.
    async fn credential(
        &self,
        source: &ImageSource,
        valid: &ValidSource,
    ) -> Result<Option<(String, String)>, String> {
        let Some(name) = &source.spec.credentials_secret else {
            return Ok(None);
        };
        let ns = source.namespace().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(format!(
                    "spec.credentialsSecret: Secret {ns}/{name} does not exist"
                ));
            }
            Err(e) => {
                warn!(secret = %name, error = %e, "could not read the credentials Secret");
                return Err(format!(
                    "spec.credentialsSecret: Secret {ns}/{name} could not be read"
                ));
            }
        };
        let entries = credentials::parse_pull_secret(&secret)
            .map_err(|e| format!("spec.credentialsSecret: Secret {ns}/{name}: {e}"))?;
        let image = format!("{}/{}", valid.registry, valid.repositories[0]);
        Ok(credentials::find_credentials(&image, [entries.as_slice()]).map(|c| (c.username, c.password)))
    }

    async fn write_status(&self, source: &ImageSource, status: &ImageSourceStatus) {
        let (ns, name) = (source.namespace().unwrap_or_default(), source.name_any());
        let api: Api<ImageSource> = Api::namespaced(self.client.clone(), &ns);
        let patch = Patch::Merge(status_patch(status));
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &patch).await {
            warn!(error = %e, "could not write the ImageSource's status");
        }
    }
}

/// A merge patch that makes the status exactly `status`: fields it leaves out (empty lists,
/// unset times) are removed, not kept from before.
pub fn status_patch(status: &ImageSourceStatus) -> Value {
    let mut value = serde_json::to_value(status).expect("a status serializes");
    if let Value::Object(map) = &mut value {
        for key in [
            "conditions",
            "observedGeneration",
            "lastScanTime",
            "tags",
            "digests",
            "images",
            "errors",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    json!({ "apiVersion": ImageSource::api_version(&()), "kind": ImageSource::kind(&()), "status": value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::spec::{ImageSourceSpec, ScannedImage};
    use kube::api::ObjectMeta;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn source(generation: i64, status: Option<ImageSourceStatus>) -> ImageSource {
        ImageSource {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("team".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: ImageSourceSpec {
                registry: "reg.example".into(),
                repositories: vec!["app".into()],
                credentials_secret: None,
                tags: Default::default(),
                platforms: vec![],
                interval: Some("1h".into()),
            },
            status,
        }
    }

    fn scanned_at(generation: i64, at: DateTime<Utc>) -> ImageSourceStatus {
        ImageSourceStatus {
            observed_generation: Some(generation),
            last_scan_time: Some(at),
            ..Default::default()
        }
    }

    fn is_scan(n: &Next) -> bool {
        *n == Next::Scan
    }

    #[test]
    fn a_source_is_scanned_when_new_changed_or_its_interval_passed() {
        let any = AllowedRegistries::Any;
        assert!(is_scan(&next(
            &source(1, None),
            &source(1, None).spec.validate(&any),
            None,
            now()
        )));
        let fresh = source(1, Some(scanned_at(1, now() - TimeDelta::minutes(59))));
        assert!(matches!(
            next(&fresh, &fresh.spec.validate(&any), None, now()),
            Next::Wait
        ));
        let old = source(1, Some(scanned_at(1, now() - TimeDelta::minutes(61))));
        assert!(is_scan(&next(&old, &old.spec.validate(&any), None, now())));
        // The spec changed since: at once.
        let changed = source(2, Some(scanned_at(1, now())));
        assert!(is_scan(&next(
            &changed,
            &changed.spec.validate(&any),
            None,
            now()
        )));
    }

    #[test]
    fn a_failed_scan_is_retried_with_a_growing_delay_never_beyond_the_interval() {
        let any = AllowedRegistries::Any;
        let s = source(1, Some(scanned_at(1, now() - TimeDelta::hours(5))));
        let after = |count, secs| Failures {
            count,
            at: now() - TimeDelta::seconds(secs),
        };
        assert!(matches!(
            next(&s, &s.spec.validate(&any), Some(after(1, 10)), now()),
            Next::Wait
        ));
        assert!(is_scan(&next(
            &s,
            &s.spec.validate(&any),
            Some(after(1, 16)),
            now()
        )));
        assert!(matches!(
            next(&s, &s.spec.validate(&any), Some(after(3, 59)), now()),
            Next::Wait
        ));
        assert!(is_scan(&next(
            &s,
            &s.spec.validate(&any),
            Some(after(3, 61)),
            now()
        )));
        assert_eq!(retry_delay(1), RETRY_FIRST);
        assert_eq!(retry_delay(30), RETRY_MAX);
        // Failed scans of an older generation do not hold back the new spec.
        let changed = source(2, Some(scanned_at(1, now())));
        assert!(is_scan(&next(
            &changed,
            &changed.spec.validate(&any),
            Some(after(9, 1)),
            now()
        )));
    }

    #[test]
    fn a_refused_spec_is_reported_once_per_generation() {
        let s = source(3, None);
        let checked = s.spec.validate(&AllowedRegistries::None);
        assert_eq!(
            next(&s, &checked, None, now()),
            Next::Refuse,
            "a registry not allowed is refused"
        );
        let e = checked.unwrap_err();
        assert!(e.to_string().contains("SBOM_SOURCE_REGISTRIES"), "{e}");
        let status = Scan {
            failed: Some(("RegistryNotAllowed", e.to_string())),
            ..Default::default()
        }
        .status(None, Some(3), now());
        let said = source(3, Some(status));
        assert!(matches!(
            next(&said, &said.spec.validate(&AllowedRegistries::None), None, now()),
            Next::Wait
        ));
        // Allowed now (the operator's setting changed): scanned.
        assert!(is_scan(&next(
            &said,
            &said.spec.validate(&AllowedRegistries::Any),
            None,
            now()
        )));
    }

    #[test]
    fn the_status_patch_removes_what_the_new_status_leaves_out() {
        let status = ImageSourceStatus {
            images: vec![ScannedImage {
                repository: "reg.example/app".into(),
                tag: "1".into(),
                digest: "sha256:x".into(),
                platforms: vec![],
            }],
            ..Default::default()
        };
        let patch = status_patch(&status);
        assert_eq!(patch["kind"], "ImageSource");
        assert_eq!(patch["apiVersion"], "sbomjob.io/v1alpha1");
        assert_eq!(patch["status"]["errors"], Value::Null);
        assert_eq!(patch["status"]["lastScanTime"], Value::Null);
        assert_eq!(patch["status"]["images"][0]["tag"], "1");
    }

    /// A fake API server that answers a status patch with a source (kube reads the answer).
    fn api() -> (Client, crate::fake_api::Log) {
        crate::fake_api::client(|seen| {
            let ok = seen.method == "PATCH"
                && seen.path == "/apis/sbomjob.io/v1alpha1/namespaces/team/imagesources/s/status";
            match seen.method.as_str() {
                "PATCH" if ok => (200, serde_json::to_value(source(1, None)).unwrap()),
                _ => crate::fake_api::not_found("object", &seen.path),
            }
        })
    }

    fn sources(client: Client, registry: &str) -> (Sources, crate::trigger::Asks) {
        let (new_digests, asks) = crate::trigger::channel("sbomjob.io", None);
        let limits = Limits {
            retry: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(10))
                .with_max_times(1),
            resolve_timeout: Duration::from_secs(2),
        };
        let (_, writer) = kube::runtime::reflector::store::<ImageSource>();
        let task = Sources {
            client,
            store: writer.as_reader(),
            namespaces: None,
            allowed: AllowedRegistries::Any,
            insecure: vec![registry.to_string()],
            metrics: Arc::new(Metrics::new()),
            new_digests,
            limits,
        };
        (task, asks)
    }

    fn patched(log: &crate::fake_api::Log) -> Vec<Value> {
        log.all()
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .map(|s| s.body["status"].clone())
            .collect()
    }

    fn condition<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str) {
        let c = status["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
        (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
    }

    /// The status says Scanning while the scan runs, then what it found; digests not listed
    /// before ask for a cycle.
    #[tokio::test]
    async fn a_scan_says_scanning_then_writes_what_it_found_and_asks_for_a_cycle() {
        let (registry, _) = crate::registry::test_server::serve(|path, _, _| match path {
            "/v2/app/tags/list" => (
                200,
                vec![("content-type", "application/json".into())],
                br#"{"name":"app","tags":["1.0.0","2.0.0"]}"#.to_vec(),
            ),
            p if p.starts_with("/v2/app/manifests/") => (
                200,
                vec![("content-type", "application/vnd.oci.image.manifest.v1+json".into())],
                format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"p":"{p}"}},"layers":[]}}"#).into_bytes(),
            ),
            _ => (404, vec![], b"{}".to_vec()),
        })
        .await;
        let (client, log) = api();
        let (task, mut asks) = sources(client, &registry);
        let mut s = source(1, None);
        s.spec.registry = registry.clone();
        let valid = s.spec.validate(&AllowedRegistries::Any).unwrap();
        let http = registry::http_client().unwrap();
        assert!(task.scan(&http, &s, &valid).await);
        let statuses = patched(&log);
        assert_eq!(statuses.len(), 2, "{:?}", log.lines());
        assert_eq!(condition(&statuses[0], "Scanning"), ("True", "Scanning"));
        let done = &statuses[1];
        assert_eq!(condition(done, "Scanning"), ("False", "Idle"));
        assert_eq!(condition(done, "Ready"), ("True", "Scanned"));
        assert_eq!(done["tags"], 2);
        assert_eq!(done["digests"], 2);
        assert_eq!(done["observedGeneration"], 1);
        let tags: Vec<&str> = done["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["tag"].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["2.0.0", "1.0.0"]);
        let asked = tokio::time::timeout(Duration::from_secs(1), asks.next(Duration::ZERO)).await;
        assert_eq!(asked, Ok(Some(())), "no cycle asked for");
        let metrics = task.metrics.encode();
        assert!(
            metrics.contains(r#"sbomjob_source_scans_total{result="ok"} 1"#),
            "{metrics}"
        );
    }

    /// A credentials Secret that does not exist fails the scan at once, naming it; the registry
    /// is not asked.
    #[tokio::test]
    async fn a_missing_credentials_secret_fails_the_scan_naming_it() {
        let (registry, seen) =
            crate::registry::test_server::serve(|_, _, _| (200, vec![], b"{}".to_vec())).await;
        let (client, log) = api();
        let (task, _asks) = sources(client, &registry);
        let mut s = source(1, None);
        s.spec.registry = registry.clone();
        s.spec.credentials_secret = Some("pull".into());
        let valid = s.spec.validate(&AllowedRegistries::Any).unwrap();
        let http = registry::http_client().unwrap();
        assert!(!task.scan(&http, &s, &valid).await);
        let statuses = patched(&log);
        let done = statuses.last().unwrap();
        assert_eq!(condition(done, "Ready"), ("False", "CredentialsUnavailable"));
        assert_eq!(condition(done, "Failed"), ("True", "CredentialsUnavailable"));
        let message = done["conditions"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("spec.credentialsSecret") && message.contains("team/pull"),
            "{message}"
        );
        assert!(seen.lock().unwrap().is_empty(), "the registry was asked");
        assert!(
            log.lines()
                .contains(&"GET /api/v1/namespaces/team/secrets/pull".to_string())
        );
    }
}
