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
    panic::AssertUnwindSafe,
    sync::Mutex,
    time::Duration,
};

use futures::{StreamExt, stream};
use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    secrets::RegistryAuth,
};
use sbomjob_contract::{
    ImageConfig, ImageRef,
    referrers::{self, Choice, Match, Referrer, Wanted},
    result::{Artifact, ImageReport, ReportOutcome, Tool},
};
use tracing::{debug, info, warn};

use crate::{
    replan::Unit,
    settings::{ForwardedEnv, JobSettings, LookupSettings},
};

/// Per request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A registry and the credential a client sends it.
type ClientKey = (String, Option<(String, String)>);

/// One cycle's lookups: registry clients by credential (a tenant's credential is used for its
/// images only), and the registries that failed.
pub struct Lookup<'a> {
    settings: &'a LookupSettings,
    settings_identity: &'a str,
    clients: Mutex<HashMap<ClientKey, Client>>,
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

impl<'a> Lookup<'a> {
    pub fn new(settings: &'a LookupSettings, settings_identity: &'a str) -> Self {
        Lookup {
            settings,
            settings_identity,
            clients: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
        }
    }

    fn client(&self, target: &Target) -> Result<Client, LookupError> {
        let key = (target.registry.clone(), target.auth.clone());
        if let Some(c) = self.clients.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if self.settings.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(self.settings.insecure.clone())
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("sbomjob-operator/", env!("CARGO_PKG_VERSION")),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        // oci-client panics when the system has no CA certificate at all.
        let client = match std::panic::catch_unwind(AssertUnwindSafe(|| Client::try_from(config))) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(LookupError::Client(format!(": {e}"))),
            Err(_) => return Err(LookupError::Client(String::new())),
        };
        self.clients.lock().expect("lock").insert(key, client.clone());
        Ok(client)
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
        let client = self.client(target)?;
        let subject = Reference::with_digest(
            target.registry.clone(),
            target.repository.clone(),
            target.digest.clone(),
        );
        let auth = match &target.auth {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        let repository = format!("{}/{}", target.registry, target.repository);
        let fail = |why: String| LookupError::Referrers {
            repository: repository.clone(),
            digest: target.digest.clone(),
            why,
        };
        client
            .store_auth_if_needed(subject.resolve_registry(), &auth)
            .await;
        let index = client
            .pull_referrers(&subject, None)
            .await
            .map_err(|e| fail(chain(&e)))?;
        let listed: Vec<Referrer> = index
            .manifests
            .into_iter()
            .take(referrers::MAX_REFERRERS)
            .map(|m| Referrer {
                media_type: m.media_type,
                digest: m.digest,
                size: m.size,
                artifact_type: m.artifact_type,
                annotations: m.annotations.unwrap_or_default().into_iter().collect(),
            })
            .collect();
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
                    let at = Reference::with_digest(
                        target.registry.clone(),
                        target.repository.clone(),
                        r.digest.clone(),
                    );
                    let Ok((body, _)) = client
                        .pull_manifest_raw(&at, &auth, &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE])
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
    let targets: Vec<Option<Target>> = units.iter().map(|u| target(u, attach_to.as_ref())).collect();
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

/// An error and its sources on one line (reqwest puts the cause only in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
    /// anything else 404; every request path is recorded.
    async fn registry(
        routes: Vec<(String, u16, &'static str, String)>,
    ) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use http_body_util::Full;
        use hyper::{body::Bytes, server::conn::http1, service::service_fn};
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (routes, log) = (std::sync::Arc::new(routes), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (routes, log) = (routes.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        log.lock().unwrap().push(path.clone());
                        let (code, kind, body) = routes
                            .iter()
                            .find(|(p, ..)| *p == path)
                            .map(|(_, c, k, b)| (*c, *k, b.clone()))
                            .unwrap_or((
                                404,
                                "application/json",
                                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}"#.into(),
                            ));
                        let response = http::Response::builder()
                            .status(code)
                            .header("content-type", kind)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
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
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.contains(&format!("/v2/team/app/referrers/{tags}")),
            "{seen:?}"
        );
        // Off: nothing is asked.
        let off = LookupSettings {
            enabled: false,
            ..settings
        };
        let before = seen.len();
        let (left, hits) = in_registries(&off, &job, &id, &metrics, vec![mk(&addr, &api)]).await;
        assert_eq!((left.len(), hits.len()), (1, 0));
        assert_eq!(before, seen.len());
    }
}
