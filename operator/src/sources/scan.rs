//! One scan of a source: list each repository's tags (retried with backoff while the registry
//! is unreachable), select them by the policy, and resolve the selected tags to digests with a
//! bounded pool. What the scan found becomes the source's status ([`Scan::status`]); the cycle
//! catalogues its digests like those of running pods.
//!
//! The seed's error table is the behaviour: unreachable → retried, then Failed; denied → Failed
//! with the message; one tag that fails or times out is skipped and the others go on; dropping
//! the scan's future (shutdown, the source deleted) stops the pool at its next await.

use std::{collections::BTreeSet, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use tracing::{debug, warn};

use super::spec::{
    ImageSourceStatus, MAX_ERROR_LEN, MAX_STATUS_ERRORS, MAX_STATUS_IMAGES, ScannedImage, SourceCondition,
    ValidSource,
};
use crate::registry::{RegistryError, Repository};

/// Tags resolved at once per source.
pub const CONCURRENCY: usize = 4;
/// One tag's resolution, at most (the client's per-request bounds are inside it).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tags listed per repository before the policy selects (a registry with more is cut, and says so).
const MAX_LISTED: usize = 10_000;

/// The bounds of a scan in time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How the listing of a repository is retried while the registry is unreachable.
    pub retry: ExponentialBuilder,
    pub resolve_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(8))
                .with_max_times(4)
                .with_jitter(),
            resolve_timeout: RESOLVE_TIMEOUT,
        }
    }
}

/// What one scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub images: Vec<ScannedImage>,
    /// Tags selected over every repository.
    pub tags: usize,
    /// Errors of single repositories or tags, in the order met.
    pub errors: Vec<String>,
    /// Why the whole scan failed, if it did: (reason, message).
    pub failed: Option<(&'static str, String)>,
    /// Listing attempts that failed and were retried.
    pub retries: usize,
}

/// Scans `source` with `auth` (the credential of its Secret).
pub async fn scan(
    http: &reqwest::Client,
    source: &ValidSource,
    auth: Option<(String, String)>,
    insecure: bool,
    limits: Limits,
) -> Scan {
    let timeout = limits.resolve_timeout;
    let mut out = Scan::default();
    let mut listed_any = false;
    let mut unreachable = 0;
    let mut resolving = 0;
    for name in &source.repositories {
        let repo = Repository::new(http, &source.registry, name, auth.clone(), insecure);
        let full = format!("{}/{name}", source.registry);
        let mut retries = 0;
        let listed = (|| repo.tags(MAX_LISTED))
            .retry(limits.retry)
            .when(RegistryError::is_transient)
            .notify(|e, after| {
                retries += 1;
                debug!(repository = %full, error = %e, ?after, "listing tags failed; retrying");
            })
            .await;
        out.retries += retries;
        let tags = match listed {
            Ok((tags, cut)) => {
                listed_any = true;
                if cut {
                    out.errors.push(format!(
                        "{full}: more than {MAX_LISTED} tags; the rest was not read"
                    ));
                }
                tags
            }
            Err(e @ RegistryError::Denied(_)) => {
                out.failed = Some(("InvalidCredentials", format!("{full}: {e}")));
                return out;
            }
            Err(e) if e.is_transient() => {
                unreachable += 1;
                out.errors
                    .push(format!("{full}: {e} (after {} attempts)", retries + 1));
                continue;
            }
            Err(e) => {
                out.errors.push(format!("{full}: {e}"));
                continue;
            }
        };
        let mut selected = source.policy.select(tags.iter().map(String::as_str));
        out.tags += selected.len();
        // One scan resolves at most what the status can list: 50 repositories of 1000 tags
        // must not become 50,000 manifest reads per interval.
        let room = MAX_STATUS_IMAGES.saturating_sub(resolving);
        if selected.len() > room {
            out.errors.push(format!(
                "{full}: {} tags selected, {room} resolved: a scan resolves at most {MAX_STATUS_IMAGES} tags (narrow the tags or lower the limit)",
                selected.len()
            ));
            selected.truncate(room);
        }
        resolving += selected.len();
        // Owned tags: a stream of borrowed ones is not `Send` in a spawned task (rust#102211).
        let selected: Vec<String> = selected.into_iter().map(String::from).collect();
        let resolved: Vec<(String, Result<ScannedImage, String>)> = stream::iter(selected)
            .map(|tag: String| {
                let (repo, full) = (&repo, &full);
                async move {
                    let r = match tokio::time::timeout(timeout, repo.resolve(&tag, &source.platforms)).await {
                        Err(_) => Err(format!("{full}:{tag}: no answer in {timeout:?}; skipped")),
                        Ok(Err(e)) => Err(format!("{full}:{tag}: {e}")),
                        Ok(Ok(r)) => Ok(ScannedImage {
                            repository: full.clone(),
                            tag: tag.clone(),
                            digest: r.digest,
                            platforms: r.platforms.into_iter().map(|(p, d)| format!("{p}={d}")).collect(),
                        }),
                    };
                    (tag, r)
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (_, r) in resolved {
            match r {
                Ok(image) => out.images.push(image),
                Err(e) => out.errors.push(e),
            }
        }
    }
    if !listed_any {
        let message = out
            .errors
            .first()
            .cloned()
            .unwrap_or_else(|| "no repository could be listed".into());
        // Unreachable only when the registry did not answer; repositories it says it lacks are
        // the source's to fix.
        let reason = if unreachable == source.repositories.len() {
            "RegistryUnreachable"
        } else {
            "ListingFailed"
        };
        out.failed = Some((reason, message));
    }
    if !out.errors.is_empty() {
        warn!(registry = %source.registry, errors = out.errors.len(), first = %out.errors[0], "source scan had errors");
    }
    out
}

impl Scan {
    /// Distinct digests found (an index's platform manifests count too).
    pub fn digests(&self) -> BTreeSet<&str> {
        let mut d: BTreeSet<&str> = self.images.iter().map(|i| i.digest.as_str()).collect();
        for i in &self.images {
            d.extend(
                i.platforms
                    .iter()
                    .filter_map(|p| p.split_once('=').map(|(_, d)| d)),
            );
        }
        d
    }

    /// The source's status after this scan. A failed scan keeps the images and the scan time of
    /// the last good one (`previous`): a registry that is down for a while does not make the
    /// cluster forget.
    pub fn status(
        &self,
        previous: Option<&ImageSourceStatus>,
        generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> ImageSourceStatus {
        let mut errors: Vec<String> = self
            .errors
            .iter()
            .take(MAX_STATUS_ERRORS)
            .map(|e| e.chars().take(MAX_ERROR_LEN).collect())
            .collect();
        if self.errors.len() > MAX_STATUS_ERRORS {
            errors.push(format!("... and {} more", self.errors.len() - MAX_STATUS_ERRORS));
        }
        let old = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
        let (ready, failed) = match &self.failed {
            Some((reason, message)) => (
                condition(old, "Ready", "False", reason, message, now),
                condition(old, "Failed", "True", reason, message, now),
            ),
            None => {
                let (reason, message) = if self.errors.is_empty() {
                    (
                        "Scanned",
                        format!("{} tags, {} digests", self.tags, self.digests().len()),
                    )
                } else {
                    (
                        "ScannedWithErrors",
                        format!("{} tags, {} errors", self.tags, self.errors.len()),
                    )
                };
                (
                    condition(old, "Ready", "True", reason, &message, now),
                    condition(old, "Failed", "False", reason, "", now),
                )
            }
        };
        let scanning = condition(old, "Scanning", "False", "Idle", "", now);
        let mut status = match (&self.failed, previous) {
            (Some(_), Some(p)) => ImageSourceStatus {
                images: p.images.clone(),
                tags: p.tags,
                digests: p.digests,
                last_scan_time: p.last_scan_time,
                ..Default::default()
            },
            // lastScanTime is the last good scan's: none yet.
            (Some(_), None) => ImageSourceStatus::default(),
            (None, _) => ImageSourceStatus {
                images: self.images.iter().take(MAX_STATUS_IMAGES).cloned().collect(),
                tags: self.tags.try_into().unwrap_or(u32::MAX),
                digests: self.digests().len().try_into().unwrap_or(u32::MAX),
                last_scan_time: Some(now),
                ..Default::default()
            },
        };
        if self.images.len() > MAX_STATUS_IMAGES && self.failed.is_none() {
            errors.push(format!(
                "{} images found; the first {MAX_STATUS_IMAGES} are catalogued (narrow the tags or lower the limit)",
                self.images.len()
            ));
        }
        status.conditions = vec![ready, scanning, failed];
        status.errors = errors;
        status.observed_generation = generation;
        status
    }
}

/// A condition, its transition time kept when its status did not change.
pub fn condition(
    old: &[SourceCondition],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> SourceCondition {
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(now, |c| c.last_transition_time);
    SourceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(MAX_ERROR_LEN).collect(),
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        registry::{http_client, test_server::serve},
        sources::spec::{AllowedRegistries, ImageSourceSpec, TagSelector},
    };
    use sha2::{Digest as _, Sha256};
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    fn manifest(tag: &str) -> Vec<u8> {
        format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"t":"{tag}"}},"layers":[]}}"#)
            .into_bytes()
    }

    fn digest_of(tag: &str) -> String {
        format!("sha256:{:x}", Sha256::digest(manifest(tag)))
    }

    fn fast() -> Limits {
        Limits {
            retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(10))
                .with_max_times(3),
            resolve_timeout: Duration::from_millis(150),
        }
    }

    fn source(addr: &str, include: &[&str], exclude: &[&str]) -> ValidSource {
        ImageSourceSpec {
            registry: addr.into(),
            repositories: vec!["team/app".into(), "team/other".into()],
            credentials_secret: None,
            tags: TagSelector {
                include: include.iter().map(|s| s.to_string()).collect(),
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            platforms: vec![],
            interval: None,
        }
        .validate(&AllowedRegistries::Any)
        .unwrap()
    }

    /// A registry with tags 1.2.0, 1.2.3, 1.3.0 and latest of team/app; team/other is missing;
    /// the manifest of 1.2.3 never answers in time when `slow` is set. `down` makes every
    /// request fail with 503 (the registry stopped behind a proxy).
    async fn registry(slow: bool, down: Arc<AtomicBool>, hits: Arc<AtomicUsize>) -> String {
        let (addr, _) = serve(move |path, _, _| {
            hits.fetch_add(1, Ordering::SeqCst);
            if down.load(Ordering::SeqCst) {
                return (503, vec![], b"down".to_vec());
            }
            match path {
                "/v2/team/app/tags/list" => (
                    200,
                    vec![("content-type", "application/json".into())],
                    br#"{"name":"team/app","tags":["1.2.0","1.2.3","1.3.0","latest"]}"#.to_vec(),
                ),
                p if p.starts_with("/v2/team/app/manifests/") => {
                    let tag = p.rsplit('/').next().unwrap();
                    if slow && tag == "1.2.3" {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    (
                        200,
                        vec![("docker-content-digest", digest_of(tag))],
                        manifest(tag),
                    )
                }
                _ => (404, vec![], br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#.to_vec()),
            }
        })
        .await;
        addr
    }

    #[tokio::test]
    async fn the_patterns_select_exactly_and_digests_are_resolved() {
        let down = Arc::new(AtomicBool::new(false));
        let addr = registry(false, down, Default::default()).await;
        let http = http_client().unwrap();
        let scan = scan(&http, &source(&addr, &[r"1\..*"], &["1.2.3"]), None, true, fast()).await;
        let tags: Vec<&str> = scan.images.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["1.3.0", "1.2.0"]);
        assert_eq!(scan.images[0].digest, digest_of("1.3.0"));
        assert_eq!(scan.images[0].repository, format!("{addr}/team/app"));
        // team/other is missing: an error of its own, the scan goes on and is not failed.
        assert_eq!(scan.failed, None);
        assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
        assert!(scan.errors[0].contains("team/other"));
        let st = scan.status(None, Some(3), Utc::now());
        assert_eq!((st.tags, st.digests, st.observed_generation), (2, 2, Some(3)));
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "ScannedWithErrors")
        );
    }

    /// Two repositories of 600 tags each: one scan resolves at most the 1000 the status can
    /// list, and says what it left out.
    #[tokio::test]
    async fn a_scan_resolves_no_more_tags_than_the_status_lists() {
        let manifests = Arc::new(AtomicUsize::new(0));
        let counted = manifests.clone();
        let (addr, _) = serve(move |path, _, _| {
            if path.ends_with("/tags/list") {
                let tags: Vec<String> = (0..600).map(|i| format!("1.0.{i}")).collect();
                return (
                    200,
                    vec![("content-type", "application/json".into())],
                    serde_json::to_vec(&serde_json::json!({"name": "x", "tags": tags})).unwrap(),
                );
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let tag = path.rsplit('/').next().unwrap();
            (200, vec![], manifest(tag))
        })
        .await;
        let http = http_client().unwrap();
        let s = scan(&http, &source(&addr, &[], &[]), None, true, fast()).await;
        assert_eq!(manifests.load(Ordering::SeqCst), MAX_STATUS_IMAGES);
        assert_eq!(s.images.len(), MAX_STATUS_IMAGES);
        assert_eq!(s.tags, 1200);
        assert!(
            s.errors
                .iter()
                .any(|e| e.contains("team/other") && e.contains("600 tags selected, 400 resolved")),
            "{:?}",
            s.errors
        );
    }

    /// One tag whose manifest does not answer in time is skipped; the others are resolved.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tag_that_times_out_is_skipped() {
        let addr = registry(true, Default::default(), Default::default()).await;
        let http = http_client().unwrap();
        let s = scan(&http, &source(&addr, &[r"1\..*"], &[]), None, true, fast()).await;
        let tags: Vec<&str> = s.images.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["1.3.0", "1.2.0"]);
        assert!(
            s.errors.iter().any(|e| e.contains(":1.2.3: no answer")),
            "{:?}",
            s.errors
        );
        assert_eq!(s.failed, None);
    }

    #[tokio::test]
    async fn unreachable_is_retried_then_failed_and_keeps_the_last_images() {
        let (down, hits) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let addr = registry(false, down.clone(), hits.clone()).await;
        let http = http_client().unwrap();
        let src = source(&addr, &[], &[]);
        let good = scan(&http, &src, None, true, fast()).await;
        let before = good.status(None, Some(1), Utc::now());
        assert_eq!(before.images.len(), 4);
        down.store(true, Ordering::SeqCst);
        let asked = hits.load(Ordering::SeqCst);
        let bad = scan(&http, &src, None, true, fast()).await;
        // Two repositories, 1 + 3 retries each.
        assert_eq!(hits.load(Ordering::SeqCst) - asked, 8);
        assert_eq!(bad.retries, 6);
        let (reason, message) = bad.failed.clone().unwrap();
        assert_eq!(reason, "RegistryUnreachable");
        assert!(message.contains("503"), "{message}");
        let after = bad.status(Some(&before), Some(1), Utc::now());
        assert_eq!(after.images, before.images, "a failed scan forgets nothing");
        let failed = after.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("True", "RegistryUnreachable")
        );
        // Back again: the next scan is good and Ready again.
        down.store(false, Ordering::SeqCst);
        let again = scan(&http, &src, None, true, fast())
            .await
            .status(Some(&after), Some(1), Utc::now());
        let ready = again.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
    }

    #[tokio::test]
    async fn repositories_the_registry_lacks_are_no_outage() {
        let (addr, _) =
            serve(|_, _, _| (404, vec![], br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#.to_vec())).await;
        let http = http_client().unwrap();
        let s = scan(&http, &source(&addr, &[], &[]), None, true, fast()).await;
        assert_eq!((s.retries, s.failed.map(|f| f.0)), (0, Some("ListingFailed")));
    }

    #[tokio::test]
    async fn denied_fails_with_the_message_at_once() {
        let (addr, _) = serve(|_, _, _| (403, vec![], br#"{"errors":[{"code":"DENIED"}]}"#.to_vec())).await;
        let http = http_client().unwrap();
        let s = scan(
            &http,
            &source(&addr, &[], &[]),
            Some(("u".into(), "p".into())),
            true,
            fast(),
        )
        .await;
        assert_eq!(s.retries, 0);
        let (reason, message) = s.failed.unwrap();
        assert_eq!(reason, "InvalidCredentials");
        assert!(message.contains("403"), "{message}");
    }

    #[tokio::test]
    async fn statuses_are_bounded() {
        let scan = Scan {
            images: (0..MAX_STATUS_IMAGES + 5)
                .map(|i| ScannedImage {
                    repository: "r/x".into(),
                    tag: i.to_string(),
                    digest: format!("sha256:{i:064}"),
                    platforms: vec![],
                })
                .collect(),
            tags: MAX_STATUS_IMAGES + 5,
            errors: vec!["e".repeat(10_000); MAX_STATUS_ERRORS + 3],
            ..Default::default()
        };
        let st = scan.status(None, None, Utc::now());
        assert_eq!(st.images.len(), MAX_STATUS_IMAGES);
        assert_eq!(st.digests as usize, MAX_STATUS_IMAGES + 5);
        assert_eq!(st.errors.len(), MAX_STATUS_ERRORS + 2);
        assert!(st.errors.iter().all(|e| e.chars().count() <= MAX_ERROR_LEN + 120));
        assert!(serde_json::to_vec(&st).unwrap().len() < 400 * 1024);
    }
}
