//! The digest cache: cluster-scoped `ImageRecord`s (`sbomjob.io/v1alpha1`), one per processed
//! digest and job identity, so a new pod running a known digest is annotated without a Job.
//!
//! A record says which job image, with which settings, processed the digest, when, in which Job,
//! and with what result. It counts as done ([`lookup`] → [`CacheDecision::Hit`]) while it is
//! unexpired (`SBOM_CACHE_TTL`, default 72 h), succeeded, and was made by the same job image with
//! the same settings ([`JobIdentity`]).
//!
//! **Several releases.** The record's name is the digest plus a key of the settings hash
//! ([`name_for`]): releases with the same job identity (job image and forwarded settings) share
//! one record, so the second creates no Job for what the first did, and releases with other
//! identities keep records of their own, never overwriting each other's. A record lists the
//! releases that use it (`<namespace>/<release>`) and, for each, since when none of its watched
//! pods runs the digest. A release collects a record of its identity once it has expired or no
//! listed release has run the digest for `SBOM_CACHE_GRACE` ([`sweep`]); records of other
//! identities only once they have expired (nobody can use them then). So uninstalling a release
//! leaves the others' records working, and its own expire.
//!
//! **Writes** are read-modify-write with the resourceVersion that was read (create, or replace;
//! a delete carries it as a precondition): of two releases updating a record at once, one gets
//! 409 and reads it again, and neither loses the other's entry.
//!
//! Pure core: [`name_for`], [`JobIdentity`], [`lookup`], [`record_for`], [`split`],
//! [`sweep`], [`changed`]. Shell: [`load`], [`save`], [`delete`], [`installed`].
//!
//! Everything is in `spec` (no status subresource): a record is observed data rather than desired
//! state, and one write carries it whole. The releases' entries are the only fields that change
//! without a Job, and only on transitions (a release starts or stops running the digest).

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use kube::api::{PostParams, Preconditions};

use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, stream};
use kube::{
    Api, Client, CustomResource, CustomResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::{
    Context as _, Result,
    backoff::Failure,
    is_not_found,
    objects::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL},
    settings::{ForwardedEnv, JobSettings},
};

/// Hex digits of the settings hash in a record's name: 64 bits, no collision among the
/// identities of one cluster.
pub const IDENTITY_KEY_LEN: usize = 16;
/// Tries of one record write when other writers keep changing it (409).
const WRITE_TRIES: usize = 4;
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
    /// The releases that use the record: each ran the digest or found it here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseUse>,
    /// Set when the digest failed alone: how often in a row, why, and when it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RecordFailure>,
}

/// A release that uses a record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseUse {
    /// `<namespace>/<release>` (`POD_NAMESPACE`, `SBOM_RELEASE`).
    pub release: String,
    /// Since when none of the release's watched pods runs the digest; absent while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_running_since: Option<DateTime<Utc>>,
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

/// The record name of a digest processed under a settings hash: `sha256:<hex>` →
/// `sha256-<hex>-<first 16 hex digits of the hash>` (lower case). `None` for a value that
/// cannot make a valid object name.
pub fn name_for(digest: &str, settings_hash: &str) -> Option<String> {
    let key = settings_hash.get(..IDENTITY_KEY_LEN).filter(|k| {
        k.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })?;
    let name = format!("{}-{key}", digest_name(digest)?);
    (name.len() <= 253).then_some(name)
}

/// `sha256:<hex>` → `sha256-<hex>`: the name of records before several releases shared the
/// cache (collected once they expire).
fn digest_name(digest: &str) -> Option<String> {
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
    let name = name_for(digest, &identity.settings_hash)?;
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
            releases: Vec::new(),
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

/// The records of one cycle, by whose they are.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    /// The records of our identity (settings hash), by digest: what lookups and the sweep use.
    pub own: BTreeMap<String, ImageRecord>,
    /// Other releases' records (other identities, or from before records were shared) that have
    /// expired, as (name, resourceVersion): nobody can use them, so any release collects them.
    pub expired: Vec<(String, Option<String>)>,
    /// Digests with a live record of another identity that lists our release: we processed
    /// them under other settings (an upgrade), so their annotated pods are processed again.
    pub ours_before: HashSet<String>,
}

/// Sorts a page of records into [`Loaded`]; the other identities' live records are dropped, so a
/// release holds only its own in memory.
pub fn split(
    loaded: &mut Loaded,
    page: Vec<ImageRecord>,
    settings_hash: &str,
    release: &str,
    now: DateTime<Utc>,
) {
    for r in page {
        let Some(name) = r.metadata.name.clone() else {
            continue;
        };
        let ours = r.spec.settings_hash == settings_hash
            && name_for(&r.spec.digest, settings_hash).as_deref() == Some(name.as_str());
        if ours {
            loaded.own.insert(r.spec.digest.clone(), r);
        } else if now >= r.spec.expires_at {
            loaded.expired.push((name, r.metadata.resource_version.clone()));
        } else if r.spec.settings_hash != settings_hash
            && r.spec.releases.iter().any(|u| u.release == release)
        {
            loaded.ours_before.insert(r.spec.digest.clone());
        }
    }
}

/// One release's use of a record, set to `since` (`None`: running it now).
fn set_use(releases: &mut Vec<ReleaseUse>, release: &str, since: Option<DateTime<Utc>>) {
    match releases.iter_mut().find(|u| u.release == release) {
        Some(u) => u.not_running_since = since,
        None => releases.push(ReleaseUse {
            release: release.to_string(),
            not_running_since: since,
        }),
    }
    releases.sort_by(|a, b| a.release.cmp(&b.release));
}

/// What a write does to a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A Job of ours processed the digest: this is the new record (result, Job, times), and we
    /// run the digest. The other releases' entries stay.
    Processed(Box<ImageRecordSpec>),
    /// Our release starts (`None`) or stopped (`Some(since)`) running the digest. Nothing is
    /// created for a record that is gone.
    Mark(Option<DateTime<Utc>>),
}

/// The record after `change` by `release`, from the record as it is now (`None`: absent);
/// `None` when there is nothing to write.
pub fn changed(current: Option<&ImageRecordSpec>, change: &Change, release: &str) -> Option<ImageRecordSpec> {
    match change {
        Change::Processed(new) => {
            let mut spec = ImageRecordSpec::clone(new);
            spec.releases = current.map(|c| c.releases.clone()).unwrap_or_default();
            set_use(&mut spec.releases, release, None);
            Some(spec)
        }
        Change::Mark(since) => {
            let mut spec = current?.clone();
            set_use(&mut spec.releases, release, *since);
            (Some(&spec) != current).then_some(spec)
        }
    }
}

/// What a cycle does to the records it loaded: delete these (name, resourceVersion), then mark
/// those (our entry changes).
#[derive(Debug, Default, PartialEq)]
pub struct Sweep {
    pub delete: Vec<(String, Option<String>)>,
    pub mark: Vec<(ImageRecord, Option<DateTime<Utc>>)>,
}

/// Our entry in each of our records follows whether our watched pods run its digest (`running`):
/// set to `now` when they stopped, removed when they run it again, added when we run a digest
/// another release recorded. A record is deleted when it expired, or when every release listed
/// (us included, after this cycle's mark) has not run it for `grace`. Expired records of others
/// are deleted too.
pub fn sweep(
    loaded: &Loaded,
    release: &str,
    running: &HashSet<&str>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Sweep {
    let grace = chrono::Duration::from_std(grace.min(MAX_TTL)).expect("ten years fit");
    let now = now.trunc_subsecs(0);
    let mut out = Sweep {
        delete: loaded.expired.clone(),
        mark: Vec::new(),
    };
    for (digest, record) in &loaded.own {
        let spec = &record.spec;
        let mine = spec.releases.iter().find(|u| u.release == release);
        let since = match (running.contains(digest.as_str()), mine) {
            (true, _) => None,
            (false, Some(u)) => Some(u.not_running_since.unwrap_or(now)),
            // Not ours to mark: we never ran it.
            (false, None) => None,
        };
        let mut after = spec.releases.clone();
        if running.contains(digest.as_str()) || mine.is_some() {
            set_use(&mut after, release, since);
        }
        let gone = !after.is_empty()
            && after
                .iter()
                .all(|u| u.not_running_since.is_some_and(|s| now - s >= grace));
        if now >= spec.expires_at || gone {
            if let Some(name) = record.metadata.name.clone() {
                out.delete.push((name, record.metadata.resource_version.clone()));
            }
        } else if after != spec.releases {
            out.mark.push((record.clone(), since));
        }
    }
    out
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

/// Every record, page by page, sorted by whose it is ([`split`]).
pub async fn load(client: &Client, settings_hash: &str, release: &str) -> Result<Loaded> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let mut loaded = Loaded::default();
    let now = Utc::now();
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
        split(&mut loaded, page.items, settings_hash, release, now);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    debug!(
        own = loaded.own.len(),
        expired = loaded.expired.len(),
        "image records loaded"
    );
    Ok(loaded)
}

/// One record write: the change, and the record as this cycle read it (saves a GET).
#[derive(Debug, Clone)]
pub struct Update {
    pub name: String,
    pub current: Option<ImageRecord>,
    pub change: Change,
}

impl Update {
    /// A record a Job just made (its current version is read when the create finds one).
    pub fn processed(record: ImageRecord) -> Option<Self> {
        Some(Update {
            name: record.metadata.name.clone()?,
            current: None,
            change: Change::Processed(Box::new(record.spec)),
        })
    }

    /// Our entry in a loaded record.
    pub fn mark(record: &ImageRecord, since: Option<DateTime<Utc>>) -> Option<Self> {
        Some(Update {
            name: record.metadata.name.clone()?,
            current: Some(record.clone()),
            change: Change::Mark(since),
        })
    }
}

/// Writes each update as `release`: a create when the record is absent, else a replace with
/// the resourceVersion read, read again and retried on 409 (another release wrote it meanwhile),
/// so no writer loses another's entry. Every update is tried; the error names the first failure
/// and how many failed.
pub async fn save(client: &Client, release: &str, updates: Vec<Update>) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let total = updates.len();
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(updates)
        .map(|u| {
            let api = &api;
            async move {
                let result = save_one(api, release, &u).await;
                (u.name, result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    first_failure(results, total, "writing")
}

async fn save_one(api: &Api<ImageRecord>, release: &str, u: &Update) -> std::result::Result<(), kube::Error> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut current = u.current.clone();
    let mut known = current.is_some();
    for _ in 0..WRITE_TRIES {
        if !known {
            current = api.get_opt(&u.name).await?;
        }
        let Some(spec) = changed(current.as_ref().map(|r| &r.spec), &u.change, release) else {
            return Ok(());
        };
        let mut body = with_meta(&u.name, spec);
        let written = match &current {
            None => api.create(&pp, &body).await,
            Some(cur) => {
                body.metadata.resource_version = cur.metadata.resource_version.clone();
                api.replace(&u.name, &pp, &body).await
            }
        };
        match written {
            Ok(_) => return Ok(()),
            // AlreadyExists, a stale resourceVersion, or gone meanwhile: read it and try again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => known = false,
            Err(e) => return Err(e),
        }
    }
    debug!(record = %u.name, "image record kept changing under us; left for the next cycle");
    Ok(())
}

/// Deletes records by (name, resourceVersion read): one already gone, or changed since it was
/// read (another release just used it), is left alone.
pub async fn delete(client: &Client, records: &[(String, Option<String>)]) -> Result<()> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let results: Vec<(String, std::result::Result<(), kube::Error>)> = stream::iter(records)
        .map(|(name, version)| {
            let api = &api;
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: version.clone(),
                        uid: None,
                    }),
                    ..Default::default()
                };
                let result = match api.delete(name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e),
                };
                (name.clone(), result)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if !records.is_empty() {
        info!(records = records.len(), "image records collected");
    }
    first_failure(results, records.len(), "deleting")
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
    fn names_from_digests_and_identities() {
        let h = identity().settings_hash;
        let name = name_for(D1, &h).unwrap();
        assert_eq!(
            name,
            format!(
                "sha256-1111111111111111111111111111111111111111111111111111111111111111-{}",
                &h[..16]
            )
        );
        assert_eq!(name.len(), 88);
        assert_ne!(
            name_for(D1, &"0".repeat(64)),
            Some(name),
            "another identity, another record"
        );
        assert_eq!(
            name_for("sha256:ABCDEF", &h),
            Some(format!("sha256-abcdef-{}", &h[..16]))
        );
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:xyz",
            "sha_256:abc",
        ] {
            assert_eq!(name_for(bad, &h), None, "{bad}");
        }
        assert_eq!(name_for(D1, "short"), None);
        assert_eq!(name_for(D1, &"G".repeat(64)), None);
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
        assert_eq!(r.metadata.name, name_for(D1, &identity.settings_hash));
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

    const A: &str = "ns-a/syft";
    const C: &str = "ns-a/syft-2";

    fn uses(list: &[(&str, Option<DateTime<Utc>>)]) -> Vec<ReleaseUse> {
        list.iter()
            .map(|(r, since)| ReleaseUse {
                release: r.to_string(),
                not_running_since: *since,
            })
            .collect()
    }

    fn named(mut r: ImageRecord, version: &str) -> ImageRecord {
        r.metadata.resource_version = Some(version.into());
        r
    }

    fn loaded(records: Vec<ImageRecord>, now: DateTime<Utc>) -> Loaded {
        let mut l = Loaded::default();
        split(&mut l, records, &identity().settings_hash, A, now);
        l
    }

    #[test]
    fn records_are_sorted_into_ours_and_the_expired_of_others() {
        let ours = named(record(D1, RecordResult::Succeeded, t(0)), "1");
        let other_identity = JobIdentity::from_settings(&job_settings("reg/trivy:1", &[]));
        let theirs_live = record_for(
            D1,
            vec![],
            &other_identity,
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        let theirs_expired = named(
            record_for(
                D2,
                vec![],
                &other_identity,
                "j",
                RecordResult::Succeeded,
                t(-100),
                TTL,
            )
            .unwrap(),
            "7",
        );
        // A record from before records were shared: named by digest only, same identity.
        let mut legacy = record(D2, RecordResult::Succeeded, t(-100));
        legacy.metadata.name = digest_name(D2);
        assert_ne!(
            theirs_live.metadata.name, ours.metadata.name,
            "two identities, two records"
        );

        let l = loaded(
            vec![ours.clone(), theirs_live, theirs_expired.clone(), legacy.clone()],
            t(1),
        );
        assert_eq!(l.own.len(), 1);
        assert_eq!(l.own[D1], ours);
        assert_eq!(
            l.expired,
            [
                (theirs_expired.metadata.name.clone().unwrap(), Some("7".into())),
                (legacy.metadata.name.clone().unwrap(), None),
            ],
            "other identities' live records are neither kept nor collected"
        );
        assert!(l.ours_before.is_empty(), "none of them lists us");
        // A record we made under earlier settings: its digest is ours to process again.
        let mut before = record_for(
            D1,
            vec![],
            &other_identity,
            "j",
            RecordResult::Succeeded,
            t(0),
            TTL,
        )
        .unwrap();
        before.spec.releases = uses(&[(A, None)]);
        let l = loaded(vec![before], t(1));
        assert_eq!(l.ours_before, [D1.to_string()].into());
    }

    #[test]
    fn a_processed_record_keeps_the_other_releases_entries() {
        let mut current = record(D1, RecordResult::Failed, t(0)).spec;
        current.releases = uses(&[(C, Some(t(1)))]);
        let new = record(D1, RecordResult::Succeeded, t(2)).spec;
        let written = changed(Some(&current), &Change::Processed(Box::new(new.clone())), A).unwrap();
        assert_eq!(written.result, RecordResult::Succeeded);
        assert_eq!(written.processed_at, t(2));
        assert_eq!(written.releases, uses(&[(A, None), (C, Some(t(1)))]));
        // Absent: created with our entry only.
        assert_eq!(
            changed(None, &Change::Processed(Box::new(new)), A)
                .unwrap()
                .releases,
            uses(&[(A, None)])
        );
    }

    #[test]
    fn a_mark_changes_only_our_entry_and_creates_nothing() {
        let mut current = record(D1, RecordResult::Succeeded, t(0)).spec;
        current.releases = uses(&[(A, None), (C, None)]);
        let marked = changed(Some(&current), &Change::Mark(Some(t(3))), A).unwrap();
        assert_eq!(marked.releases, uses(&[(A, Some(t(3))), (C, None)]));
        assert_eq!(
            changed(None, &Change::Mark(Some(t(3))), A),
            None,
            "gone: nothing created"
        );
        assert_eq!(
            changed(Some(&current), &Change::Mark(None), A),
            None,
            "no change: no write"
        );
    }

    #[test]
    fn the_sweep_marks_transitions_of_our_entry() {
        let mut ran_by_us = record(D1, RecordResult::Succeeded, t(0));
        ran_by_us.spec.releases = uses(&[(A, None)]);
        let mut recorded_by_c = record(D2, RecordResult::Succeeded, t(0));
        recorded_by_c.spec.releases = uses(&[(C, None)]);
        let l = loaded(vec![ran_by_us.clone(), recorded_by_c.clone()], t(1));

        // We stopped running D1; we run D2, which C recorded: both get our entry changed.
        let running: HashSet<&str> = [D2].into();
        let s = sweep(&l, A, &running, t(1), GRACE);
        assert!(s.delete.is_empty());
        assert_eq!(
            s.mark,
            [(ran_by_us.clone(), Some(t(1))), (recorded_by_c.clone(), None)]
        );

        // Nothing changed: nothing written. A digest we never ran is not ours to mark.
        ran_by_us.spec.releases = uses(&[(A, Some(t(1)))]);
        let l = loaded(vec![ran_by_us, recorded_by_c], t(1));
        let s = sweep(&l, A, &[D2].into(), t(1) + chrono::Duration::minutes(10), GRACE);
        assert_eq!(s.mark.len(), 1, "only D2, where our entry is new");
        let s = sweep(&l, "other/x", &HashSet::new(), t(1), GRACE);
        assert_eq!(s, Sweep::default());
    }

    #[test]
    fn a_record_goes_only_when_no_release_ran_it_for_the_grace() {
        let mut shared = named(record(D1, RecordResult::Succeeded, t(0)), "5");
        // C still runs the digest: however long we have not, the record stays.
        shared.spec.releases = uses(&[(A, Some(t(1))), (C, None)]);
        let l = loaded(vec![shared.clone()], t(5));
        assert!(sweep(&l, A, &HashSet::new(), t(5), GRACE).delete.is_empty());
        // C stopped too, long enough ago: collected, with the version read as a precondition.
        shared.spec.releases = uses(&[(A, Some(t(1))), (C, Some(t(2)))]);
        let l = loaded(vec![shared.clone()], t(5));
        assert_eq!(
            sweep(&l, A, &HashSet::new(), t(5), GRACE).delete,
            [(shared.metadata.name.clone().unwrap(), Some("5".into()))]
        );
        // Within the grace of C's mark: kept.
        let l = loaded(vec![shared.clone()], t(2));
        assert!(
            sweep(
                &l,
                A,
                &HashSet::new(),
                t(2) + chrono::Duration::minutes(30),
                GRACE
            )
            .delete
            .is_empty()
        );
        // Expired: collected even while running.
        let old = named(record(D2, RecordResult::Succeeded, t(-72)), "9");
        let l = loaded(vec![old.clone()], t(0));
        assert_eq!(sweep(&l, A, &[D2].into(), t(0), GRACE).delete.len(), 1);
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

    /// Another release creates the record between our read and our create: the write is read
    /// again and replaced with the resourceVersion read, keeping that release's entry.
    #[tokio::test]
    async fn save_retries_a_conflict_without_losing_the_other_releases_entry() {
        use crate::fake_api::{self, conflict, not_found};
        let mine = record(
            &format!("sha256:{}", "7".repeat(64)),
            RecordResult::Succeeded,
            Utc::now(),
        );
        let name = mine.metadata.name.clone().unwrap();
        let mut theirs = mine.clone();
        theirs.spec.releases = vec![ReleaseUse {
            release: "team-b/other".into(),
            not_running_since: None,
        }];
        theirs.metadata.resource_version = Some("7".into());
        let theirs = serde_json::to_value(&theirs).unwrap();
        let gets = std::sync::atomic::AtomicUsize::new(0);
        let (client, log) = fake_api::client(move |seen| match seen.method.as_str() {
            // Absent when first read, there once the create found it.
            "GET" if gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                not_found("imagerecord", "x")
            }
            "GET" => (200, theirs.clone()),
            "POST" => conflict("imagerecord"),
            "PUT" => (200, seen.body.clone()),
            _ => not_found("object", &seen.path),
        });
        save(
            &client,
            "sbomjob/sbomjob",
            Update::processed(mine).into_iter().collect(),
        )
        .await
        .unwrap();
        let methods: Vec<_> = log.all().iter().map(|s| s.method.clone()).collect();
        assert_eq!(methods, ["GET", "POST", "GET", "PUT"]);
        let put = log.all().pop().unwrap();
        assert!(
            put.path.ends_with(&format!("/imagerecords/{name}")),
            "{}",
            put.path
        );
        assert_eq!(put.body["metadata"]["resourceVersion"], "7");
        let releases: Vec<_> = put.body["spec"]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["release"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(releases, ["sbomjob/sbomjob", "team-b/other"]);
    }
}
