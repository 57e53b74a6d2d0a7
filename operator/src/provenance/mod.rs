//! Provenance of a digest: what cosign attached to it in the registry ([`find`]), its
//! signatures and attestations verified against the trust policy's keys ([`verify`]), and the
//! SLSA provenance of a verified attestation ([`slsa`]). [`assess`] is the pure verdict.

pub mod find;
pub mod slsa;
pub mod verify;

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
