//! Provenance of a digest: what cosign attached to it in the registry ([`find`]), its
//! signatures and attestations verified against the trust policy's keys ([`verify`]), and the
//! SLSA provenance of a verified attestation ([`slsa`]). [`assess`] is the pure verdict.
//!
//! The tests hold it to real cosign v2 output too (key-based, offline), kept in `fixtures/`.

pub mod find;
pub mod slsa;
pub mod verify;

#[cfg(test)]
mod fixtures;

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
            registry::{Repository, http_client, test_server::serve},
        };
        let tag = |d: &str| d.replacen(':', "-", 1);
        let mut files: Vec<(String, Vec<u8>)> = vec![];
        for (repo, digest, manifest, blobs) in [
            ("app", f::X, f::A_SIGNS_X_MANIFEST, vec![f::A_SIGNS_X_PAYLOAD]),
            ("app", f::Y, f::A_SIGNS_X_MANIFEST, vec![]),
            ("other", f::Y, f::B_SIGNS_Y_MANIFEST, vec![f::B_SIGNS_Y_PAYLOAD]),
        ] {
            files.push((
                format!("/v2/sbomjob/{repo}/manifests/{}.sig", tag(digest)),
                manifest.to_vec(),
            ));
            for (layer, blob) in f::layers(manifest, "").into_iter().zip(blobs) {
                files.push((format!("/v2/sbomjob/{repo}/blobs/{}", layer.0), blob.to_vec()));
            }
        }
        for digest in [f::X, f::Y] {
            let path = format!("/v2/sbomjob/app/manifests/{}.att", tag(digest));
            files.push((path, f::A_ATTESTS_X_MANIFEST.to_vec()));
        }
        for (layer, blob) in f::layers(f::A_ATTESTS_X_MANIFEST, "")
            .into_iter()
            .zip([f::A_ATTESTS_X_SLSA02, f::A_ATTESTS_X_SLSA1])
        {
            files.push((format!("/v2/sbomjob/app/blobs/{}", layer.0), blob.to_vec()));
        }
        let (addr, _) = serve(move |path, _, _| {
            files
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, b)| (200, vec![], b.clone()))
                .unwrap_or((
                    404,
                    vec![],
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
                ))
        })
        .await;
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
