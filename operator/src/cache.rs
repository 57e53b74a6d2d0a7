//! The digest cache: one cluster-scoped `ImageRecord` (`sbomjob.io/v1alpha1`) per processed
//! digest, so a new pod running a known digest is annotated without a Job.
//!
//! A record says which job image, with which settings, processed the digest, when, in which Job,
//! and with what result. It counts as done ([`lookup`] → [`CacheDecision::Hit`]) while it is
//! unexpired (`SBOM_CACHE_TTL`, default 72 h), succeeded, and was made by the same job image with
//! the same settings ([`JobIdentity`]). Records are collected when they expire or when no watched
//! pod has run their digest for `SBOM_CACHE_GRACE` ([`sweep`]).
//!
//! Pure core: [`name_for`], [`JobIdentity`], [`lookup`], [`record_for`], [`mark_running`],
//! [`to_collect`], [`sweep`]. Shell: [`load`], [`write`] (server-side apply, field manager
//! `sbomjob`, forced), [`delete`], [`installed`].
//!
//! Everything is in `spec` (no status subresource): the operator is the only writer, a record is
//! observed data rather than desired state, and one apply writes it whole. `notRunningSince` is
//! the one field that changes without a Job: set when the digest is first seen not running,
//! removed when it runs again, so records are written on those transitions only, not every cycle.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, stream};
use kube::{
    Api, Client, CustomResource, CustomResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::{
    Context as _, Result,
    backoff::Failure,
    is_not_found,
    objects::{MANAGED_BY, MANAGED_BY_LABEL},
    settings::{ForwardedEnv, JobSettings},
};

/// The field manager of every record write.
pub const FIELD_MANAGER: &str = "sbomjob";
/// Writes and deletes in flight at once.
const CONCURRENCY: usize = 8;
/// Records per list page.
const PAGE: u32 = 500;
/// Far enough: a TTL beyond this is treated as this.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The processing of one digest: by which job image and settings, when, in which Job, and how it
/// ended. While the record is fresh and succeeded, new pods running the digest are annotated
/// without a Job.
// NOTE: clippy takes the repeated `type_ = ...` of the `printcolumn(...)` lists for duplicated
// attributes; they are separate columns. The name is the digest already (`sha256-<hex>`), so the
// Digest column shows with `-o wide` only; Expires is a string because kubectl prints future
// `date` values as `<invalid>`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "sbomjob.io",
    version = "v1alpha1",
    kind = "ImageRecord",
    plural = "imagerecords",
    shortname = "imgrec",
    category = "sbomjob",
    derive = "PartialEq",
    doc = "A digest sbomjob processed: the job image and settings that did it, when, in which Job, and the result.",
    printcolumn(name = "Digest", type_ = "string", json_path = ".spec.digest"),
    printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repositories[0]"),
    printcolumn(
        name = "Processed",
        type_ = "date",
        json_path = ".spec.processedAt",
        description = "When the Job that processed the digest ended"
    ),
    printcolumn(name = "Result", type_ = "string", json_path = ".spec.result"),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".spec.failure.attempts",
        priority = "1"
    ),
    printcolumn(
        name = "Next-Attempt",
        type_ = "string",
        json_path = ".spec.failure.nextAttempt",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".spec.expiresAt",
        priority = "1"
    ),
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.job", priority = "1"),
    printcolumn(
        name = "Job-Image",
        type_ = "string",
        json_path = ".spec.jobImage.reference",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecordSpec {
    /// The image digest, `sha256:<hex>`.
    pub digest: String,
    /// Repositories the digest was seen running from (`registry/path`, no tag or digest), sorted.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The job image that processed the digest.
    pub job_image: JobImage,
    /// SHA-256 (hex) of the settings that change results: the job image and every variable
    /// forwarded to the job (the entrypoint command among them).
    pub settings_hash: String,
    /// When the Job that processed the digest ended.
    pub processed_at: DateTime<Utc>,
    /// After this the digest is processed again.
    pub expires_at: DateTime<Utc>,
    /// The Job (in the operator's namespace) that processed the digest.
    pub job: String,
    /// How the Job ended; only `Succeeded` spares a later Job.
    pub result: RecordResult,
    /// Since when no pod the operator watches runs the digest; absent while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_running_since: Option<DateTime<Utc>>,
    /// Set when the digest failed alone: how often in a row, why, and when it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RecordFailure>,
}

/// The back-off of a digest that failed alone in its Job ([`crate::backoff`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordFailure {
    /// Failed attempts in a row.
    pub attempts: u32,
    /// Why the last attempt failed (the Job's reason and how the tool ended), at most 512 bytes.
    pub reason: String,
    /// No Job for the digest before this.
    pub next_attempt: DateTime<Utc>,
}

impl ImageRecord {
    /// The failure the record holds, as the back-off book keeps it.
    pub fn failure(&self) -> Option<Failure> {
        let f = self.spec.failure.as_ref()?;
        (self.spec.result == RecordResult::Failed).then(|| Failure {
            attempts: f.attempts,
            reason: f.reason.clone(),
            next_attempt: f.next_attempt,
            settings_hash: self.spec.settings_hash.clone(),
        })
    }
}

/// The record of a digest that failed alone: kept until its next attempt and a TTL after it,
/// so the count of attempts survives restarts and the sweep.
pub fn failure_record(
    digest: &str,
    repositories: Vec<String>,
    identity: &JobIdentity,
    job_name: &str,
    failure: &Failure,
    ttl: Duration,
) -> Option<ImageRecord> {
    let mut record = record_for(
        digest,
        repositories,
        identity,
        job_name,
        RecordResult::Failed,
        Utc::now(),
        ttl,
    )?;
    let ttl = chrono::Duration::from_std(ttl.min(MAX_TTL)).expect("ten years fit");
    record.spec.expires_at = failure
        .next_attempt
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .max(record.spec.expires_at);
    record.spec.failure = Some(RecordFailure {
        attempts: failure.attempts,
        reason: failure.reason.clone(),
        next_attempt: failure.next_attempt,
    });
    Some(record)
}

/// A job image: the reference the Jobs use and, when known, the digest it resolved to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobImage {
    /// `SBOM_JOB_IMAGE`, as configured.
    pub reference: String,
    /// The digest the job pod ran (`sha256:<hex>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// How the Job that processed a digest ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RecordResult {
    Succeeded,
    Failed,
}

/// What a cycle's results depend on, compared with each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    /// `SBOM_JOB_IMAGE`.
    pub image: String,
    /// The digest the job image resolves to, when known (e.g. from a job pod's `imageID`).
    pub image_digest: Option<String>,
    /// [`settings_hash`] of the job settings.
    pub settings_hash: String,
}

impl JobIdentity {
    /// The identity of Jobs built from these settings; the job image's digest is unknown.
    pub fn from_settings(job: &JobSettings) -> Self {
        JobIdentity {
            image: job.image.clone(),
            image_digest: None,
            settings_hash: settings_hash(job),
        }
    }

    /// The same identity with the job image's digest, once known.
    pub fn with_image_digest(self, digest: Option<String>) -> Self {
        JobIdentity {
            image_digest: digest,
            ..self
        }
    }
}

/// SHA-256 (lower-case hex) of what changes a job's results: the job image and every forwarded
/// variable, literal values and Secret references alike (the entrypoint command is one of them).
/// Other Job settings (resources, timeout, scheduling) do not change results and are left out.
pub fn settings_hash(job: &JobSettings) -> String {
    let env: Vec<Vec<&str>> = job
        .env
        .iter()
        .map(|e| match e {
            ForwardedEnv::Literal { name, value } => vec!["literal", name, value],
            ForwardedEnv::SecretRef { name, secret, key } => vec!["secret", name, secret, key],
        })
        .collect();
    // A JSON array: unambiguous whatever the values hold; "v1" names this layout.
    let input = serde_json::to_vec(&("v1", &job.image, env)).expect("strings serialize");
    format!("{:x}", Sha256::digest(&input))
}

/// The record name of a digest: `sha256:<hex>` → `sha256-<hex>` (lower case). `None` for a
/// value that cannot make a valid object name.
pub fn name_for(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    let ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && digest.len() <= 253;
    ok.then(|| format!("{algorithm}-{}", hex.to_ascii_lowercase()))
}

/// The repository of an image reference: `registry/path@sha256:…` or `registry/path:tag` →
/// `registry/path`; `None` for a bare digest (a local image).
pub fn repository_of(reference: &str) -> Option<&str> {
    let without_digest = reference.split_once('@').map_or(reference, |(r, _)| r);
    // A `:` after the last `/` is a tag; one before it is a registry port.
    let repo = match without_digest.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => without_digest,
    };
    (!repo.is_empty() && !repo.starts_with("sha256")).then_some(repo)
}

/// Whether a digest needs a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDecision {
    /// Processed by the same job image and settings, successfully, and not expired: annotate
    /// the pods without a Job.
    Hit,
    Miss(MissReason),
}

/// Why a digest needs a Job despite the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    NoRecord,
    /// The last Job that processed it failed.
    Failed,
    Expired,
    /// Another job image (reference, or digest when both are known) processed it.
    OtherJobImage,
    /// Same job image, other forwarded settings.
    SettingsChanged,
}

impl MissReason {
    /// A stable lower-case name for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            MissReason::NoRecord => "no_record",
            MissReason::Failed => "failed",
            MissReason::Expired => "expired",
            MissReason::OtherJobImage => "other_job_image",
            MissReason::SettingsChanged => "settings_changed",
        }
    }
}

/// Decides whether the record of a digest spares it a Job.
pub fn lookup(record: Option<&ImageRecord>, identity: &JobIdentity, now: DateTime<Utc>) -> CacheDecision {
    let Some(spec) = record.map(|r| &r.spec) else {
        return CacheDecision::Miss(MissReason::NoRecord);
    };
    let other_digest = matches!(
        (&spec.job_image.digest, &identity.image_digest),
        (Some(a), Some(b)) if a != b
    );
    let reason = if spec.result != RecordResult::Succeeded {
        MissReason::Failed
    } else if now >= spec.expires_at {
        MissReason::Expired
    } else if spec.job_image.reference != identity.image || other_digest {
        MissReason::OtherJobImage
    } else if spec.settings_hash != identity.settings_hash {
        MissReason::SettingsChanged
    } else {
        return CacheDecision::Hit;
    };
    CacheDecision::Miss(reason)
}

/// Records by digest, for [`lookup`].
pub fn by_digest(records: &[ImageRecord]) -> BTreeMap<&str, &ImageRecord> {
    records.iter().map(|r| (r.spec.digest.as_str(), r)).collect()
}

/// The record of a digest a Job just processed (`None` when the digest makes no valid name).
/// `now` is when the Job ended; the record expires `ttl` later.
pub fn record_for(
    digest: &str,
    repositories: Vec<String>,
    identity: &JobIdentity,
    job_name: &str,
    result: RecordResult,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Option<ImageRecord> {
    let name = name_for(digest)?;
    let now = now.trunc_subsecs(0);
    let ttl = chrono::Duration::from_std(ttl.min(MAX_TTL)).expect("ten years fit");
    let mut repositories = repositories;
    repositories.sort();
    repositories.dedup();
    Some(with_meta(
        &name,
        ImageRecordSpec {
            digest: digest.to_string(),
            repositories,
            job_image: JobImage {
                reference: identity.image.clone(),
                digest: identity.image_digest.clone(),
            },
            settings_hash: identity.settings_hash.clone(),
            processed_at: now,
            expires_at: now + ttl,
            job: job_name.to_string(),
            result,
            not_running_since: None,
            failure: None,
        },
    ))
}

/// A record with only what the operator owns in its metadata: what [`write`] applies.
fn with_meta(name: &str, spec: ImageRecordSpec) -> ImageRecord {
    let mut record = ImageRecord::new(name, spec);
    record.metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into()),
        ..Default::default()
    };
    record
}

/// The records whose `notRunningSince` must change: set to `now` when none of `running` (the
/// digests watched pods run now) is theirs, removed when one is again. Write them with [`write`].
pub fn mark_running(
    records: &[ImageRecord],
    running: &HashSet<&str>,
    now: DateTime<Utc>,
) -> Vec<ImageRecord> {
    records
        .iter()
        .filter_map(|r| {
            let is_running = running.contains(r.spec.digest.as_str());
            let since = match (is_running, r.spec.not_running_since) {
                (true, Some(_)) => None,
                (false, None) => Some(now.trunc_subsecs(0)),
                _ => return None,
            };
            let mut record = r.clone();
            record.spec.not_running_since = since;
            Some(record)
        })
        .collect()
}

/// Names of the records to delete: expired ones, and those whose digest no watched pod has run
/// for `grace` (per `notRunningSince`; a record not yet marked is marked first by
/// [`mark_running`]).
pub fn to_collect(
    records: &[ImageRecord],
    running: &HashSet<&str>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Vec<String> {
    let grace = chrono::Duration::from_std(grace.min(MAX_TTL)).expect("ten years fit");
    records
        .iter()
        .filter(|r| {
            let spec = &r.spec;
            let gone = !running.contains(spec.digest.as_str())
                && spec.not_running_since.is_some_and(|since| now - since >= grace);
            now >= spec.expires_at || gone
        })
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// What a cycle does to the records it loaded: delete these, then write those.
#[derive(Debug, Default, PartialEq)]
pub struct Sweep {
    pub delete: Vec<String>,
    pub update: Vec<ImageRecord>,
}

/// [`to_collect`] and [`mark_running`] together; deleted records are not also updated.
pub fn sweep(records: &[ImageRecord], running: &HashSet<&str>, now: DateTime<Utc>, grace: Duration) -> Sweep {
    let delete = to_collect(records, running, now, grace);
    let doomed: HashSet<&str> = delete.iter().map(String::as_str).collect();
    let update = mark_running(records, running, now)
        .into_iter()
        .filter(|r| !r.metadata.name.as_deref().is_some_and(|n| doomed.contains(n)))
        .collect();
    Sweep { delete, update }
}

/// Whether the ImageRecord CRD is installed (a list of one succeeds). The operator runs without
/// the cache when it is not.
pub async fn installed(client: &Client) -> Result<bool> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).context(|| format!("looking for the {} CRD", ImageRecord::crd_name())),
    }
}

/// Every record, page by page.
pub async fn load(client: &Client) -> Result<Vec<ImageRecord>> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let mut records = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api
            .list(&params)
            .await
            .context(|| "listing ImageRecords".into())?;
        records.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    debug!(records = records.len(), "image records loaded");
    Ok(records)
}

/// Applies the records (server-side apply, field manager `sbomjob`, forced); only their name,
/// the managed-by label and the spec are sent. Fields the operator set before and left out now
/// (such as `notRunningSince`) are removed. Every record is tried; the error names the first
/// failure and how many failed.
pub async fn write(client: &Client, records: &[ImageRecord]) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(records)
        .filter_map(|r| std::future::ready(r.metadata.name.clone().map(|name| (name, r.spec.clone()))))
        .map(|(name, spec)| {
            let (api, params) = (&api, &params);
            async move {
                let body = with_meta(&name, spec);
                let result = api.patch(&name, params, &Patch::Apply(&body)).await.map(drop);
                (name, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    first_failure(results, records.len(), "writing")
}

/// Deletes records by name; one already gone is fine.
pub async fn delete(client: &Client, names: &[String]) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(names)
        .map(|name| {
            let api = &api;
            async move {
                let result = match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                };
                (name.clone(), result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if !names.is_empty() {
        info!(records = names.len(), "image records collected");
    }
    first_failure(results, names.len(), "deleting")
}

fn first_failure(
    results: Vec<(String, std::result::Result<(), kube::Error>)>,
    total: usize,
    verb: &str,
) -> Result<()> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let mut first = None;
    // A few named failures tell what went wrong; a missing CRD or RBAC rule fails them all.
    for (name, e) in results
        .into_iter()
        .filter_map(|(n, r)| Some((n, r.err()?)))
        .take(3)
    {
        warn!(record = %name, error = %e, "{verb} ImageRecord failed");
        first.get_or_insert((name, e));
    }
    match first {
        None => Ok(()),
        Some((name, e)) => {
            Err(e).context(|| format!("{verb} ImageRecord {name} ({failed} of {total} failed)"))
        }
    }
}

/// The CRD as YAML, as committed at `charts/sbomjob/crds/imagerecords.yaml`.
pub fn crd_yaml() -> String {
    let yaml = serde_saphyr::to_string(&ImageRecord::crd()).expect("the CRD serializes");
    format!(
        "# Generated by `cargo run -p sbomjob-operator --bin crdgen` from operator/src/cache.rs: do not edit.\n{yaml}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    fn job_settings(image: &str, env: &[(&str, &str)]) -> JobSettings {
        JobSettings {
            image: image.into(),
            env: env
                .iter()
                .map(|(n, v)| ForwardedEnv::Literal {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn identity() -> JobIdentity {
        JobIdentity::from_settings(&job_settings(
            "reg/sbomjob-syft:1",
            &[("ENTRYPOINT_COMMAND", "syft {image}")],
        ))
    }

    const TTL: Duration = Duration::from_secs(72 * 3600);
    const GRACE: Duration = Duration::from_secs(3600);

    fn record(digest: &str, result: RecordResult, at: DateTime<Utc>) -> ImageRecord {
        record_for(
            digest,
            vec!["reg/app".into()],
            &identity(),
            "sbomjob-x-0",
            result,
            at,
            TTL,
        )
        .unwrap()
    }

    #[test]
    fn names_from_digests() {
        assert_eq!(
            name_for(D1).as_deref(),
            Some("sha256-1111111111111111111111111111111111111111111111111111111111111111")
        );
        assert_eq!(name_for(D1).unwrap().len(), 71);
        assert_eq!(name_for("sha256:ABCDEF").as_deref(), Some("sha256-abcdef"));
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:xyz",
            "sha_256:abc",
        ] {
            assert_eq!(name_for(bad), None, "{bad}");
        }
    }

    #[test]
    fn repositories_of_references() {
        assert_eq!(
            repository_of(&format!("reg.io:5000/team/app@{D1}")),
            Some("reg.io:5000/team/app")
        );
        assert_eq!(
            repository_of("reg.io:5000/team/app:1.2"),
            Some("reg.io:5000/team/app")
        );
        assert_eq!(repository_of("nginx"), Some("nginx"));
        assert_eq!(repository_of(D1), None);
    }

    #[test]
    fn settings_hash_follows_what_changes_results() {
        let base = job_settings("reg/job:1", &[("A", "1"), ("ENTRYPOINT_COMMAND", "syft {image}")]);
        let h = settings_hash(&base);
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(h, settings_hash(&base.clone()), "stable");

        let mut other_command = base.clone();
        other_command.env[1] = ForwardedEnv::Literal {
            name: "ENTRYPOINT_COMMAND".into(),
            value: "syft -q {image}".into(),
        };
        let mut secret = base.clone();
        secret.env[0] = ForwardedEnv::SecretRef {
            name: "A".into(),
            secret: "s".into(),
            key: "1".into(),
        };
        // Values that would collide if names and values were simply concatenated.
        let shifted = job_settings("reg/job:1", &[("A1", ""), ("ENTRYPOINT_COMMAND", "syft {image}")]);
        let mut other_image = base.clone();
        other_image.image = "reg/job:2".into();
        let mut unrelated = base.clone();
        unrelated.timeout = Duration::from_secs(60);
        unrelated.max_images = 3;
        for (what, changed) in [
            ("command", &other_command),
            ("secret ref", &secret),
            ("name/value split", &shifted),
            ("image", &other_image),
        ] {
            assert_ne!(settings_hash(changed), h, "{what}");
        }
        assert_eq!(
            settings_hash(&unrelated),
            h,
            "timeout and sharding do not change results"
        );
    }

    #[test]
    fn record_contents() {
        let identity = identity().with_image_digest(Some(D2.into()));
        let r = record_for(
            D1,
            vec!["reg/b".into(), "reg/a".into(), "reg/b".into()],
            &identity,
            "sbomjob-20260101-000000-abcd-0",
            RecordResult::Succeeded,
            t(0) + chrono::Duration::milliseconds(250),
            TTL,
        )
        .unwrap();
        assert_eq!(r.metadata.name.as_deref(), name_for(D1).as_deref());
        assert_eq!(r.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(r.spec.repositories, ["reg/a", "reg/b"]);
        assert_eq!(r.spec.job_image.digest.as_deref(), Some(D2));
        assert_eq!(r.spec.processed_at, t(0), "whole seconds");
        assert_eq!(r.spec.expires_at, t(72));
        assert_eq!(r.spec.settings_hash, identity.settings_hash);
        assert_eq!(
            record_for("latest", vec![], &identity, "j", RecordResult::Failed, t(0), TTL),
            None
        );

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["apiVersion"], "sbomjob.io/v1alpha1");
        assert_eq!(json["kind"], "ImageRecord");
        assert_eq!(json["spec"]["jobImage"]["reference"], "reg/sbomjob-syft:1");
        assert_eq!(json["spec"]["processedAt"], "2027-01-15T08:00:00Z");
        assert_eq!(json["spec"]["result"], "Succeeded");
        assert!(json["spec"].get("notRunningSince").is_none());
        let back: ImageRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn lookup_decisions() {
        let id = identity();
        let fresh = record(D1, RecordResult::Succeeded, t(0));
        let miss = CacheDecision::Miss;
        assert_eq!(lookup(None, &id, t(1)), miss(MissReason::NoRecord));
        assert_eq!(lookup(Some(&fresh), &id, t(1)), CacheDecision::Hit);
        assert_eq!(lookup(Some(&fresh), &id, t(71)), CacheDecision::Hit);
        assert_eq!(lookup(Some(&fresh), &id, t(72)), miss(MissReason::Expired));
        assert_eq!(
            lookup(Some(&record(D1, RecordResult::Failed, t(0))), &id, t(1)),
            miss(MissReason::Failed)
        );

        let other_image = JobIdentity {
            image: "reg/sbomjob-trivy:1".into(),
            ..id.clone()
        };
        assert_eq!(
            lookup(Some(&fresh), &other_image, t(1)),
            miss(MissReason::OtherJobImage)
        );
        let settings_changed = JobIdentity::from_settings(&job_settings(
            "reg/sbomjob-syft:1",
            &[("ENTRYPOINT_COMMAND", "syft -o cyclonedx-json {image}")],
        ));
        assert_eq!(
            lookup(Some(&fresh), &settings_changed, t(1)),
            miss(MissReason::SettingsChanged)
        );

        // The job image's digest counts only when both sides know it.
        let pinned = record_for(
            D1,
            vec![],
            &id.clone().with_image_digest(Some(D2.into())),
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        assert_eq!(lookup(Some(&pinned), &id, t(1)), CacheDecision::Hit);
        assert_eq!(
            lookup(
                Some(&pinned),
                &id.clone().with_image_digest(Some(D2.into())),
                t(1)
            ),
            CacheDecision::Hit
        );
        assert_eq!(
            lookup(
                Some(&pinned),
                &id.clone().with_image_digest(Some(D1.into())),
                t(1)
            ),
            miss(MissReason::OtherJobImage)
        );
        assert_eq!(MissReason::SettingsChanged.as_str(), "settings_changed");
    }

    #[test]
    fn by_digest_indexes_records() {
        let records = [
            record(D1, RecordResult::Succeeded, t(0)),
            record(D2, RecordResult::Failed, t(0)),
        ];
        let index = by_digest(&records);
        assert_eq!(index[D2].spec.result, RecordResult::Failed);
        assert!(!index.contains_key("sha256:3"));
    }

    #[test]
    fn running_marks_change_only_on_transitions() {
        let records = [
            record(D1, RecordResult::Succeeded, t(0)),
            record(D2, RecordResult::Succeeded, t(0)),
        ];
        let running: HashSet<&str> = [D1].into();
        let marked = mark_running(&records, &running, t(1));
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].spec.digest, D2);
        assert_eq!(marked[0].spec.not_running_since, Some(t(1)));

        // Already marked: nothing to write. Running again: the mark goes.
        let records = [records[0].clone(), marked[0].clone()];
        assert!(mark_running(&records, &running, t(2)).is_empty());
        let both: HashSet<&str> = [D1, D2].into();
        let cleared = mark_running(&records, &both, t(2));
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].spec.not_running_since, None);
    }

    #[test]
    fn collection_of_expired_and_long_gone_records() {
        let mut gone_long = record(D1, RecordResult::Succeeded, t(0));
        gone_long.spec.not_running_since = Some(t(1));
        let mut gone_briefly = record(D2, RecordResult::Succeeded, t(0));
        gone_briefly.spec.not_running_since = Some(t(2) - chrono::Duration::minutes(30));
        let d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        let unmarked = record(d3, RecordResult::Succeeded, t(0));
        let d4 = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
        let expired_running = record(d4, RecordResult::Succeeded, t(-72));
        let records = [gone_long, gone_briefly, unmarked, expired_running];
        let running: HashSet<&str> = [d4].into();
        let names = to_collect(&records, &running, t(2), GRACE);
        assert_eq!(names, [name_for(D1).unwrap(), name_for(d4).unwrap()]);

        // A marked record whose digest runs again is kept, however old the mark.
        let back: HashSet<&str> = [D1, d4].into();
        assert_eq!(
            to_collect(&records[..1], &back, t(2), GRACE),
            Vec::<String>::new()
        );
    }

    #[test]
    fn sweep_deletes_then_marks_the_rest() {
        let mut gone_long = record(D1, RecordResult::Succeeded, t(0));
        gone_long.spec.not_running_since = Some(t(0));
        let unmarked = record(D2, RecordResult::Succeeded, t(0));
        let s = sweep(&[gone_long, unmarked], &HashSet::new(), t(2), GRACE);
        assert_eq!(s.delete, [name_for(D1).unwrap()]);
        assert_eq!(s.update.len(), 1);
        assert_eq!(s.update[0].spec.digest, D2);
        assert_eq!(s.update[0].spec.not_running_since, Some(t(2)));
        assert_eq!(sweep(&[], &HashSet::new(), t(2), GRACE), Sweep::default());
    }

    #[test]
    fn crd_shape() {
        let crd = ImageRecord::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("imagerecords.sbomjob.io"));
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["imgrec".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Digest", "Repository", "Processed", "Result", "Age"]);
    }

    /// The committed CRD must be what `cargo run --bin crdgen` prints today.
    #[test]
    fn committed_crd_is_current() {
        let committed = include_str!("../../charts/sbomjob/crds/imagerecords.yaml");
        assert!(
            committed == crd_yaml(),
            "charts/sbomjob/crds/imagerecords.yaml is stale: regenerate it with \
             `cargo run -p sbomjob-operator --bin crdgen > charts/sbomjob/crds/imagerecords.yaml`"
        );
    }
}
