//! Provenance of a digest: what cosign attached to it in the registry ([`find`]), its
//! signatures and attestations verified against the trust policy's keys ([`verify`]), and the
//! SLSA provenance of a verified attestation ([`slsa`]). [`assess`] is the pure verdict.
//!
//! The tests hold it to real cosign v2 output too (key-based, offline), kept in `fixtures/`.

pub mod find;
pub mod policy;
pub mod slsa;
pub mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::cache::{ProvenanceStatus, SlsaSummary};

use self::{
    find::Attached,
    slsa::Provenance,
    verify::{SignatureLayer, TrustedKey, Verdict},
};

/// What the record says about one digest's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub signature: Verdict,
    /// `None`: no attestation attached.
    pub attestation: Option<Verdict>,
    /// From the first verified attestation that is SLSA provenance.
    pub provenance: Option<Provenance>,
}

impl Assessment {
    /// What the record keeps of it.
    pub fn status(&self, now: chrono::DateTime<chrono::Utc>) -> ProvenanceStatus {
        ProvenanceStatus {
            signature: self.signature.status().into(),
            signature_reason: self.signature.reason(),
            attestation: self.attestation.as_ref().map(|v| v.status().into()),
            attestation_reason: self.attestation.as_ref().map(Verdict::reason),
            slsa: self.provenance.as_ref().map(|p| SlsaSummary {
                version: p.slsa_version.into(),
                builder_id: p.builder_id.clone(),
                source_repository: p.source_repository.clone(),
                source_commit: p.source_commit.clone(),
            }),
            checked_at: now,
        }
    }
}

/// The record's word when the registry could not be read: nothing is known either way.
pub fn unchecked(reason: String, now: chrono::DateTime<chrono::Utc>) -> ProvenanceStatus {
    ProvenanceStatus {
        signature: "unchecked".into(),
        signature_reason: reason.chars().take(512).collect(),
        attestation: None,
        attestation_reason: None,
        slsa: None,
        checked_at: now,
    }
}

/// The verdicts on what is attached to `digest`.
pub fn assess(digest: &str, attached: &Attached, keys: &[TrustedKey]) -> Assessment {
    let layers: Vec<SignatureLayer<'_>> = attached
        .signatures
        .iter()
        .map(|(payload, sig)| SignatureLayer {
            payload,
            signature: sig.as_deref(),
        })
        .collect();
    let mut signature = verify::verify_signatures(digest, &layers, keys);
    // Layers named in the manifest but not readable (wrong content, too large): with nothing
    // better, that is an invalid signature, not an unsigned image.
    if signature == Verdict::Unsigned
        && let Some(why) = attached.unreadable.iter().find(|u| u.contains(".sig "))
    {
        signature = Verdict::InvalidSignature { reason: why.clone() };
    }
    let checked: Vec<verify::Attestation> = attached
        .attestations
        .iter()
        .map(|e| verify::verify_envelope(digest, e, keys))
        .collect();
    let attestation = checked.iter().map(|a| a.verdict.clone()).min();
    let provenance = checked
        .iter()
        .filter_map(|a| a.statement.as_deref())
        .find_map(|st| slsa::parse(st).ok());
    Assessment {
        signature,
        attestation,
        provenance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::verify::tests::{DIGEST, Signer, payload};

    fn provenance_statement(hex: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "app", "digest": {"sha256": hex}}],
            "predicateType": slsa::PREDICATE_V02,
            "predicate": {
                "builder": {"id": "https://ci.example/builder"},
                "invocation": {"configSource": {"uri": "git+https://git.example/app@refs/heads/main", "digest": {"sha1": "abc123"}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_signed_and_attested_digest_shows_its_builder_and_source() {
        let s = Signer::new();
        let p = payload(DIGEST);
        let hex = DIGEST.strip_prefix("sha256:").unwrap();
        let attached = Attached {
            signatures: vec![(p.clone(), Some(s.sign(&p)))],
            attestations: vec![s.envelope(&provenance_statement(hex))],
            unreadable: vec![],
        };
        let a = assess(DIGEST, &attached, &[s.key("release")]);
        assert_eq!(a.signature.status(), "verified");
        assert_eq!(a.attestation.as_ref().map(Verdict::status), Some("verified"));
        let prov = a.provenance.unwrap();
        assert_eq!(prov.builder_id, "https://ci.example/builder");
        assert_eq!(
            prov.source_repository.as_deref(),
            Some("git+https://git.example/app")
        );
    }

    #[test]
    fn an_untrusted_attestation_is_not_read() {
        let (s, other) = (Signer::new(), Signer::new());
        let hex = DIGEST.strip_prefix("sha256:").unwrap();
        let attached = Attached {
            attestations: vec![other.envelope(&provenance_statement(hex))],
            ..Default::default()
        };
        let a = assess(DIGEST, &attached, &[s.key("k")]);
        assert_eq!(a.signature, Verdict::Unsigned);
        assert_eq!(a.attestation.map(|v| v.status()), Some("untrusted-signer"));
        assert_eq!(a.provenance, None);
    }

    /// cosign's own output (fixtures/) served at the paths it pushed it to, with X's `.sig` and
    /// `.att` manifests also under Y's tags in the same repository (the tampered case): read,
    /// checked and assessed as the operator does.
    #[tokio::test]
    async fn real_cosign_output_from_a_registry() {
        use crate::{
            provenance::{find::attached, fixtures as f},
            registry::{Repository, http_client},
        };
        let addr = f::registry().await;
        let http = http_client().unwrap();
        let (app, other) = (
            Repository::new(&http, &addr, "sbomjob/app", None, true),
            Repository::new(&http, &addr, "sbomjob/other", None, true),
        );
        let (a, b) = (f::key_a(), f::key_b());

        let found = attached(&app, f::X).await.unwrap();
        assert_eq!((found.signatures.len(), found.attestations.len()), (1, 2));
        assert!(found.unreadable.is_empty(), "{:?}", found.unreadable);
        let x = assess(f::X, &found, &[b.clone(), a.clone()]);
        assert_eq!(x.signature, Verdict::Verified { key: "a".into() });
        assert_eq!(x.attestation, Some(Verdict::Verified { key: "a".into() }));
        let prov = x.provenance.unwrap();
        assert_eq!((prov.slsa_version, &*prov.builder_id), ("v0.2", f::V02_BUILDER));
        assert_eq!(prov.source_repository.as_deref(), Some(f::SOURCE_REPOSITORY));
        assert_eq!(prov.source_commit.as_deref(), Some(f::V02_COMMIT));

        let x = assess(f::X, &found, std::slice::from_ref(&b));
        assert_eq!(x.signature.status(), "untrusted-signer");
        assert_eq!(
            x.attestation.as_ref().map(Verdict::status),
            Some("untrusted-signer")
        );
        assert_eq!(x.provenance, None);

        let y = assess(
            f::Y,
            &attached(&app, f::Y).await.unwrap(),
            &[a.clone(), b.clone()],
        );
        assert_eq!(y.signature.status(), "tampered");
        assert_eq!(y.attestation.as_ref().map(Verdict::status), Some("tampered"));
        assert_eq!(y.provenance, None);

        let y = assess(f::Y, &attached(&other, f::Y).await.unwrap(), &[a, b]);
        assert_eq!(y.signature, Verdict::Verified { key: "b".into() });
        assert_eq!(y.attestation, None);
    }

    #[test]
    fn unreadable_signature_layers_are_invalid_not_unsigned() {
        let attached = Attached {
            unreadable: vec!["sha256-11.sig layer sha256:22: its content does not match its digest".into()],
            ..Default::default()
        };
        let a = assess(DIGEST, &attached, &[]);
        assert_eq!(a.signature.status(), "invalid-signature");
        assert_eq!(a.attestation, None);
    }
}
