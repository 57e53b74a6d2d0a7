//! `ENTRYPOINT_ATTACH`: after an image's tool succeeded, push the `{output}.*` files it wrote to
//! the image's registry as one OCI artifact that refers to the image.
//!
//! The artifact is an OCI image manifest (image-spec 1.1 artifact form): `artifactType`, the
//! empty config `{}`, one layer per file (media type from its extension, the file name as
//! `org.opencontainers.image.title`, so `oras pull` restores the files), and `subject` = the
//! image's manifest. It is pushed under the tag `<alg>-<hex>.<suffix>` (cosign's convention, e.g.
//! `sha256-ab12….sbom`), which is all registries without the referrers API (distribution 2.8,
//! many others) need to find it; registries with the API also list it as a referrer of the image.
//!
//! TLS: rustls with ring and the system's CA certificates (required, see
//! [`check_ca_certificates`]).
//!
//! Credentials: image-config.json's for the image's registry, and an optional docker
//! `config.json` (`ENTRYPOINT_ATTACH_DOCKER_CONFIG`) for any registry; see [`Attacher`].
//! Nothing here logs them, and error texts are redacted before they reach the summary.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, warn};

use sbomjob_contract::docker_config::{DockerConfig, key_host};
use sbomjob_contract::referrers::{
    CREATED_ANNOTATION, MAX_ANNOTATION, PACKAGES_ANNOTATION, SETTINGS_IDENTITY_ANNOTATION,
    SETTINGS_IDENTITY_ENV, TOOL_ANNOTATION,
};

use crate::auth::credentials_apply;
use crate::facts::DocumentFacts;
use crate::redact::{Credentials, Redactor};
use crate::settings::{AttachSettings, PREFIX};
use crate::work::Job;

/// `artifactType` / layer media type of SPDX JSON documents.
pub const SPDX_JSON: &str = "application/spdx+json";
/// SPDX tag-value documents.
pub const SPDX_TEXT: &str = "text/spdx";
/// CycloneDX JSON documents.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";
/// CycloneDX XML documents.
pub const CYCLONEDX_XML: &str = "application/vnd.cyclonedx+xml";
/// Anything else.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// The image-spec's empty descriptor: config of artifacts that have none.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_BLOB: &[u8] = b"{}";
const TITLE: &str = "org.opencontainers.image.title";
/// Per request: the whole step is bounded by `ENTRYPOINT_TIMEOUT` as well.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Why attaching (or setting it up) failed: which step, and what the registry or the system
/// said. Shown in the summary only after redaction ([`Attacher::attach`]).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{PREFIX}ATTACH_DOCKER_CONFIG={path:?}: {why}")]
    DockerConfig { path: String, why: String },
    #[error(
        "{PREFIX}ATTACH=true needs CA certificates in the job image, also for plain-HTTP registries \
         (the OCI client requires them): none found in SSL_CERT_FILE, SSL_CERT_DIR or the usual \
         places such as /etc/ssl/certs/ca-certificates.crt{0}"
    )]
    NoCaCertificates(String),
    #[error("cannot set up the registry client{0}")]
    Client(String),
    #[error("the image is a bare digest (built locally): it has no registry to attach to")]
    BareDigest,
    #[error("the tool wrote no {{output}}.* file to attach")]
    NoOutput,
    #[error("cannot read the image's manifest from {reference}: {why}")]
    Manifest { reference: String, why: String },
    #[error("the tag {tag:?} for digest {digest} is not a valid tag (at most 128 letters, digits, `_.-`)")]
    BadTag { tag: String, digest: String },
    #[error("cannot read {path}: {source}")]
    ReadOutput {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {step} to {repository}: {why}")]
    Push {
        step: String,
        repository: String,
        why: String,
    },
}

/// The tag the artifact is pushed under: the subject digest with `:` as `-`, a dot, the suffix
/// (`sha256:ab…` + `sbom` → `sha256-ab….sbom`). Errors if it would not be a valid tag.
pub fn fallback_tag(digest: &str, suffix: &str) -> Result<String, AttachError> {
    let tag = format!("{}.{suffix}", digest.replacen(':', "-", 1));
    let valid = tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(tag)
    } else {
        Err(AttachError::BadTag {
            tag,
            digest: digest.to_owned(),
        })
    }
}

/// The media type of an output file, from the end of its name (case-insensitive):
/// `.spdx.json`, `.spdx`, `.cdx.json`/`.cyclonedx.json`, `.cdx.xml`/`.cyclonedx.xml`;
/// anything else is `application/octet-stream`.
pub fn media_type_for(file_name: &str) -> &'static str {
    let name = file_name.to_ascii_lowercase();
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| name.ends_with(s));
    if ends(&[".spdx.json"]) {
        SPDX_JSON
    } else if ends(&[".spdx"]) {
        SPDX_TEXT
    } else if ends(&[".cdx.json", ".cyclonedx.json"]) {
        CYCLONEDX_JSON
    } else if ends(&[".cdx.xml", ".cyclonedx.xml"]) {
        CYCLONEDX_XML
    } else {
        OCTET_STREAM
    }
}

/// The artifact's `artifactType`: the setting when given, else the files' media type when they
/// all have the same one, else `application/octet-stream`.
pub fn artifact_type(setting: Option<&str>, file_names: &[&str]) -> String {
    if let Some(t) = setting {
        return t.to_owned();
    }
    let mut types = file_names.iter().map(|n| media_type_for(n));
    match types.next() {
        Some(first) if types.all(|t| t == first) => first.to_owned(),
        _ => OCTET_STREAM.to_owned(),
    }
}

/// The `{output}.*` files present before an image ran, with their modification times: only
/// files created or modified by the run are attached (an output directory may hold results of
/// an earlier run).
#[derive(Debug, Default)]
pub struct OutputsBefore(HashMap<OsString, Option<SystemTime>>);

/// The regular files `<stem>.*` in the output directory, except the captured `.stdout` and
/// `.stderr`, and except files of other images whose stem extends this one with a dot
/// (`app_1` vs `app_1.0`): `others` lists those stems.
fn output_files(output: &Path, others: &[String]) -> std::io::Result<Vec<(PathBuf, Option<SystemTime>)>> {
    let (Some(dir), Some(stem)) = (output.parent(), output.file_name().and_then(|s| s.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{stem}.");
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(ext) = name.strip_prefix(&prefix) else {
            continue;
        };
        if ext.is_empty()
            || ext == "stdout"
            || ext == "stderr"
            || others.iter().any(|o| name.starts_with(&format!("{o}.")))
        {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push((entry.path(), meta.modified().ok()));
        }
    }
    files.sort();
    Ok(files)
}

impl OutputsBefore {
    pub fn take(job: &Job) -> OutputsBefore {
        OutputsBefore(
            output_files(&job.output, &job.other_stems)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(p, t)| Some((p.file_name()?.to_owned(), t)))
                .collect(),
        )
    }

    /// The files the run wrote: new since the snapshot, or with another modification time.
    pub fn written(&self, job: &Job) -> std::io::Result<Vec<PathBuf>> {
        Ok(output_files(&job.output, &job.other_stems)?
            .into_iter()
            .filter(|(p, t)| {
                p.file_name()
                    .is_none_or(|n| self.0.get(n).is_none_or(|before| before != t))
            })
            .map(|(p, _)| p)
            .collect())
    }
}

/// Credentials from a docker `config.json` (`auths` only), by normalised host.
#[derive(Default, Clone)]
pub struct DockerAuths {
    auths: HashMap<String, RegistryAuth>,
    /// Every secret value of the file, for redaction (entries not used included).
    credentials: Credentials,
}

impl std::fmt::Debug for DockerAuths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.auths.keys()).finish()
    }
}

impl DockerAuths {
    pub fn load(path: &Path) -> Result<DockerAuths, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        Self::parse(&bytes)
    }

    /// `{"auths": {"<host>": {"auth": "<base64 user:password>"} | {"username", "password"} |
    /// {"registrytoken"}}}` ([`DockerConfig`]). Hosts are normalised like pull-secret hosts
    /// (`https://ghcr.io/v2/` is `ghcr.io`, Docker Hub's spellings are `docker.io`).
    pub fn parse(bytes: &[u8]) -> Result<DockerAuths, String> {
        let config = DockerConfig::parse(bytes).map_err(|e| e.to_string())?;
        let mut auths = HashMap::new();
        let mut credentials = Credentials::default();
        for (key, entry) in &config.auths {
            for secret in entry.secrets() {
                credentials.add(&secret);
            }
            credentials.add_basic(
                entry.username.as_deref().unwrap_or_default(),
                entry.password.as_deref().unwrap_or_default(),
            );
            let basic = entry.basic(key).map_err(|e| e.to_string())?;
            if let Some((user, password)) = &basic {
                credentials.add_basic(user, password);
            }
            // A user name without a password (or the reverse) is no login; a token may be.
            let auth = match (basic, &entry.registrytoken) {
                (Some((user, password)), _)
                    if entry.auth.is_some() || !(user.is_empty() || password.is_empty()) =>
                {
                    RegistryAuth::Basic(user, password)
                }
                (_, Some(token)) => RegistryAuth::Bearer(token.clone()),
                _ => continue,
            };
            auths.insert(key_host(key), auth);
        }
        Ok(DockerAuths { auths, credentials })
    }

    pub fn get(&self, registry: &str) -> Option<&RegistryAuth> {
        self.auths.get(&key_host(registry))
    }

    /// Every user name, password, token and `auth` string of the file, for redaction.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

/// What was pushed, for the log and the image's result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// `registry/repository:tag`
    pub target: String,
    /// `registry/repository`
    pub repository: String,
    /// Digest of the artifact manifest.
    pub digest: String,
    /// Digest of the image it refers to.
    pub subject: String,
    pub files: usize,
    /// The files' media type when they share one, else `application/octet-stream`.
    pub media_type: String,
    /// The manifest's `artifactType`.
    pub artifact_type: String,
    /// What the attached SBOM or report says (read once, for the annotations and the result).
    pub facts: Option<DocumentFacts>,
}

/// The image's manifest as the artifact's `subject` refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    media_type: String,
    digest: String,
    size: usize,
}

/// Pushes artifacts; one per run, shared by all images.
#[derive(Debug)]
pub struct Attacher {
    settings: AttachSettings,
    docker: DockerAuths,
    /// `ENTRYPOINT_TIMEOUT`, for the whole attach step of one image.
    pub timeout: Option<Duration>,
    /// The operator's settings identity for this Job ([`SETTINGS_IDENTITY_ENV`]), written on
    /// every artifact so that other releases and clusters with the same settings reuse it.
    pub settings_identity: Option<String>,
}

impl Attacher {
    /// Reads `ENTRYPOINT_ATTACH_DOCKER_CONFIG` (the error names the variable) and installs ring
    /// as rustls' crypto provider.
    pub fn new(settings: AttachSettings, timeout: Option<Duration>) -> Result<Attacher, AttachError> {
        let docker = match &settings.docker_config {
            None => DockerAuths::default(),
            Some(path) => DockerAuths::load(path).map_err(|why| AttachError::DockerConfig {
                path: path.display().to_string(),
                why,
            })?,
        };
        check_ca_certificates()?;
        // Err only if one is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Attacher {
            settings,
            docker,
            timeout,
            settings_identity: settings_identity_from_env(),
        })
    }

    /// Credentials to read the image's manifest: the image's own when they are for its registry,
    /// else the docker config's entry for that registry, else none.
    fn pull_auth(&self, job: &Job) -> RegistryAuth {
        let registry = &job.reference.registry;
        if credentials_apply(&job.config, registry, registry) {
            return RegistryAuth::Basic(
                job.config.registry_user.clone(),
                job.config.registry_password.clone(),
            );
        }
        self.docker
            .get(registry)
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous)
    }

    /// Credentials to push to `registry`: the docker config's entry for it (set on purpose for
    /// pushing), else the image's own when they are for that registry, else none.
    fn push_auth(&self, job: &Job, registry: &str) -> RegistryAuth {
        if let Some(auth) = self.docker.get(registry) {
            return auth.clone();
        }
        if credentials_apply(&job.config, &job.reference.registry, registry) {
            return RegistryAuth::Basic(
                job.config.registry_user.clone(),
                job.config.registry_password.clone(),
            );
        }
        RegistryAuth::Anonymous
    }

    fn client(&self) -> Result<Client, AttachError> {
        let config = ClientConfig {
            protocol: if self.settings.insecure_registries.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(self.settings.insecure_registries.clone())
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("sbomjob-entrypoint/", env!("CARGO_PKG_VERSION")),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        // oci-client builds a default reqwest client besides the configured one, which panics
        // when no CA certificate can be loaded; checked at start, caught here all the same.
        match std::panic::catch_unwind(AssertUnwindSafe(|| Client::try_from(config))) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(AttachError::Client(format!(": {}", chain(&e)))),
            Err(_) => Err(AttachError::Client(" (no CA certificates?)".into())),
        }
    }

    /// The artifact's annotations: when it was made, the operator's settings identity, and the
    /// package count and tool its SBOM names (what another cluster's operator shows without
    /// reading the SBOM; see [`sbomjob_contract::referrers`]).
    fn annotations(&self, facts: Option<&DocumentFacts>) -> serde_json::Map<String, Value> {
        let mut a = serde_json::Map::new();
        a.insert(
            CREATED_ANNOTATION.into(),
            humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .into(),
        );
        if let Some(id) = &self.settings_identity {
            a.insert(SETTINGS_IDENTITY_ANNOTATION.into(), id.clone().into());
        }
        if let Some(facts) = facts {
            if let Some(n) = facts.packages {
                a.insert(PACKAGES_ANNOTATION.into(), n.to_string().into());
            }
            if let Some(t) = &facts.tool {
                let text = match &t.version {
                    Some(v) => format!("{} {v}", t.name),
                    None => t.name.clone(),
                };
                if text.len() <= MAX_ANNOTATION {
                    a.insert(TOOL_ANNOTATION.into(), text.into());
                }
            }
        }
        a
    }

    /// The credentials of `ENTRYPOINT_ATTACH_DOCKER_CONFIG`, for redaction.
    pub fn credentials(&self) -> &Credentials {
        self.docker.credentials()
    }

    /// Attaches `files` to the job's image. The error is the text for the summary: the
    /// [`AttachError`] with every credential masked (a registry's message may quote one; `redact`
    /// holds the config's and those of [`Self::credentials`]), so only text leaves this function.
    pub async fn attach(&self, job: &Job, files: &[PathBuf], redact: &Redactor) -> Result<Attached, String> {
        self.attach_inner(job, files)
            .await
            .map_err(|e| redact.redact(&e.to_string()).into_owned())
    }

    async fn attach_inner(&self, job: &Job, files: &[PathBuf]) -> Result<Attached, AttachError> {
        let image = &job.reference;
        if image.repository.is_empty() {
            return Err(AttachError::BareDigest);
        }
        if files.is_empty() {
            return Err(AttachError::NoOutput);
        }

        // 1. The subject: the image's manifest, by digest (or by tag, which resolves it).
        let source = match &image.digest {
            Some(d) => Reference::with_digest(image.registry.clone(), image.repository.clone(), d.clone()),
            None => Reference::with_tag(
                image.registry.clone(),
                image.repository.clone(),
                image.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let pulling = self.client()?;
        let (body, digest) = pulling
            .pull_manifest_raw(
                &source,
                &self.pull_auth(job),
                &[
                    OCI_IMAGE_MEDIA_TYPE,
                    OCI_IMAGE_INDEX_MEDIA_TYPE,
                    IMAGE_MANIFEST_MEDIA_TYPE,
                    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
                ],
            )
            .await
            .map_err(|e| AttachError::Manifest {
                reference: source.whole(),
                why: chain(&e),
            })?;
        let subject = Subject {
            media_type: manifest_media_type(&body),
            digest,
            size: body.len(),
        };
        debug!(subject = %subject.digest, media_type = %subject.media_type, "resolved the image");

        // 2. The target repository and tag.
        let (registry, repository) = match &self.settings.repository {
            Some(r) => (r.registry.clone(), r.repository.clone()),
            None => (image.registry.clone(), image.repository.clone()),
        };
        let tag = fallback_tag(&subject.digest, &self.settings.suffix)?;
        let target = Reference::with_tag(registry.clone(), repository.clone(), tag.clone());
        let shown = format!("{registry}/{repository}:{tag}");
        let pushing = self.client()?;
        let auth = self.push_auth(job, &registry);
        let fail = |step: &str, e: &oci_client::errors::OciDistributionError| AttachError::Push {
            step: step.to_owned(),
            repository: format!("{registry}/{repository}"),
            why: chain(e),
        };
        pushing
            .auth(&target, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| fail("authenticate", &e))?;

        // 3. Blobs: the files and the empty config.
        let mut layers = Vec::new();
        let mut names = Vec::new();
        for path in files {
            let data = tokio::fs::read(path)
                .await
                .map_err(|source| AttachError::ReadOutput {
                    path: path.display().to_string(),
                    source,
                })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let digest = sha256(&data);
            let size = data.len();
            push_blob(&pushing, &target, data, &digest)
                .await
                .map_err(|e| fail(&format!("push {name}"), &e))?;
            layers.push(json!({
                "mediaType": media_type_for(&name),
                "digest": digest,
                "size": size,
                "annotations": { TITLE: name },
            }));
            names.push(name);
        }
        let empty = sha256(EMPTY_BLOB);
        push_blob(&pushing, &target, EMPTY_BLOB.to_vec(), &empty)
            .await
            .map_err(|e| fail("push the empty config blob", &e))?;

        // 4. The manifest, under the fallback tag.
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let kind = artifact_type(self.settings.artifact_type.as_deref(), &name_refs);
        let facts = files.iter().find_map(|f| crate::report::facts_of(f));
        let annotations = self.annotations(facts.as_ref());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "artifactType": kind,
            "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": empty, "size": EMPTY_BLOB.len() },
            "layers": layers,
            "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size },
            "annotations": annotations,
        });
        let body = serde_json::to_vec(&manifest).expect("a JSON value serialises");
        let digest = sha256(&body);
        let descriptor = json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": body.len(),
            "artifactType": kind,
            "annotations": annotations,
        });
        pushing
            .push_manifest_raw(
                &target,
                body,
                http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
            )
            .await
            .map_err(|e| fail("push the artifact manifest", &e))?;

        // 5. Registries without the referrers API: the referrers tag schema's index. The artifact
        //    is attached either way (and found by its own tag): a failure here is only logged.
        let subject_ref =
            Reference::with_digest(registry.clone(), repository.clone(), subject.digest.clone());
        if let Err(e) = list_as_referrer(&pushing, &subject_ref, &digest, descriptor).await {
            warn!(subject = %subject.digest, error = %chain(&e), "could not add the artifact to the referrers tag schema's index; other clusters may not find it");
        }
        let attached = Attached {
            target: shown,
            repository: format!("{registry}/{repository}"),
            digest,
            subject: subject.digest,
            files: files.len(),
            media_type: artifact_type(None, &name_refs),
            artifact_type: kind,
            facts,
        };
        info!(
            artifact = %attached.target,
            digest = %attached.digest,
            subject = %attached.subject,
            files = attached.files,
            "attached the output"
        );
        Ok(attached)
    }
}

/// oci-client 0.18 cannot create a client, not even for plain HTTP, unless the system has at
/// least one CA certificate where rustls-native-certs looks (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
/// `/etc/ssl/certs/ca-certificates.crt`, ...): say so at start rather than panic per image.
fn check_ca_certificates() -> Result<(), AttachError> {
    let found = rustls_native_certs::load_native_certs();
    if !found.certs.is_empty() {
        return Ok(());
    }
    let why = found
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(AttachError::NoCaCertificates(if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    }))
}

/// The settings identity the operator gave the Job, when it is one (64 lower-case hex digits);
/// anything else is ignored with a warning: the artifact is then found by no one's identity.
fn settings_identity_from_env() -> Option<String> {
    let value = std::env::var(SETTINGS_IDENTITY_ENV)
        .ok()
        .filter(|v| !v.is_empty())?;
    if value.len() == 64 && value.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        Some(value)
    } else {
        warn!(
            "{SETTINGS_IDENTITY_ENV} is not a settings identity (64 hex digits); artifacts are attached without one"
        );
        None
    }
}

/// The referrers tag schema's index (distribution-spec 1.1) with `descriptor` added: the index
/// the tag held (`None`: none yet, or one that is not an index, which is replaced), without an
/// earlier entry of the same digest.
pub fn referrers_index(current: Option<&[u8]>, descriptor: Value) -> Value {
    let mut manifests: Vec<Value> = current
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    manifests.retain(|m| m.get("digest") != descriptor.get("digest"));
    manifests.push(descriptor);
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": manifests,
    })
}

/// Makes the artifact `digest` findable among the subject's referrers: nothing to do when the
/// registry lists it already (the referrers API, or a tag index that has it); else the tag
/// `<alg>-<hex>` is set to an index with its descriptor added ([`referrers_index`]). Two Jobs
/// attaching to one image at the same instant may lose one entry (the schema has no locking);
/// the artifact itself stays, and the next attach adds it again.
async fn list_as_referrer(
    client: &Client,
    subject: &Reference,
    digest: &str,
    descriptor: Value,
) -> Result<(), oci_client::errors::OciDistributionError> {
    let listed = client.pull_referrers(subject, None).await?;
    if listed.manifests.iter().any(|m| m.digest == digest) {
        return Ok(());
    }
    let subject_digest = subject.digest().unwrap_or_default();
    let tag = Reference::with_tag(
        subject.registry().to_owned(),
        subject.repository().to_owned(),
        subject_digest.replacen(':', "-", 1),
    );
    let current = match client
        .pull_manifest_raw(&tag, &RegistryAuth::Anonymous, &[OCI_IMAGE_INDEX_MEDIA_TYPE])
        .await
    {
        Ok((bytes, _)) => Some(bytes),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    let index = referrers_index(current.as_deref(), descriptor);
    client
        .push_manifest_raw(
            &tag,
            serde_json::to_vec(&index).expect("a JSON value serialises"),
            http::HeaderValue::from_static(OCI_IMAGE_INDEX_MEDIA_TYPE),
        )
        .await?;
    debug!(tag = %tag.whole(), "updated the referrers tag schema's index");
    Ok(())
}

/// Whether the registry said the manifest does not exist.
fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::ServerError { code, .. } => *code == 404,
        E::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown)),
        _ => false,
    }
}

/// Uploads a blob unless the repository has it already.
async fn push_blob(
    client: &Client,
    target: &Reference,
    data: Vec<u8>,
    digest: &str,
) -> Result<(), oci_client::errors::OciDistributionError> {
    if client.blob_exists(target, digest).await? {
        return Ok(());
    }
    client.push_blob(target, data, digest).await.map(|_| ())
}

/// The manifest's `mediaType`; OCI manifests may leave it out, then `manifests` marks an index.
fn manifest_media_type(body: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match doc.get("mediaType").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ if doc.get("manifests").is_some() => OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned(),
        _ => OCI_IMAGE_MEDIA_TYPE.to_owned(),
    }
}

pub fn sha256(data: &[u8]) -> String {
    let mut out = String::from("sha256:");
    for b in Sha256::digest(data) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An error and its sources on one line (reqwest puts the cause, e.g. "connection refused",
/// only in the source), with a hint when TLS was spoken to a plain-HTTP registry.
fn chain(e: &dyn std::error::Error) -> String {
    let text = sources(e);
    if text.contains("InvalidContentType") {
        format!("{text} (a plain-HTTP registry? list it in {PREFIX}ATTACH_INSECURE_REGISTRIES)")
    } else {
        text
    }
}

fn sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            let _ = write!(text, ": {s_text}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use sbomjob_contract::ImageConfig;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tag_names() {
        assert_eq!(
            fallback_tag(D, "sbom").unwrap(),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sbom"
        );
        assert_eq!(
            fallback_tag(D, "spdx.json").unwrap(),
            format!("sha256-{}.spdx.json", &D[7..])
        );
        // The longest suffix the setting allows still makes a valid tag, one more does not.
        let longest = "s".repeat(crate::settings::MAX_ATTACH_SUFFIX);
        assert_eq!(fallback_tag(D, &longest).unwrap().len(), 128);
        assert!(fallback_tag(D, &format!("{longest}s")).is_err());
        // sha512 digests do not fit into a tag with a suffix.
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert!(matches!(
            fallback_tag(&sha512, "sbom"),
            Err(AttachError::BadTag { digest, .. }) if digest == sha512
        ));
    }

    #[test]
    fn the_tag_schema_index_gains_the_artifact_once_and_keeps_the_others() {
        let ours = json!({"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": "sha256:new", "size": 3, "artifactType": SPDX_JSON});
        let fresh = referrers_index(None, ours.clone());
        assert_eq!(fresh["mediaType"], OCI_IMAGE_INDEX_MEDIA_TYPE);
        assert_eq!(fresh["manifests"], json!([ours]));
        let other = json!({"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": "sha256:sig", "size": 9});
        let before = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [other, ours]})).unwrap();
        let again = referrers_index(Some(&before), ours.clone());
        assert_eq!(
            again["manifests"],
            json!([other, ours]),
            "no duplicate, others kept"
        );
        // What the tag held was no index (a stray image): replaced by one.
        let junk = referrers_index(Some(b"not json"), ours.clone());
        assert_eq!(junk["manifests"], json!([ours]));
    }

    #[test]
    fn media_types_from_file_names() {
        let cases = [
            ("x_1.0.spdx.json", SPDX_JSON),
            ("X.SPDX.JSON", SPDX_JSON),
            ("x.syft.spdx.json", SPDX_JSON),
            ("x.spdx", SPDX_TEXT),
            ("x.cdx.json", CYCLONEDX_JSON),
            ("x.cyclonedx.json", CYCLONEDX_JSON),
            ("x.cdx.xml", CYCLONEDX_XML),
            ("x.cyclonedx.xml", CYCLONEDX_XML),
            ("x.json", OCTET_STREAM),
            ("x.syft.json", OCTET_STREAM),
            ("x.oci.tar", OCTET_STREAM),
            ("x.spdx.json.gz", OCTET_STREAM),
        ];
        for (name, want) in cases {
            assert_eq!(media_type_for(name), want, "{name}");
        }
    }

    #[test]
    fn artifact_type_from_files_or_setting() {
        assert_eq!(artifact_type(None, &["a.spdx.json"]), SPDX_JSON);
        assert_eq!(
            artifact_type(None, &["a.cdx.json", "a.cyclonedx.json"]),
            CYCLONEDX_JSON
        );
        assert_eq!(artifact_type(None, &["a.cdx.json", "a.spdx.json"]), OCTET_STREAM);
        assert_eq!(artifact_type(None, &["a.txt"]), OCTET_STREAM);
        assert_eq!(artifact_type(None, &[]), OCTET_STREAM);
        assert_eq!(
            artifact_type(Some("application/vnd.acme+json"), &["a.spdx.json"]),
            "application/vnd.acme+json"
        );
    }

    #[test]
    fn docker_config_entries() {
        let doc = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": STANDARD.encode("hub:pw:with:colons")},
                "http://10.244.0.1:5000/v2/": {"username": "u", "password": "pass"},
                "ghcr.io": {"registrytoken": "tok-en"},
                "unused.example": {"identitytoken": "idtoken"},
                "empty.example": {},
            },
            "credsStore": "desktop",
        });
        let auths = DockerAuths::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            auths.get("docker.io"),
            Some(&RegistryAuth::Basic("hub".into(), "pw:with:colons".into()))
        );
        assert_eq!(
            auths.get("10.244.0.1:5000"),
            Some(&RegistryAuth::Basic("u".into(), "pass".into()))
        );
        assert_eq!(auths.get("ghcr.io"), Some(&RegistryAuth::Bearer("tok-en".into())));
        assert_eq!(auths.get("empty.example"), None);
        assert_eq!(auths.get("quay.io"), None);
        let forms = auths.credentials().forms();
        for s in [
            "pw:with:colons",
            "tok-en",
            "idtoken",
            &STANDARD.encode("u:pass"),
            &STANDARD.encode("hub:pw:with:colons"),
        ] {
            assert!(forms.iter().any(|x| x == s), "{s}");
        }
        assert!(!format!("{auths:?}").contains("pw:with"));

        assert!(DockerAuths::parse(b"{}").unwrap().get("x").is_none());
        assert!(
            DockerAuths::parse(b"nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(DockerAuths::parse(b"[]").is_err());
        let bad = serde_json::json!({"auths": {"r": {"auth": "!!"}}}).to_string();
        assert!(
            DockerAuths::parse(bad.as_bytes())
                .unwrap_err()
                .contains(r#"entry "r": `auth` is not base64"#)
        );
        let no_colon = serde_json::json!({"auths": {"r": {"auth": STANDARD.encode("x")}}}).to_string();
        assert!(DockerAuths::parse(no_colon.as_bytes()).is_err());
    }

    fn job(image: &str, host: &str, user: &str, password: &str) -> Job {
        let config = ImageConfig {
            registry_host: host.into(),
            registry_user: user.into(),
            registry_password: password.into(),
            image: image.into(),
            ..Default::default()
        };
        crate::work::plan_valid(vec![config], Path::new("/o")).remove(0)
    }

    fn attacher(docker: &[(&str, RegistryAuth)]) -> Attacher {
        Attacher {
            settings: AttachSettings {
                suffix: "sbom".into(),
                artifact_type: None,
                repository: None,
                docker_config: None,
                insecure_registries: vec![],
            },
            docker: DockerAuths {
                auths: docker.iter().map(|(h, a)| (h.to_string(), a.clone())).collect(),
                credentials: Credentials::default(),
            },
            timeout: None,
            settings_identity: None,
        }
    }

    #[test]
    fn which_credentials() {
        let basic = |u: &str, p: &str| RegistryAuth::Basic(u.into(), p.into());
        let own = job("reg:5000/team/app:1", "", "img", "imgpw");
        let none = attacher(&[]);
        assert_eq!(none.pull_auth(&own), basic("img", "imgpw"));
        assert_eq!(none.push_auth(&own, "reg:5000"), basic("img", "imgpw"));
        // The image's credentials never go to another registry.
        assert_eq!(none.push_auth(&own, "store:5000"), RegistryAuth::Anonymous);

        let docker = attacher(&[
            ("reg:5000", basic("pusher", "x")),
            ("store:5000", basic("s", "y")),
        ]);
        // Reading the image: its own credentials first; pushing: the docker config first.
        assert_eq!(docker.pull_auth(&own), basic("img", "imgpw"));
        assert_eq!(docker.push_auth(&own, "reg:5000"), basic("pusher", "x"));
        assert_eq!(docker.push_auth(&own, "store:5000"), basic("s", "y"));
        let anonymous = job("reg:5000/team/app:1", "", "", "");
        assert_eq!(docker.pull_auth(&anonymous), basic("pusher", "x"));
        assert_eq!(none.pull_auth(&anonymous), RegistryAuth::Anonymous);
        // Credentials for another registry than the image's do not apply to it.
        let elsewhere = job("reg:5000/team/app:1", "ghcr.io", "img", "imgpw");
        assert_eq!(none.pull_auth(&elsewhere), RegistryAuth::Anonymous);
    }

    #[test]
    fn subject_media_type() {
        let t = |s: &str| manifest_media_type(s.as_bytes());
        assert_eq!(
            t(r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#),
            IMAGE_MANIFEST_MEDIA_TYPE
        );
        assert_eq!(
            t(r#"{"schemaVersion":2,"manifests":[]}"#),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        assert_eq!(t(r#"{"schemaVersion":2,"layers":[]}"#), OCI_IMAGE_MEDIA_TYPE);
    }

    #[test]
    fn sha256_of_the_empty_config() {
        // The image-spec's well-known digest of `{}`.
        assert_eq!(
            sha256(EMPTY_BLOB),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn only_files_the_run_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let configs = ["a/b:1", "a/b:1.0", "a/c:2"]
            .iter()
            .map(|i| ImageConfig {
                image: (*i).into(),
                ..Default::default()
            })
            .collect();
        let jobs = crate::work::plan_valid(configs, dir.path());
        let (one, one_dot_zero) = (&jobs[0], &jobs[1]);
        assert_eq!(one.other_stems, ["docker.io_a_b_1.0"]);
        assert!(one_dot_zero.other_stems.is_empty());
        let write = |name: &str| fs_write(dir.path().join(name));
        write("docker.io_a_b_1.old");
        let before = OutputsBefore::take(one);
        write("docker.io_a_b_1.spdx.json");
        write("docker.io_a_b_1.stdout");
        write("docker.io_a_b_1.stderr");
        write("docker.io_a_b_1.0.spdx.json"); // the other image's
        write("docker.io_a_b_10.spdx.json"); // no dot after the stem
        std::fs::create_dir(dir.path().join("docker.io_a_b_1.dir")).unwrap();
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(before.written(one).unwrap()), ["docker.io_a_b_1.spdx.json"]);
        assert_eq!(
            names(OutputsBefore::default().written(one_dot_zero).unwrap()),
            ["docker.io_a_b_1.0.spdx.json"]
        );
        // Rewritten during the run: attached again.
        let old = dir.path().join("docker.io_a_b_1.old");
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            names(before.written(one).unwrap()),
            ["docker.io_a_b_1.old", "docker.io_a_b_1.spdx.json"]
        );
        // A missing output directory is just no files.
        let gone = crate::work::plan_valid(
            vec![ImageConfig {
                image: "x:1".into(),
                ..Default::default()
            }],
            &dir.path().join("missing"),
        );
        assert!(OutputsBefore::default().written(&gone[0]).unwrap().is_empty());
    }

    fn fs_write(path: PathBuf) {
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn error_chains_keep_the_cause() {
        let io = std::io::Error::other("connection refused");
        let outer = oci_client::errors::OciDistributionError::IoError(io);
        assert_eq!(chain(&outer), "connection refused");
    }
}
