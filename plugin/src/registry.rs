//! The SBOMs in the registry: an artifact (`registry/repository@sha256:…`, as an ImageRecord's
//! `status.artifacts` names it) is read as its manifest, then its first layer, checked against
//! the layer's digest and kept in a local cache by the artifact's digest (content-addressed, so
//! never stale): the second query reads no registry.

use std::path::{Path, PathBuf};

use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    manifest::OciManifest,
    secrets::RegistryAuth,
};
use sha2::{Digest as _, Sha256};

/// Why an SBOM could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0:?} is not `registry/repository@sha256:<hex>`")]
    Reference(String),
    #[error("cannot read the manifest of {reference}: {why}")]
    Manifest { reference: String, why: String },
    #[error("the artifact {0} has no layer")]
    NoLayer(String),
    #[error("cannot read layer {digest} of {reference}: {why}")]
    Blob {
        reference: String,
        digest: String,
        why: String,
    },
    #[error("layer {digest} of {reference} does not match its digest")]
    Corrupt { reference: String, digest: String },
}

/// Reads SBOM artifacts, with a cache directory.
pub struct Registry {
    client: Client,
    cache: Option<PathBuf>,
}

impl Registry {
    /// `insecure`: registries spoken to over plain HTTP (`host:port`).
    pub fn new(insecure: Vec<String>, cache: Option<PathBuf>) -> Registry {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(insecure)
            },
            user_agent: concat!("kubectl-sbomjob/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Registry {
            client: Client::new(config),
            cache,
        }
    }

    /// The registry host of an artifact reference.
    pub fn host_of(reference: &str) -> Option<String> {
        reference
            .parse::<Reference>()
            .ok()
            .map(|r| r.registry().to_string())
    }

    /// The bytes of the artifact's first layer (the SBOM).
    pub async fn sbom(&self, artifact: &str, auth: &RegistryAuth) -> Result<Vec<u8>, FetchError> {
        let reference: Reference = artifact
            .parse()
            .map_err(|_| FetchError::Reference(artifact.to_string()))?;
        let Some(digest) = reference.digest().map(str::to_string) else {
            return Err(FetchError::Reference(artifact.to_string()));
        };
        if let Some(bytes) = self.cached(&digest) {
            return Ok(bytes);
        }
        let (manifest, _) =
            self.client
                .pull_manifest(&reference, auth)
                .await
                .map_err(|e| FetchError::Manifest {
                    reference: artifact.to_string(),
                    why: e.to_string(),
                })?;
        let layer = match manifest {
            OciManifest::Image(m) => m.layers.into_iter().next(),
            OciManifest::ImageIndex(_) => None,
        }
        .ok_or_else(|| FetchError::NoLayer(artifact.to_string()))?;
        let mut bytes = Vec::new();
        self.client
            .pull_blob(&reference, &layer, &mut bytes)
            .await
            .map_err(|e| FetchError::Blob {
                reference: artifact.to_string(),
                digest: layer.digest.clone(),
                why: e.to_string(),
            })?;
        if format!("sha256:{:x}", Sha256::digest(&bytes)) != layer.digest {
            return Err(FetchError::Corrupt {
                reference: artifact.to_string(),
                digest: layer.digest,
            });
        }
        self.keep(&digest, &bytes);
        Ok(bytes)
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let file = digest.replace(':', "-");
        (file.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| self.cache.as_ref().map(|d| d.join(file)))
            .flatten()
    }

    fn cached(&self, digest: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(digest)?).ok()
    }

    /// Best effort: a cache that cannot be written only costs the next query a download.
    fn keep(&self, digest: &str, bytes: &[u8]) {
        let Some(path) = self.path(digest) else { return };
        if let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }
}

/// `$XDG_CACHE_HOME/sbomjob/sboms`, else `~/.cache/sbomjob/sboms`.
pub fn default_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("sbomjob").join("sboms"))
}
