//! Step 2b of a cycle, look up: the registry as a cache shared by clusters. Before a digest gets
//! a Job, its registry may already hold an SBOM of it: one a Job with the same settings identity
//! attached (another release, another cluster, or this one before its records were lost), or,
//! when `SBOM_REGISTRY_LOOKUP_ACCEPT` says so, one of an accepted artifact type made by anyone.
//! Such a digest is done: its record is written and its pods are annotated, with no Job.
//!
//! Requests, per image: `GET /v2/<repo>/referrers/<digest>` (the OCI referrers API); a registry
//! without it answers 404, then `GET /v2/<repo>/manifests/<alg>-<hex>` (the referrers tag
//! schema). Only when accepted types are set and the index hides a referrer's type (some
//! registries give the empty config type), that referrer's manifest is read too. Credentials:
//! the pull credential the image's first pod would hand its Job, else none. The decision itself
//! is [`sbomjob_contract::referrers::choose`].
//!
//! A registry that cannot be reached, refuses or answers nonsense costs only a Job: the image is
//! processed as before. A registry that fails once is not asked again in the same cycle, and the
//! whole step is bounded in time, so a stalled registry never holds a cycle back.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use futures::{StreamExt, stream};
use sbomjob_contract::{
    ImageConfig, ImageRef,
    referrers::{self, Choice, Match, Referrer, Wanted},
    result::{Artifact, ImageReport, ReportOutcome, Tool},
};
use tracing::{debug, info, warn};

use crate::{
    registry::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Repository, http_client},
    replan::Unit,
    settings::{ForwardedEnv, JobSettings, LookupSettings},
};

/// The whole step of one cycle: what is not looked up by then gets its Job.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Images looked up at once.
const CONCURRENCY: usize = 8;
/// Manifests read for one image when the index hides their types.
const MAX_MANIFESTS: usize = 8;
/// The job setting that moves attached artifacts to another repository.
pub const ATTACH_REPOSITORY_ENV: &str = "ENTRYPOINT_ATTACH_REPOSITORY";

/// An image whose SBOM is in the registry already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub digest: String,
    /// `registry/repository` the artifact is in.
    pub repository: String,
    pub referrer: Referrer,
    pub matched: Match,
}

impl Hit {
    /// What the record's status says: the artifact, and the package count and tool its
    /// annotations give.
    pub fn report(&self) -> ImageReport {
        ImageReport {
            index: 0,
            digest: self.digest.clone(),
            outcome: ReportOutcome::Succeeded,
            tool: referrers::tool(&self.referrer).map(|(name, version)| Tool {
                name,
                version,
                database: None,
            }),
            packages: referrers::packages(&self.referrer),
            findings: None,
            artifacts: vec![Artifact {
                repository: Some(self.repository.clone()),
                digest: Some(self.referrer.digest.clone()),
                media_type: None,
                artifact_type: referrers::told_type(&self.referrer).map(str::to_owned),
                file: None,
            }],
            platforms: Vec::new(),
        }
    }
}

/// Where the artifacts of an image are and the credential to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub auth: Option<(String, String)>,
}

/// The repository the job attaches to when its settings move artifacts elsewhere
/// (`ENTRYPOINT_ATTACH_REPOSITORY`, a literal); `None`: each image's own.
pub fn attach_repository(job: &JobSettings) -> Option<ImageRef> {
    job.env.iter().find_map(|e| match e {
        ForwardedEnv::Literal { name, value } if name == ATTACH_REPOSITORY_ENV => {
            ImageRef::parse(value.trim())
                .ok()
                .filter(|r| !r.repository.is_empty())
        }
        _ => None,
    })
}

/// Where to look for a unit's SBOM: its first candidate's repository (or the attach
/// repository), with that candidate's credential when it is for that registry. `None` for a bare
/// digest (a local image) or a reference that does not parse.
pub fn target(unit: &Unit, attach_to: Option<&ImageRef>) -> Option<Target> {
    let first: &ImageConfig = unit.candidates.first()?;
    let image = ImageRef::parse(&first.image).ok()?;
    if image.repository.is_empty() {
        return None;
    }
    let (registry, repository) = match attach_to {
        Some(r) => (r.registry.clone(), r.repository.clone()),
        None => (image.registry.clone(), image.repository.clone()),
    };
    let has_login = !first.registry_user.is_empty() || !first.registry_password.is_empty();
    let same_host = sbomjob_contract::normalize_registry(&first.registry_host) == registry;
    let auth =
        (has_login && same_host).then(|| (first.registry_user.clone(), first.registry_password.clone()));
    Some(Target {
        registry,
        repository,
        digest: unit.digest.clone(),
        auth,
    })
}

/// Why one lookup found nothing.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot read the referrers of {digest} in {repository}: {why}")]
    Referrers {
        repository: String,
        digest: String,
        why: String,
    },
    #[error("cannot set up a registry client (no CA certificates?){0}")]
    Client(String),
}

/// One cycle's lookups: one HTTP client, and the registries that failed. Credentials belong to
/// each target (a tenant's credential is sent for its own images only).
pub struct Lookup<'a> {
    settings: &'a LookupSettings,
    settings_identity: &'a str,
    http: Result<reqwest::Client, String>,
    failed: Mutex<HashSet<String>>,
}

/// What a unit's lookup ended with, for the metrics.
#[derive(Debug)]
enum Outcome {
    Found(Hit),
    Absent,
    Skipped,
    Failed(LookupError),
}

/// The referrers an index (API or tag schema) lists.
fn parse_index(body: &[u8]) -> Result<Vec<Referrer>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Referrer>,
    }
    let index: Index = serde_json::from_slice(body).map_err(|e| format!("not an image index: {e}"))?;
    Ok(index
        .manifests
        .into_iter()
        .take(referrers::MAX_REFERRERS)
        .collect())
}

impl<'a> Lookup<'a> {
    pub fn new(settings: &'a LookupSettings, settings_identity: &'a str) -> Self {
        Lookup {
            settings,
            settings_identity,
            http: http_client(),
            failed: Mutex::new(HashSet::new()),
        }
    }

    async fn one(&self, target: &Target) -> Outcome {
        if self.failed.lock().expect("lock").contains(&target.registry) {
            return Outcome::Skipped;
        }
        match self.read(target).await {
            Ok(Some(hit)) => Outcome::Found(hit),
            Ok(None) => Outcome::Absent,
            Err(e) => {
                self.failed.lock().expect("lock").insert(target.registry.clone());
                Outcome::Failed(e)
            }
        }
    }

    async fn read(&self, target: &Target) -> Result<Option<Hit>, LookupError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| LookupError::Client(format!(": {e}")))?;
        let repo = Repository::new(
            http,
            &target.registry,
            &target.repository,
            target.auth.clone(),
            self.settings.insecure.contains(&target.registry),
        );
        let repository = format!("{}/{}", target.registry, target.repository);
        let fail = |why: String| LookupError::Referrers {
            repository: repository.clone(),
            digest: target.digest.clone(),
            why,
        };
        // The referrers API; a registry without it answers 404 (some 400 or 405): the tag schema.
        let (status, body) = repo
            .get(&format!("referrers/{}", target.digest), INDEX_MEDIA_TYPE)
            .await
            .map_err(&fail)?;
        let listed = match status {
            200 => parse_index(&body).map_err(&fail)?,
            400 | 404 | 405 => {
                let tag = target.digest.replacen(':', "-", 1);
                match repo
                    .get(&format!("manifests/{tag}"), INDEX_MEDIA_TYPE)
                    .await
                    .map_err(&fail)?
                {
                    (200, body) => parse_index(&body).map_err(&fail)?,
                    (404, _) => Vec::new(),
                    (other, _) => return Err(fail(format!("HTTP {other} for the tag {tag}"))),
                }
            }
            other => return Err(fail(format!("HTTP {other} for the referrers"))),
        };
        let wanted = Wanted {
            settings_identity: self.settings_identity,
            accepted_types: &self.settings.accepted_types,
        };
        let hit = |referrer, matched| Hit {
            digest: target.digest.clone(),
            repository: repository.clone(),
            referrer,
            matched,
        };
        // What anyone with push rights wrote: a referrer whose report would be out of bounds
        // (a bad digest, huge values) is no hit.
        let valid = |h: Hit| h.report().validate().is_ok().then_some(h);
        match referrers::choose(&listed, &wanted) {
            Choice::Found(r, m) => Ok(valid(hit(r, m))),
            Choice::None => Ok(None),
            Choice::Unsure(unsure) => {
                // The index hid the types: read them from the manifests themselves.
                for mut r in unsure.into_iter().take(MAX_MANIFESTS) {
                    if !sbomjob_contract::image_ref::is_digest(&r.digest) {
                        continue;
                    }
                    let Ok((200, body)) = repo
                        .get(&format!("manifests/{}", r.digest), MANIFEST_MEDIA_TYPE)
                        .await
                    else {
                        continue;
                    };
                    r.artifact_type = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("artifactType")?.as_str().map(str::to_owned));
                    if let Choice::Found(r, m) = referrers::choose(std::slice::from_ref(&r), &wanted) {
                        return Ok(valid(hit(r, m)));
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Looks up every unit's SBOM; returns the units still to process and the hits. Off
/// (`SBOM_REGISTRY_LOOKUP=false`): every unit is returned.
pub async fn in_registries(
    settings: &LookupSettings,
    job: &JobSettings,
    settings_identity: &str,
    metrics: &crate::metrics::Metrics,
    units: Vec<Unit>,
) -> (Vec<Unit>, Vec<Hit>) {
    if !settings.enabled || units.is_empty() {
        return (units, Vec::new());
    }
    let lookup = Lookup::new(settings, settings_identity);
    let attach_to = attach_repository(job);
    // Only repositories whose pushers are trusted (SBOM_REGISTRY_LOOKUP_REPOSITORIES).
    let targets: Vec<Option<Target>> = units
        .iter()
        .map(|u| {
            target(u, attach_to.as_ref())
                .filter(|t| settings.trusts(&format!("{}/{}", t.registry, t.repository)))
        })
        .collect();
    let outcomes: Mutex<HashMap<String, Outcome>> = Mutex::new(HashMap::new());
    // By registry: its first image is asked alone, the others only if that answered, so a
    // registry that is down costs one timeout per cycle. At most CONCURRENCY requests at once.
    let mut by_registry: BTreeMap<&str, Vec<&Target>> = BTreeMap::new();
    for t in targets.iter().flatten() {
        by_registry.entry(t.registry.as_str()).or_default().push(t);
    }
    let permits = tokio::sync::Semaphore::new(CONCURRENCY);
    let ask = |t: &'_ Target| {
        let (lookup, outcomes, permits) = (&lookup, &outcomes, &permits);
        let t = t.clone();
        async move {
            let _permit = permits.acquire().await.expect("never closed");
            let outcome = lookup.one(&t).await;
            outcomes.lock().expect("lock").insert(t.digest.clone(), outcome);
        }
    };
    let work = stream::iter(by_registry.into_values()).for_each_concurrent(None, |group| async move {
        let (first, rest) = group.split_first().expect("groups are not empty");
        ask(first).await;
        stream::iter(rest.iter().copied())
            .for_each_concurrent(CONCURRENCY, ask)
            .await;
    });
    if tokio::time::timeout(STEP_TIMEOUT, work).await.is_err() {
        warn!(
            timeout = ?STEP_TIMEOUT,
            "registry lookups took too long; the images not looked up yet get Jobs"
        );
    }
    let mut outcomes = outcomes.into_inner().expect("lock");
    let (mut left, mut hits, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for unit in units {
        match outcomes.remove(&unit.digest) {
            Some(Outcome::Found(hit)) => {
                metrics.registry_lookup("found");
                debug!(digest = %hit.digest, artifact = %hit.referrer.digest, matched = ?hit.matched, "SBOM found in the registry");
                hits.push(hit);
                continue;
            }
            Some(Outcome::Absent) => metrics.registry_lookup("absent"),
            Some(Outcome::Failed(e)) => {
                metrics.registry_lookup("error");
                failed.push(e);
            }
            // Skipped, not reached in time, or nothing to look up (a local image).
            Some(Outcome::Skipped) | None => metrics.registry_lookup("skipped"),
        }
        left.push(unit);
    }
    for e in &failed {
        // One line per registry: a failing registry is asked once per cycle.
        warn!(error = %e, "registry lookup failed; its images get Jobs as before");
    }
    if !hits.is_empty() {
        info!(
            images = hits.len(),
            "SBOMs found in the registry: no Job for these images"
        );
    }
    (left, hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MAX_BODY, parse_challenge, test_server::serve};

    fn unit(image: &str, host: &str, user: &str) -> Unit {
        let config = ImageConfig {
            registry_host: host.into(),
            registry_user: user.into(),
            registry_password: if user.is_empty() { "" } else { "pw" }.into(),
            image: image.into(),
            ..Default::default()
        };
        Unit::new(
            "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            vec![config],
        )
    }

    #[test]
    fn the_target_is_the_images_repository_with_its_own_credential_only() {
        let t = target(
            &unit("10.0.0.1:5000/team/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "10.0.0.1:5000", "u"),
            None,
        )
        .unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("10.0.0.1:5000", "team/app")
        );
        assert_eq!(t.auth, Some(("u".into(), "pw".into())));
        // A credential for another registry is not sent.
        let t = target(
            &unit(
                "ghcr.io/team/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "docker.io",
                "u",
            ),
            None,
        )
        .unwrap();
        assert_eq!(t.auth, None);
        // Artifacts moved elsewhere by ENTRYPOINT_ATTACH_REPOSITORY: looked up there.
        let elsewhere = ImageRef::parse("registry.example/sboms").unwrap();
        let t = target(
            &unit(
                "ghcr.io/team/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "ghcr.io",
                "u",
            ),
            Some(&elsewhere),
        )
        .unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str(), t.auth.clone()),
            ("registry.example", "sboms", None)
        );
        // A local image (a bare digest) has no registry.
        assert_eq!(
            target(
                &unit(
                    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    "",
                    ""
                ),
                None
            ),
            None
        );
    }

    #[test]
    fn a_hit_reports_what_the_artifact_says() {
        let hit = Hit {
            digest: "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            repository: "r/x".into(),
            referrer: Referrer {
                digest: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
                artifact_type: Some("application/spdx+json".into()),
                annotations: [
                    (referrers::PACKAGES_ANNOTATION.to_string(), "12".to_string()),
                    (referrers::TOOL_ANNOTATION.to_string(), "syft 1.18.1".to_string()),
                ]
                .into(),
                ..Default::default()
            },
            matched: Match::SameSettings,
        };
        let r = hit.report();
        assert_eq!(r.packages, Some(12));
        assert_eq!(r.tool.as_ref().and_then(|t| t.version.as_deref()), Some("1.18.1"));
        assert_eq!(
            r.artifacts[0].reference().as_deref(),
            Some("r/x@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
        );
        assert!(r.validate().is_ok());
    }

    /// A registry on loopback: `GET path` answers from `routes` (status, content type, body),
    /// anything else 404.
    async fn registry(
        routes: Vec<(String, u16, &'static str, String)>,
    ) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        serve(move |path, _, _| {
            routes
                .iter()
                .find(|(p, ..)| *p == path)
                .map(|(_, c, k, b)| (*c, vec![("content-type", k.to_string())], b.clone().into_bytes()))
                .unwrap_or((
                    404,
                    vec![("content-type", "application/json".into())],
                    br#"{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}"#.to_vec(),
                ))
        })
        .await
    }

    fn index(identity: &str, packages: &str) -> String {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", "c".repeat(64)),
                "size": 500,
                "artifactType": "application/spdx+json",
                "annotations": {
                    referrers::SETTINGS_IDENTITY_ANNOTATION: identity,
                    referrers::PACKAGES_ANNOTATION: packages,
                    referrers::TOOL_ANNOTATION: "syft 1.18.1"
                }
            }]
        })
        .to_string()
    }

    /// Through the referrers API and through the tag schema, ours under the same settings is a
    /// hit and another identity's is not; a registry that fails is asked once per cycle.
    #[tokio::test]
    async fn lookups_find_ours_by_api_and_by_tag_schema_and_give_up_on_a_dead_registry() {
        let id = "e".repeat(64);
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let (api, tags, absent) = (d('1'), d('2'), d('3'));
        const INDEX: &str = "application/vnd.oci.image.index.v1+json";
        let (addr, seen) = registry(vec![
            ("/v2/".into(), 200, "application/json", "{}".into()),
            (
                format!("/v2/team/app/referrers/{api}"),
                200,
                INDEX,
                index(&id, "41"),
            ),
            // No referrers API for these (404): the tag schema answers.
            (
                format!("/v2/team/app/manifests/{}", tags.replace(':', "-")),
                200,
                INDEX,
                index(&id, "7"),
            ),
            (
                format!("/v2/team/app/manifests/{}", absent.replace(':', "-")),
                200,
                INDEX,
                index(&"f".repeat(64), "1"),
            ),
        ])
        .await;
        // Nothing listens on the dead registry's port.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let settings = LookupSettings {
            enabled: true,
            accepted_types: vec![],
            insecure: vec![addr.clone(), dead.clone()],
            repositories: vec![],
        };
        let mk = |host: &str, digest: &str| {
            let mut u = unit(&format!("{host}/team/app@{digest}"), host, "");
            u.digest = digest.to_string();
            u
        };
        let units = vec![
            mk(&addr, &api),
            mk(&addr, &tags),
            mk(&addr, &absent),
            mk(&dead, &d('4')),
            mk(&dead, &d('5')),
        ];
        let metrics = crate::metrics::Metrics::new();
        let job = crate::settings::Settings::from_vars(vec![("SBOM_JOB_IMAGE".into(), "j:1".into())])
            .unwrap()
            .job;
        let (left, hits) = in_registries(&settings, &job, &id, &metrics, units).await;
        let found: Vec<(&str, Option<u64>)> = hits
            .iter()
            .map(|h| (h.digest.as_str(), referrers::packages(&h.referrer)))
            .collect();
        assert_eq!(found, [(api.as_str(), Some(41)), (tags.as_str(), Some(7))]);
        assert_eq!(hits[0].repository, format!("{addr}/team/app"));
        let left: Vec<&str> = left.iter().map(|u| u.digest.as_str()).collect();
        assert_eq!(left, [absent.as_str(), d('4').as_str(), d('5').as_str()]);
        let text = metrics.encode();
        for (result, n) in [("found", 2), ("absent", 1), ("error", 1), ("skipped", 1)] {
            assert!(
                text.contains(&format!(
                    "sbomjob_registry_lookups_total{{result=\"{result}\"}} {n}"
                )),
                "{result} {n}: {text}"
            );
        }
        let asked = || seen.lock().unwrap().clone();
        assert!(
            asked().contains(&format!("/v2/team/app/referrers/{tags}")),
            "{:?}",
            asked()
        );
        // A repository not among the trusted ones: not asked, the image gets its Job.
        let elsewhere = LookupSettings {
            repositories: vec!["other.example/team".into()],
            ..settings.clone()
        };
        let before = asked().len();
        let (left, hits) = in_registries(&elsewhere, &job, &id, &metrics, vec![mk(&addr, &api)]).await;
        assert_eq!((left.len(), hits.len()), (1, 0));
        assert_eq!(before, asked().len());
        // Off: nothing is asked.
        let off = LookupSettings {
            enabled: false,
            ..settings
        };
        let (left, hits) = in_registries(&off, &job, &id, &metrics, vec![mk(&addr, &api)]).await;
        assert_eq!((left.len(), hits.len()), (1, 0));
        assert_eq!(before, asked().len());
    }

    #[test]
    fn challenges_parse_with_commas_in_quotes() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="x""#);
        assert_eq!((scheme.as_str(), p["realm"].as_str()), ("Basic", "x"));
        assert!(parse_challenge("").1.is_empty());
    }

    /// A registry that wants a token: the pull credential of the image's pod gets one from the
    /// challenge's realm, and the referrers are read with it. A registry that answers more than
    /// [`MAX_BODY`] fails the lookup (the image gets a Job) and is not asked again in the cycle.
    #[tokio::test]
    async fn a_token_is_fetched_with_the_pods_credential_and_huge_answers_are_refused() {
        let id = "e".repeat(64);
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let (ours, huge, after) = (d('1'), d('2'), d('3'));
        let realm = std::sync::Arc::new(Mutex::new(String::new()));
        let (realm_in, ours_in, huge_in) = (realm.clone(), ours.clone(), huge.clone());
        let idx = index(&id, "5");
        let (addr, seen) = serve(move |path, query, auth| {
            let json =
                |code, body: Vec<u8>| (code, vec![("content-type", "application/json".to_string())], body);
            if path == "/token" {
                // user:pw, as the pod's pull secret says.
                return if auth == Some("Basic dXNlcjpwdw==")
                    && query.contains("scope=repository%3Ateam%2Fapp%3Apull")
                {
                    json(200, br#"{"token":"t0k"}"#.to_vec())
                } else {
                    json(401, b"{}".to_vec())
                };
            }
            if auth != Some("Bearer t0k") {
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="test",scope="repository:team/app:pull""#,
                    realm_in.lock().unwrap()
                );
                return (401, vec![("www-authenticate", challenge)], b"{}".to_vec());
            }
            if path == format!("/v2/team/app/referrers/{ours_in}") {
                return json(200, idx.clone().into_bytes());
            }
            if path == format!("/v2/team/app/referrers/{huge_in}") {
                return json(200, vec![b' '; MAX_BODY + 1]);
            }
            json(404, b"{}".to_vec())
        })
        .await;
        *realm.lock().unwrap() = addr.clone();
        let settings = LookupSettings {
            enabled: true,
            accepted_types: vec![],
            insecure: vec![addr.clone()],
            repositories: vec![],
        };
        let mk = |digest: &str| {
            let mut u = unit(&format!("{addr}/team/app@{digest}"), &addr, "user");
            u.digest = digest.to_string();
            u
        };
        let metrics = crate::metrics::Metrics::new();
        let job = crate::settings::Settings::from_vars(vec![("SBOM_JOB_IMAGE".into(), "j:1".into())])
            .unwrap()
            .job;
        let (left, hits) = in_registries(&settings, &job, &id, &metrics, vec![mk(&ours)]).await;
        assert_eq!((left.len(), hits.len()), (0, 1), "{:?}", seen.lock().unwrap());
        assert_eq!(referrers::packages(&hits[0].referrer), Some(5));
        // The huge answer: an error, and the next image of that registry is not asked.
        let (left, hits) = in_registries(&settings, &job, &id, &metrics, vec![mk(&huge), mk(&after)]).await;
        assert_eq!((left.len(), hits.len()), (2, 0));
        let text = metrics.encode();
        assert!(
            text.contains("sbomjob_registry_lookups_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sbomjob_registry_lookups_total{result=\"skipped\"} 1"),
            "{text}"
        );
        assert!(
            !seen.lock().unwrap().iter().any(|p| p.contains(&after[7..])),
            "the failed registry was asked again"
        );
    }
}
