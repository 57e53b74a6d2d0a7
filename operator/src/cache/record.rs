//! The ImageRecord custom resource: one cluster-scoped record per processed digest and job
//! identity, its names, and the CRD crdgen prints.

use chrono::{DateTime, Utc};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use sbomjob_contract::result::{Findings, ImageReport, ReportOutcome};

use crate::backoff::Failure;

/// Hex digits of the settings hash in a record's name: 64 bits, no collision among the
/// identities of one cluster.
pub const IDENTITY_KEY_LEN: usize = 16;

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
        name = "Packages",
        type_ = "integer",
        json_path = ".status.packages",
        description = "Packages in the SBOM, as the job image reported"
    ),
    printcolumn(name = "Critical", type_ = "integer", json_path = ".status.findings.critical"),
    printcolumn(name = "High", type_ = "integer", json_path = ".status.findings.high"),
    printcolumn(name = "Medium", type_ = "integer", json_path = ".status.findings.medium"),
    printcolumn(name = "Low", type_ = "integer", json_path = ".status.findings.low"),
    printcolumn(
        name = "Signature",
        type_ = "string",
        json_path = ".status.provenance.signature",
        description = "The cosign signature checked against the TrustPolicies: verified, unsigned, invalid-signature, untrusted-signer, tampered, unchecked"
    ),
    printcolumn(
        name = "Builder",
        type_ = "string",
        json_path = ".status.provenance.slsa.builderId",
        priority = "1"
    ),
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
    ),
    printcolumn(
        name = "Artifact",
        type_ = "string",
        json_path = ".status.artifacts[0].reference",
        priority = "1"
    ),
    printcolumn(
        name = "Tool",
        type_ = "string",
        json_path = ".status.tool.name",
        priority = "1"
    ),
    printcolumn(
        name = "Tool-Version",
        type_ = "string",
        json_path = ".status.tool.version",
        priority = "1"
    ),
    status = "ImageRecordStatus"
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

/// What the Job found, from the job image's result line ([`sbomjob_contract::result`]): a
/// summary of a few hundred bytes, never the SBOM itself (that stays in the registry, named by
/// `artifacts`). Empty when the job image reports nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecordStatus {
    /// Packages in the SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<u64>,
    /// Vulnerabilities by severity, when the job scanned for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingCounts>,
    /// The tool that made the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolInfo>,
    /// What the job produced: OCI artifacts (`reference` is `repository@digest`) or files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactRef>,
    /// The platforms the image offers (`os/architecture[/variant]`), when the job reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// `Catalogued`: whether the job image reported the digest done (`True`) or failed (`False`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RecordCondition>,
    /// The Job whose result this is (`spec.job` names the last Job that processed the digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Its signatures and attestations checked against the TrustPolicies that cover it, when
    /// one does (checked when the digest is processed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceStatus>,
    /// Each tag the digest runs under, against the newest version tag of its repository (at
    /// most [`MAX_DRIFT`]); written by drift alone, so a Job's status patch leaves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<TagDrift>,
}

/// Tags of one digest whose drift a record keeps, at most.
pub const MAX_DRIFT: usize = 10;

/// A tag a digest runs under, and how far it is behind ([`crate::drift`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagDrift {
    /// `registry/repository:tag`, as the pod names it.
    pub image: String,
    /// `latest`, `behind-patch`, `behind-minor`, `behind-major`, `unknown`.
    pub status: String,
    /// What `kubectl` shows: `behind minor, newest 1.3.0`.
    pub detail: String,
}

/// Where the image came from, verified ([`crate::provenance`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceStatus {
    /// `verified`, `unsigned`, `invalid-signature`, `untrusted-signer`, `tampered`, or
    /// `unchecked` (the registry could not be read).
    pub signature: String,
    /// Why: the trusted key that verified it, or what is wrong.
    pub signature_reason: String,
    /// The attestations' verdict (same words), when one is attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_reason: Option<String>,
    /// The SLSA provenance of a verified attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slsa: Option<SlsaSummary>,
    pub checked_at: DateTime<Utc>,
}

/// Who built the image and from what (SLSA provenance v0.2 or v1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlsaSummary {
    /// `v0.2` or `v1`.
    pub version: String,
    pub builder_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

/// Vulnerabilities by severity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FindingCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl From<Findings> for FindingCounts {
    fn from(f: Findings) -> FindingCounts {
        FindingCounts {
            critical: f.critical,
            high: f.high,
            medium: f.medium,
            low: f.low,
            unknown: f.unknown,
        }
    }
}

/// A tool and its version (and vulnerability database, when it used one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// An artifact the job produced for the digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// `registry/repository@digest` of an OCI artifact, or the file's path.
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// A condition in the Kubernetes style.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

/// The condition a result sets.
pub const CATALOGUED: &str = "Catalogued";

impl ImageRecordStatus {
    /// A status with every field set, so that its keys are every key a status can have.
    pub fn every_field() -> ImageRecordStatus {
        ImageRecordStatus {
            packages: Some(0),
            findings: Some(FindingCounts::default()),
            tool: Some(ToolInfo {
                name: String::new(),
                version: None,
                database: None,
            }),
            artifacts: vec![ArtifactRef {
                reference: String::new(),
                media_type: None,
                artifact_type: None,
            }],
            platforms: vec![String::new()],
            conditions: vec![RecordCondition {
                type_: String::new(),
                status: String::new(),
                reason: String::new(),
                message: String::new(),
                last_transition_time: DateTime::<Utc>::MIN_UTC,
            }],
            job: Some(String::new()),
            provenance: Some(ProvenanceStatus {
                signature: String::new(),
                signature_reason: String::new(),
                attestation: None,
                attestation_reason: None,
                slsa: None,
                checked_at: DateTime::<Utc>::MIN_UTC,
            }),
            // Not a Job's to set: drift writes it alone.
            drift: Vec::new(),
        }
    }

    /// The status for a job image's result line, from `job`.
    pub fn from_report(report: &ImageReport, job: &str, now: DateTime<Utc>) -> ImageRecordStatus {
        let tool = report.tool.as_ref().map(|t| ToolInfo {
            name: t.name.clone(),
            version: t.version.clone(),
            database: t.database.clone(),
        });
        let ok = report.outcome == ReportOutcome::Succeeded;
        let mut said = Vec::new();
        if let Some(t) = &tool {
            said.push(match &t.version {
                Some(v) => format!("{} {v}", t.name),
                None => t.name.clone(),
            });
        }
        if let Some(n) = report.packages {
            said.push(format!("{n} packages"));
        }
        if !report.platforms.is_empty() {
            said.push(report.platforms.join(", "));
        }
        if let Some(f) = &report.findings {
            said.push(format!(
                "{} critical, {} high, {} medium, {} low, {} unknown",
                f.critical, f.high, f.medium, f.low, f.unknown
            ));
        }
        ImageRecordStatus {
            packages: report.packages,
            findings: report.findings.map(FindingCounts::from),
            tool,
            artifacts: report
                .artifacts
                .iter()
                .filter_map(|a| {
                    Some(ArtifactRef {
                        reference: a.reference()?,
                        media_type: a.media_type.clone(),
                        artifact_type: a.artifact_type.clone(),
                    })
                })
                .collect(),
            platforms: report.platforms.clone(),
            conditions: vec![RecordCondition {
                type_: CATALOGUED.into(),
                status: if ok { "True" } else { "False" }.into(),
                reason: if ok { "Reported" } else { "ReportedFailed" }.into(),
                message: said.join("; "),
                last_transition_time: now,
            }],
            job: Some(job.to_string()),
            provenance: None,
            drift: Vec::new(),
        }
    }
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
pub fn digest_name(digest: &str) -> Option<String> {
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

/// The CRD as YAML, as committed at `charts/sbomjob/crds/imagerecords.yaml`.
pub fn crd_yaml() -> String {
    crate::crds::yaml(
        &crate::crds::annotated(ImageRecord::crd()),
        "Generated by `cargo run -p sbomjob-operator --bin crdgen` from operator/src/cache/record.rs: do not edit.",
    )
}
