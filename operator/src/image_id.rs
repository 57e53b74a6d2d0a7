//! Container `imageID`s as runtimes report them.

/// A container's image identity, parsed from `status.containerStatuses[].imageID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageId {
    /// The value as the runtime reported it (what annotations hold and are compared with).
    pub raw: String,
    /// Without `scheme://`: `registry/repo@sha256:...`, or `sha256:...` for a local image; the
    /// digest's hex in lower case.
    pub reference: String,
    /// `sha256:<64 lower-case hex>`: the key images are deduplicated by.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageIdError {
    #[error("imageID is empty")]
    Empty,
    #[error("imageID {0:?} has no digest (expected repo@sha256:<64 hex> or sha256:<64 hex>)")]
    NoDigest(String),
    #[error(
        "imageID {raw:?} has a {algorithm} digest; only sha256 is processed (it keys Jobs, annotations and the cache)"
    )]
    UnsupportedDigest { raw: String, algorithm: String },
}

impl ImageId {
    /// Parses an imageID: `containerd` reports `docker.io/library/nginx@sha256:...`,
    /// dockershim `docker-pullable://nginx@sha256:...`, and locally built images
    /// `docker://sha256:...` or plain `sha256:...`.
    ///
    /// Upper-case hex is lower-cased: OCI digests are lower-case, a registry serves the same
    /// content under the lower-case digest, and the entrypoint accepts only that form.
    pub fn parse(raw: &str) -> Result<Self, ImageIdError> {
        let trimmed = raw.trim();
        // Everything up to and including `://` is the runtime's scheme.
        let reference = trimmed.rsplit_once("://").map_or(trimmed, |(_, rest)| rest);
        if reference.is_empty() {
            return Err(ImageIdError::Empty);
        }
        let (name, digest) = match reference.rsplit_once('@') {
            Some((repo, digest)) if !repo.is_empty() => (Some(repo), digest),
            Some(_) => return Err(ImageIdError::NoDigest(raw.into())),
            None => (None, reference),
        };
        if !is_sha256_digest(digest) {
            return Err(match other_algorithm(digest) {
                Some(algorithm) => ImageIdError::UnsupportedDigest {
                    raw: raw.into(),
                    algorithm: algorithm.into(),
                },
                None => ImageIdError::NoDigest(raw.into()),
            });
        }
        let digest = digest.to_ascii_lowercase();
        let reference = match name {
            Some(name) => format!("{name}@{digest}"),
            None => digest.clone(),
        };
        Ok(ImageId {
            raw: raw.to_string(),
            reference,
            digest,
        })
    }

    /// True when the reference names a repository, so a job can pull it.
    pub fn is_pullable(&self) -> bool {
        self.reference.contains('@')
    }
}

/// `sha256:` and 64 hex digits of either case.
fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The algorithm of a well-formed OCI digest (`algorithm:encoded`) that is not a sha256 one,
/// e.g. `sha512`; `None` for anything else (a tag, junk, a malformed sha256).
fn other_algorithm(d: &str) -> Option<&str> {
    let (algorithm, encoded) = d.split_once(':')?;
    let algorithm_ok = algorithm.starts_with(|c: char| c.is_ascii_lowercase())
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    // At least 32 characters: a digest, not a `name:tag` that lost its `@`.
    let encoded_ok = encoded.len() >= 32
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    (algorithm != "sha256" && algorithm_ok && encoded_ok).then_some(algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn containerd_ids_have_no_scheme() {
        let raw = format!("docker.io/library/nginx@sha256:{HEX}");
        let id = ImageId::parse(&raw).unwrap();
        assert_eq!(id.reference, raw);
        assert_eq!(id.digest, format!("sha256:{HEX}"));
        assert!(id.is_pullable());
    }

    #[test]
    fn schemes_are_stripped() {
        for scheme in ["docker-pullable://", "docker://", "containerd://"] {
            let raw = format!("{scheme}10.244.0.1:5000/team/app@sha256:{HEX}");
            let id = ImageId::parse(&raw).unwrap();
            assert_eq!(id.raw, raw);
            assert_eq!(id.reference, format!("10.244.0.1:5000/team/app@sha256:{HEX}"));
        }
    }

    #[test]
    fn sha256_only_is_local_and_not_pullable() {
        let id = ImageId::parse(&format!("docker://sha256:{HEX}")).unwrap();
        assert_eq!(id.reference, format!("sha256:{HEX}"));
        assert_eq!(id.digest, id.reference);
        assert!(!id.is_pullable());
    }

    #[test]
    fn bad_values() {
        assert_eq!(ImageId::parse(""), Err(ImageIdError::Empty));
        assert_eq!(ImageId::parse("docker-pullable://"), Err(ImageIdError::Empty));
        let bad_values = [
            "nginx:1.25".to_string(),
            "nginx@sha256:abc".into(),
            format!("nginx@sha256:{HEX}00"),
            format!("@sha256:{HEX}"),
            format!("nginx@{HEX}"),
            "garbage".into(),
            "nginx@sha512:xyz".into(),
        ];
        for bad in bad_values {
            assert!(
                matches!(ImageId::parse(&bad), Err(ImageIdError::NoDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn upper_case_hex_is_lower_cased_in_the_digest_only() {
        let raw = format!(
            "docker-pullable://Reg.example.com:5000/team/app@sha256:{}",
            HEX.to_uppercase()
        );
        let id = ImageId::parse(&raw).unwrap();
        assert_eq!(id.raw, raw, "kept as reported, for annotations");
        assert_eq!(id.digest, format!("sha256:{HEX}"));
        assert_eq!(
            id.reference,
            format!("Reg.example.com:5000/team/app@sha256:{HEX}")
        );
        let local = ImageId::parse(&format!("docker://sha256:{}", HEX.to_uppercase())).unwrap();
        assert_eq!(
            (local.reference.as_str(), local.digest.as_str()),
            (&id.digest[..], &id.digest[..])
        );
    }

    #[test]
    fn other_algorithms_are_unsupported_with_a_reason() {
        let sha512 = "ab".repeat(64);
        for (raw, algorithm) in [
            (format!("docker.io/library/nginx@sha512:{sha512}"), "sha512"),
            (format!("docker://sha512:{sha512}"), "sha512"),
            (format!("nginx@md5:{HEX}"), "md5"),
        ] {
            let e = ImageId::parse(&raw).unwrap_err();
            assert_eq!(
                e,
                ImageIdError::UnsupportedDigest {
                    raw: raw.clone(),
                    algorithm: algorithm.into()
                }
            );
            assert!(
                e.to_string()
                    .contains(&format!("has a {algorithm} digest; only sha256")),
                "{e}"
            );
        }
    }
}
