//! Container `imageID`s as runtimes report them, and the registry an image comes from.

/// A container's image identity, parsed from `status.containerStatuses[].imageID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageId {
    /// The value as the runtime reported it (what annotations hold).
    pub raw: String,
    /// Without `scheme://`: `registry/repo@sha256:...`, or `sha256:...` for a local image.
    pub reference: String,
    /// `sha256:<hex>`: the key images are deduplicated by.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageIdError {
    #[error("imageID is empty")]
    Empty,
    #[error("imageID {0:?} has no digest (expected repo@sha256:<64 hex> or sha256:<64 hex>)")]
    NoDigest(String),
}

impl ImageId {
    /// Parses an imageID: `containerd` reports `docker.io/library/nginx@sha256:...`,
    /// dockershim `docker-pullable://nginx@sha256:...`, and locally built images
    /// `docker://sha256:...` or plain `sha256:...`.
    pub fn parse(raw: &str) -> Result<Self, ImageIdError> {
        let trimmed = raw.trim();
        // Everything up to and including `://` is the runtime's scheme.
        let reference = trimmed.rsplit_once("://").map_or(trimmed, |(_, rest)| rest);
        if reference.is_empty() {
            return Err(ImageIdError::Empty);
        }
        let digest = match reference.rsplit_once('@') {
            Some((repo, digest)) if !repo.is_empty() => digest,
            Some(_) => return Err(ImageIdError::NoDigest(raw.into())),
            None => reference,
        };
        if !is_sha256_digest(digest) {
            return Err(ImageIdError::NoDigest(raw.into()));
        }
        Ok(ImageId {
            raw: raw.to_string(),
            reference: reference.to_string(),
            digest: digest.to_string(),
        })
    }

    /// True when the reference names a repository, so a job can pull it.
    pub fn is_pullable(&self) -> bool {
        self.reference.contains('@')
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The registry host (with port) an image reference is pulled from, Docker-style:
/// the first path component is a registry only if it has a `.` or `:` or is `localhost`;
/// otherwise the image is on Docker Hub (`docker.io`).
pub fn registry_of(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_registry(first)
        }
        _ => DOCKER_HUB.to_string(),
    }
}

pub const DOCKER_HUB: &str = "docker.io";

/// Canonical registry host: lower-case, Docker Hub aliases folded to `docker.io`.
pub fn normalize_registry(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            DOCKER_HUB.into()
        }
        _ => host,
    }
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
            format!("@sha256:{HEX}"),
            format!("nginx@md5:{HEX}"),
            "garbage".into(),
        ];
        for bad in bad_values {
            assert!(
                matches!(ImageId::parse(&bad), Err(ImageIdError::NoDigest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn registries() {
        assert_eq!(registry_of("nginx@sha256:x"), "docker.io");
        assert_eq!(registry_of("library/nginx:1"), "docker.io");
        assert_eq!(registry_of("docker.io/library/nginx@sha256:x"), "docker.io");
        assert_eq!(registry_of("index.docker.io/library/nginx"), "docker.io");
        assert_eq!(registry_of("ghcr.io/acme/api:1"), "ghcr.io");
        assert_eq!(registry_of("10.244.0.1:5000/app@sha256:x"), "10.244.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            registry_of("Registry.Example.com:443/a/b"),
            "registry.example.com:443"
        );
    }
}
