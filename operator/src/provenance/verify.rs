//! Signatures and attestations checked against trusted keys: cosign's simple-signing payloads
//! (`.sig`) and DSSE envelopes of in-toto statements (`.att`). Pure: the shell fetches the
//! signature manifests' layers from the registry and hands them here with the image's digest.
//!
//! Keys are ECDSA P-256 with SHA-256 (what `cosign generate-key-pair` makes), given as PEM
//! `PUBLIC KEY`; the signature check is ring's (already in the tree through rustls).

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rustls::pki_types::{SubjectPublicKeyInfoDer, pem::PemObject};
use serde::Deserialize;

/// The payload of one cosign signature: it is small (a digest and a few names).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// One DSSE envelope (an attestation with its materials).
pub const MAX_ENVELOPE: usize = 1024 * 1024;
/// An ECDSA P-256 signature in DER is at most 72 bytes; base64 with slack.
const MAX_SIGNATURE_B64: usize = 512;

/// DER is canonical, so every P-256 SubjectPublicKeyInfo is these 26 bytes (SEQUENCE, the
/// algorithm `id-ecPublicKey` with the curve `prime256v1`, BIT STRING with no unused bits)
/// followed by the 65-byte uncompressed point. Comparing the prefix is parsing it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key {name:?}: no PEM PUBLIC KEY block ({message})")]
    Pem { name: String, message: String },
    #[error("key {name:?}: not an ECDSA P-256 public key (the only kind cosign's key pairs are)")]
    NotP256 { name: String },
}

/// A public key the trust policy trusts, by the name the policy gives it.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    point: Vec<u8>,
}

impl TrustedKey {
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|e| KeyError::Pem {
            name: name.into(),
            message: e.to_string(),
        })?;
        let der: &[u8] = spki.as_ref();
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(Self {
                name: name.into(),
                point: point.to_vec(),
            }),
            _ => Err(KeyError::NotP256 { name: name.into() }),
        }
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// What was found about one digest's signatures (or attestations), best first: when several
/// are attached, the best verdict of any of them is the digest's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// A trusted key signed this very digest.
    Verified { key: String },
    /// A trusted key signed it, for another digest: copied onto this image.
    Tampered { reason: String },
    /// Well-formed, but no trusted key verifies it: another key made it (or it changed since).
    UntrustedSigner { reason: String },
    /// Not a signature at all: not base64, not DER, a payload of another kind.
    InvalidSignature { reason: String },
    /// Nothing attached.
    Unsigned,
}

impl Verdict {
    /// The word for the record's column, the annotation and the metric's label.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Tampered { .. } => "tampered",
            Verdict::UntrustedSigner { .. } => "untrusted-signer",
            Verdict::InvalidSignature { .. } => "invalid-signature",
            Verdict::Unsigned => "unsigned",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Verdict::Verified { key } => format!("signed by trusted key {key:?}"),
            Verdict::Tampered { reason }
            | Verdict::UntrustedSigner { reason }
            | Verdict::InvalidSignature { reason } => reason.clone(),
            Verdict::Unsigned => "no signature is attached to the digest".into(),
        }
    }
}

/// One layer of a cosign signature manifest: the payload blob and the base64 signature from the
/// layer's `dev.cosignproject.cosign/signature` annotation.
#[derive(Debug, Clone, Copy)]
pub struct SignatureLayer<'a> {
    pub payload: &'a [u8],
    pub signature: Option<&'a str>,
}

pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: CriticalImage,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The verdict on `digest`'s cosign signatures.
pub fn verify_signatures(digest: &str, layers: &[SignatureLayer<'_>], keys: &[TrustedKey]) -> Verdict {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| verify_signature(digest, i, l, keys))
        .min()
        .unwrap_or(Verdict::Unsigned)
}

fn verify_signature(digest: &str, index: usize, layer: &SignatureLayer<'_>, keys: &[TrustedKey]) -> Verdict {
    let invalid = |why: String| Verdict::InvalidSignature {
        reason: format!("signature {index}: {why}"),
    };
    if layer.payload.len() > MAX_PAYLOAD {
        return invalid(format!("payload larger than {MAX_PAYLOAD} bytes"));
    }
    let signature = match decode_signature(layer.signature) {
        Ok(s) => s,
        Err(why) => return invalid(why),
    };
    let payload: SimpleSigning = match serde_json::from_slice(layer.payload) {
        Ok(p) => p,
        Err(e) => return invalid(format!("payload is not a simple-signing document: {e}")),
    };
    if payload.critical.kind != SIMPLE_SIGNING_TYPE {
        return invalid(format!(
            "payload type is {:?}, not {SIMPLE_SIGNING_TYPE:?}",
            payload.critical.kind
        ));
    }
    let Some(key) = keys.iter().find(|k| k.verifies(layer.payload, &signature)) else {
        return Verdict::UntrustedSigner {
            reason: format!(
                "signature {index}: no trusted key verifies it (made with another key, or changed since)"
            ),
        };
    };
    if payload.critical.image.digest != digest {
        return Verdict::Tampered {
            reason: format!(
                "signature {index}: trusted key {:?} signed {}, not this digest",
                key.name, payload.critical.image.digest
            ),
        };
    }
    Verdict::Verified {
        key: key.name.clone(),
    }
}

fn decode_signature(b64: Option<&str>) -> Result<Vec<u8>, String> {
    let b64 = b64.ok_or(format!("the layer has no {SIGNATURE_ANNOTATION} annotation"))?;
    if b64.len() > MAX_SIGNATURE_B64 {
        return Err(format!("signature longer than {MAX_SIGNATURE_B64} characters"));
    }
    let der = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    // An ECDSA-Sig-Value is a DER SEQUENCE of two INTEGERs; anything else is no signature.
    if der.len() < 8 || der[0] != 0x30 || usize::from(der[1]) != der.len() - 2 {
        return Err("signature is not a DER ECDSA signature".into());
    }
    Ok(der)
}

/// DSSE's pre-authentication encoding: what the signature of an envelope covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Deserialize)]
struct StatementSubjects {
    #[serde(default)]
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// An attestation checked: its verdict, and the in-toto statement when a trusted key signed it
/// for this digest (to read provenance from; an unverified statement is not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub verdict: Verdict,
    pub statement: Option<Vec<u8>>,
}

/// The verdict on one DSSE envelope attached to `digest` (`sha256:<hex>`).
pub fn verify_envelope(digest: &str, envelope: &[u8], keys: &[TrustedKey]) -> Attestation {
    let invalid = |why: String| Attestation {
        verdict: Verdict::InvalidSignature {
            reason: format!("attestation: {why}"),
        },
        statement: None,
    };
    if envelope.len() > MAX_ENVELOPE {
        return invalid(format!("envelope larger than {MAX_ENVELOPE} bytes"));
    }
    let env: Envelope = match serde_json::from_slice(envelope) {
        Ok(e) => e,
        Err(e) => return invalid(format!("not a DSSE envelope: {e}")),
    };
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return invalid(format!(
            "payload type {:?}, not {IN_TOTO_PAYLOAD_TYPE:?}",
            env.payload_type
        ));
    }
    let Ok(payload) = STANDARD.decode(&env.payload) else {
        return invalid("payload is not base64".into());
    };
    if env.signatures.is_empty() {
        return invalid("the envelope has no signature".into());
    }
    let message = pae(&env.payload_type, &payload);
    // Each signature on its own: a malformed one beside a good one does not spoil it.
    let decoded: Vec<Result<Vec<u8>, String>> = env
        .signatures
        .iter()
        .map(|s| decode_signature(Some(&s.sig)))
        .collect();
    let signer = decoded.iter().flatten().find_map(|sig| {
        keys.iter()
            .find(|k| k.verifies(&message, sig))
            .map(|k| k.name.clone())
    });
    if signer.is_none()
        && let Some(Err(why)) = decoded.iter().find(|d| d.is_err())
        && decoded.iter().all(|d| d.is_err())
    {
        return invalid(why.clone());
    }
    let Some(key) = signer else {
        return Attestation {
            verdict: Verdict::UntrustedSigner {
                reason: "attestation: no trusted key verifies it (made with another key, or changed since)"
                    .into(),
            },
            statement: None,
        };
    };
    let subjects: StatementSubjects = match serde_json::from_slice(&payload) {
        Ok(s) => s,
        Err(e) => return invalid(format!("payload is not an in-toto statement: {e}")),
    };
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    if !subjects.subject.iter().any(|s| {
        s.digest
            .get(algorithm)
            .is_some_and(|h| h.eq_ignore_ascii_case(hex))
    }) {
        return Attestation {
            verdict: Verdict::Tampered {
                reason: format!(
                    "attestation: trusted key {key:?} signed a statement whose subjects do not include {digest}"
                ),
            },
            statement: None,
        };
    }
    Attestation {
        verdict: Verdict::Verified { key },
        statement: Some(payload),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair},
    };

    pub(crate) struct Signer {
        pair: EcdsaKeyPair,
    }

    impl Signer {
        pub(crate) fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            Self {
                pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap(),
            }
        }

        pub(crate) fn public_pem(&self) -> String {
            let mut der = P256_SPKI_PREFIX.to_vec();
            der.extend_from_slice(self.pair.public_key().as_ref());
            let b64 = STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            )
        }

        pub(crate) fn key(&self, name: &str) -> TrustedKey {
            TrustedKey::from_pem(name, &self.public_pem()).unwrap()
        }

        pub(crate) fn sign(&self, message: &[u8]) -> String {
            STANDARD.encode(self.pair.sign(&SystemRandom::new(), message).unwrap().as_ref())
        }

        pub(crate) fn envelope(&self, statement: &[u8]) -> Vec<u8> {
            let sig = self.sign(&pae(IN_TOTO_PAYLOAD_TYPE, statement));
            serde_json::to_vec(&serde_json::json!({
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                "payload": STANDARD.encode(statement),
                "signatures": [{"keyid": "", "sig": sig}],
            }))
            .unwrap()
        }
    }

    pub(crate) const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    pub(crate) fn payload(digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "127.0.0.1:5000/app"},
                "image": {"docker-manifest-digest": digest},
                "type": SIMPLE_SIGNING_TYPE,
            },
            "optional": null,
        }))
        .unwrap()
    }

    #[test]
    fn the_four_verdicts_of_the_acceptance() {
        let (trusted, other) = (Signer::new(), Signer::new());
        let keys = [trusted.key("release")];
        let p = payload(DIGEST);
        let layer = |payload: &[u8], sig: &str| {
            verify_signatures(
                DIGEST,
                &[SignatureLayer {
                    payload,
                    signature: Some(sig),
                }],
                &keys,
            )
        };
        assert_eq!(
            layer(&p, &trusted.sign(&p)),
            Verdict::Verified {
                key: "release".into()
            }
        );
        assert_eq!(layer(&p, &other.sign(&p)).status(), "untrusted-signer");
        // The trusted signature of another digest, copied next to this one.
        let copied = payload(OTHER);
        let v = layer(&copied, &trusted.sign(&copied));
        assert_eq!(v.status(), "tampered");
        assert!(v.reason().contains(OTHER), "{}", v.reason());
        assert_eq!(verify_signatures(DIGEST, &[], &keys), Verdict::Unsigned);
    }

    #[test]
    fn changed_payload_is_not_verified() {
        let s = Signer::new();
        let p = payload(DIGEST);
        let sig = s.sign(&p);
        let mut changed = p.clone();
        changed.extend_from_slice(b" ");
        let v = verify_signatures(
            DIGEST,
            &[SignatureLayer {
                payload: &changed,
                signature: Some(&sig),
            }],
            &[s.key("k")],
        );
        assert_eq!(v.status(), "untrusted-signer");
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let s = Signer::new();
        let keys = [s.key("k")];
        let p = payload(DIGEST);
        for sig in [
            None,
            Some("!!not base64"),
            Some("aGVsbG8gd29ybGQ="),
            Some(&*"A".repeat(1000)),
        ] {
            let v = verify_signatures(
                DIGEST,
                &[SignatureLayer {
                    payload: &p,
                    signature: sig,
                }],
                &keys,
            );
            assert_eq!(v.status(), "invalid-signature", "{sig:?}: {v:?}");
        }
        let not_cosign = br#"{"critical":{"type":"something else","image":{"docker-manifest-digest":"x"}}}"#;
        let v = verify_signatures(
            DIGEST,
            &[SignatureLayer {
                payload: not_cosign,
                signature: Some(&s.sign(not_cosign)),
            }],
            &keys,
        );
        assert_eq!(v.status(), "invalid-signature");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        let v = verify_signatures(
            DIGEST,
            &[SignatureLayer {
                payload: &big,
                signature: Some(&s.sign(&big)),
            }],
            &keys,
        );
        assert_eq!(v.status(), "invalid-signature");
    }

    #[test]
    fn the_best_of_several_signatures_counts() {
        let (trusted, other) = (Signer::new(), Signer::new());
        let p = payload(DIGEST);
        let (good, bad) = (trusted.sign(&p), other.sign(&p));
        let layers = [
            SignatureLayer {
                payload: &p,
                signature: Some(&bad),
            },
            SignatureLayer {
                payload: &p,
                signature: Some("junk"),
            },
            SignatureLayer {
                payload: &p,
                signature: Some(&good),
            },
        ];
        assert_eq!(
            verify_signatures(DIGEST, &layers, &[trusted.key("t")]).status(),
            "verified"
        );
        assert_eq!(
            verify_signatures(DIGEST, &layers[..2], &[trusted.key("t")]).status(),
            "untrusted-signer"
        );
    }

    #[test]
    fn keys_other_than_p256_are_refused_by_name() {
        let e = TrustedKey::from_pem("ops", "not pem").unwrap_err();
        assert!(
            matches!(e, KeyError::Pem { ref name, .. } if name == "ops"),
            "{e}"
        );
        // An Ed25519 SubjectPublicKeyInfo.
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            TrustedKey::from_pem("ed", ed).unwrap_err(),
            KeyError::NotP256 { name: "ed".into() }
        );
    }

    fn statement(digest_hex: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "127.0.0.1:5000/app", "digest": {"sha256": digest_hex}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        }))
        .unwrap()
    }

    #[test]
    fn envelopes() {
        let (trusted, other) = (Signer::new(), Signer::new());
        let keys = [trusted.key("ci")];
        let hex = DIGEST.strip_prefix("sha256:").unwrap();
        let st = statement(hex);
        let a = verify_envelope(DIGEST, &trusted.envelope(&st), &keys);
        assert_eq!(a.verdict, Verdict::Verified { key: "ci".into() });
        assert_eq!(a.statement.as_deref(), Some(&st[..]));
        let a = verify_envelope(DIGEST, &other.envelope(&st), &keys);
        assert_eq!((a.verdict.status(), a.statement), ("untrusted-signer", None));
        let a = verify_envelope(DIGEST, &trusted.envelope(&statement(&"3".repeat(64))), &keys);
        assert_eq!((a.verdict.status(), a.statement), ("tampered", None));
        assert_eq!(
            verify_envelope(DIGEST, b"{}", &keys).verdict.status(),
            "invalid-signature"
        );
        assert_eq!(
            verify_envelope(DIGEST, b"[1,2", &keys).verdict.status(),
            "invalid-signature"
        );
    }

    /// cosign's own `.sig` layers (fixtures/): the payload blob and the layer's annotation.
    #[test]
    fn real_cosign_signatures() {
        use crate::provenance::fixtures as f;
        let (a, b) = (f::key_a(), f::key_b());
        let on_x = f::signature_of(f::A_SIGNS_X_MANIFEST);
        let on_y = f::signature_of(f::B_SIGNS_Y_MANIFEST);
        let check = |digest: &str, payload: &[u8], sig: &str, keys: &[TrustedKey]| {
            verify_signatures(
                digest,
                &[SignatureLayer {
                    payload,
                    signature: Some(sig),
                }],
                keys,
            )
        };
        assert_eq!(
            check(f::X, f::A_SIGNS_X_PAYLOAD, &on_x, &[b.clone(), a.clone()]),
            Verdict::Verified { key: "a".into() }
        );
        assert_eq!(
            check(f::Y, f::B_SIGNS_Y_PAYLOAD, &on_y, &[a.clone(), b.clone()]),
            Verdict::Verified { key: "b".into() }
        );
        let v = check(f::X, f::A_SIGNS_X_PAYLOAD, &on_x, std::slice::from_ref(&b));
        assert_eq!(v.status(), "untrusted-signer", "{v:?}");
        // X's `.sig` under Y's tag (what `skopeo copy` of the manifest makes): A signed X.
        let v = check(f::Y, f::A_SIGNS_X_PAYLOAD, &on_x, std::slice::from_ref(&a));
        assert_eq!(v.status(), "tampered", "{v:?}");
        assert!(v.reason().contains(f::X), "{}", v.reason());
        // A's signature with B's payload: no key verifies it.
        let v = check(f::Y, f::B_SIGNS_Y_PAYLOAD, &on_x, &[a, b]);
        assert_eq!(v.status(), "untrusted-signer", "{v:?}");
    }

    /// cosign's own `.att` layers: DSSE envelopes of in-toto statements, SLSA v0.2 and v1.
    #[test]
    fn real_cosign_attestations() {
        use crate::provenance::fixtures as f;
        let (a, b) = (f::key_a(), f::key_b());
        let layers = f::layers(f::A_ATTESTS_X_MANIFEST, "predicateType");
        assert_eq!(layers.len(), 2);
        for (envelope, (_, media_type, predicate_type)) in [f::A_ATTESTS_X_SLSA02, f::A_ATTESTS_X_SLSA1]
            .into_iter()
            .zip(layers)
        {
            assert_eq!(media_type, "application/vnd.dsse.envelope.v1+json");
            let v = verify_envelope(f::X, envelope, std::slice::from_ref(&b));
            assert_eq!((v.verdict.status(), v.statement), ("untrusted-signer", None));
            let v = verify_envelope(f::Y, envelope, std::slice::from_ref(&a));
            assert_eq!((v.verdict.status(), v.statement), ("tampered", None));
            let v = verify_envelope(f::X, envelope, &[b.clone(), a.clone()]);
            assert_eq!(v.verdict, Verdict::Verified { key: "a".into() });
            let st: serde_json::Value = serde_json::from_slice(&v.statement.unwrap()).unwrap();
            assert_eq!(st["predicateType"].as_str(), predicate_type.as_deref());
        }
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        // The example of the DSSE specification (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
