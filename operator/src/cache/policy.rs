//! The digest cache's rules (pure): the job identity records are keyed by, whether a record
//! covers a digest, new records, what a release's change does to a record, and the sweep.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::{
    backoff::Failure,
    objects::{MANAGED_BY, MANAGED_BY_LABEL},
    settings::{ForwardedEnv, JobSettings},
};

use super::record::*;

/// Far enough: a TTL beyond this is treated as this.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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

/// The repository of an image reference, fully qualified: `registry/path@sha256:…` or
/// `registry/path:tag` → `registry/path`, `nginx` → `docker.io/library/nginx`; `None` for a
/// bare digest (a local image) or what is no reference.
pub fn repository_of(reference: &str) -> Option<String> {
    let r = sbomjob_contract::ImageRef::parse(reference).ok()?;
    (!r.repository.is_empty()).then(|| format!("{}/{}", r.registry, r.repository))
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

/// A record with only what the operator owns in its metadata: what [`write`] applies.
pub fn with_meta(name: &str, spec: ImageRecordSpec) -> ImageRecord {
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
pub fn set_use(releases: &mut Vec<ReleaseUse>, release: &str, since: Option<DateTime<Utc>>) {
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
