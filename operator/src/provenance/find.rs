//! What is attached to a digest in its registry: cosign's signature (`sha256-<hex>.sig`) and
//! attestation (`sha256-<hex>.att`) manifests, their layers read to a bound and checked against
//! their digests. The verdicts are [`super::assess`]'s.

use sha2::{Digest as _, Sha256};

use super::verify::{MAX_ENVELOPE, MAX_PAYLOAD, SIGNATURE_ANNOTATION};
use crate::registry::{MANIFEST_MEDIA_TYPE, RegistryError, Repository};

/// Layers read per signature or attestation manifest, at most.
const MAX_LAYERS: usize = 16;
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The signatures and attestations attached to one digest, as read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attached {
    /// (payload, base64 signature from the layer's annotation).
    pub signatures: Vec<(Vec<u8>, Option<String>)>,
    /// DSSE envelopes.
    pub attestations: Vec<Vec<u8>>,
    /// Layers that could not be read (too large, wrong digest, not found): said, not trusted.
    pub unreadable: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(serde::Deserialize)]
struct Layer {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Reads what cosign attached to `digest` (`sha256:<hex>`) in `repo`.
pub async fn attached(repo: &Repository<'_>, digest: &str) -> Result<Attached, RegistryError> {
    let tag = digest.replacen(':', "-", 1);
    let mut out = Attached::default();
    for (suffix, most) in [("sig", MAX_PAYLOAD), ("att", MAX_ENVELOPE)] {
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {DOCKER_MANIFEST_MEDIA_TYPE}");
        let a = repo
            .answer_of(&format!("manifests/{tag}.{suffix}"), &accept)
            .await
            .map_err(RegistryError::Request)?;
        match a.status {
            200 => {}
            404 => continue,
            401 | 403 => return Err(RegistryError::Denied(a.status)),
            other => return Err(RegistryError::Status(other)),
        }
        let m: Manifest = serde_json::from_slice(&a.body)
            .map_err(|e| RegistryError::Malformed(format!("{tag}.{suffix}: {e}")))?;
        for layer in m.layers.into_iter().take(MAX_LAYERS) {
            match blob(repo, &layer, most).await {
                Ok(body) if suffix == "sig" => out
                    .signatures
                    .push((body, layer.annotations.get(SIGNATURE_ANNOTATION).cloned())),
                Ok(body) => out.attestations.push(body),
                Err(why) => out
                    .unreadable
                    .push(format!("{tag}.{suffix} layer {}: {why}", layer.digest)),
            }
        }
    }
    Ok(out)
}

/// A layer's blob, at most `most` bytes, whose SHA-256 is the digest the manifest names.
async fn blob(repo: &Repository<'_>, layer: &Layer, most: usize) -> Result<Vec<u8>, String> {
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("not a sha256 digest")?;
    if layer.size > most as u64 {
        return Err(format!("larger than {most} bytes"));
    }
    let (status, body) = repo.get(&format!("blobs/{}", layer.digest), "*/*").await?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    if body.len() > most {
        return Err(format!("larger than {most} bytes"));
    }
    if format!("{:x}", Sha256::digest(&body)) != hex.to_ascii_lowercase() {
        return Err("its content does not match its digest".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        provenance::verify::tests::{DIGEST, Signer, payload},
        registry::{http_client, test_server::serve},
    };

    fn sha(b: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(b))
    }

    /// A `.sig` manifest with a good layer and one whose blob is not what its digest says; a
    /// `.att` manifest with one envelope; blobs served from the registry's blob path.
    #[tokio::test]
    async fn signatures_and_attestations_are_read_and_checked_against_their_digests() {
        let s = Signer::new();
        let p = payload(DIGEST);
        let sig = s.sign(&p);
        let envelope = s.envelope(b"{}");
        let forged = b"forged".to_vec();
        let wrong_digest = sha(b"the original");
        let tag = DIGEST.replacen(':', "-", 1);
        let sig_manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "layers": [
                {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": sha(&p), "size": p.len(),
                 "annotations": {SIGNATURE_ANNOTATION: sig}},
                {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": wrong_digest, "size": 6}
            ]
        }))
        .unwrap();
        let att_manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": sha(&envelope), "size": envelope.len()}]
        }))
        .unwrap();
        let blobs = [
            (format!("/v2/app/blobs/{}", sha(&p)), p.clone()),
            (format!("/v2/app/blobs/{wrong_digest}"), forged),
            (format!("/v2/app/blobs/{}", sha(&envelope)), envelope.clone()),
            (format!("/v2/app/manifests/{tag}.sig"), sig_manifest),
            (format!("/v2/app/manifests/{tag}.att"), att_manifest),
        ];
        let (addr, _) = serve(move |path, _, _| {
            blobs
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, b)| (200, vec![], b.clone()))
                .unwrap_or((404, vec![], b"{}".to_vec()))
        })
        .await;
        let http = http_client().unwrap();
        let repo = Repository::new(&http, &addr, "app", None, true);
        let found = attached(&repo, DIGEST).await.unwrap();
        assert_eq!(found.signatures, vec![(p, Some(sig))]);
        assert_eq!(found.attestations, vec![envelope]);
        assert_eq!(found.unreadable.len(), 1);
        assert!(
            found.unreadable[0].contains("does not match"),
            "{:?}",
            found.unreadable
        );
        // Nothing attached: nothing found, no error.
        let other = Repository::new(&http, &addr, "other", None, true);
        assert_eq!(attached(&other, DIGEST).await.unwrap(), Attached::default());
    }
}
