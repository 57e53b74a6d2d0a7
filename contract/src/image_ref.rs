//! Image references as they appear in `image-config.json`.
//!
//! The operator writes the container's imageID (`host/repo@sha256:...`, or with dockershim a
//! short `nginx@sha256:...`, or for a locally loaded image just `sha256:...`); the spec's example
//! uses tag references. All of them must be processable, so parsing follows the docker/OCI
//! rules for splitting host, repository, tag and digest, and normalises Docker Hub short names.

use std::fmt;

use thiserror::Error;

/// Docker Hub as the registry part of a short name (`nginx` is `docker.io/library/nginx`).
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference. `registry` and `repository` are empty for a bare digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// The full digest, `algorithm:hex`.
    pub digest: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RefError {
    #[error("empty image reference")]
    Empty,
    #[error("contains whitespace or a control character")]
    BadChar,
    #[error("has a `scheme://` prefix; expected a plain reference")]
    Scheme,
    #[error("more than one `@`")]
    TwoDigests,
    #[error("digest {0:?} is not `algorithm:hex` (sha256 needs 64 lowercase hex digits)")]
    BadDigest(String),
    #[error("tag {0:?} is not valid (letters, digits, `_`, `.`, `-`, at most 128)")]
    BadTag(String),
    #[error("registry {0:?} is not a host name with an optional port")]
    BadRegistry(String),
    #[error("repository {0:?} has an empty or invalid path component (lowercase, digits, `._-`)")]
    BadRepository(String),
}

/// THE definition of an `image` value of `image-config.json` that the entrypoint accepts: the
/// entrypoint runs an element only if this succeeds (else the element is reported failed), and
/// the operator never writes an element for which it fails.
pub fn validate_config_image(image: &str) -> Result<ImageRef, RefError> {
    ImageRef::parse(image)
}

impl ImageRef {
    /// Parses any image reference (also used for settings such as `ENTRYPOINT_ATTACH_REPOSITORY`);
    /// for a config's `image` use [`validate_config_image`].
    pub fn parse(reference: &str) -> Result<Self, RefError> {
        if reference.is_empty() {
            return Err(RefError::Empty);
        }
        if reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RefError::BadChar);
        }
        if reference.contains("://") {
            return Err(RefError::Scheme);
        }
        // `sha256:<hex>` alone: an image that only exists locally (docker://sha256:... imageID).
        // Tried before name:tag splitting, which would otherwise read it as repo `sha256`.
        if is_digest(reference) && reference.starts_with("sha256:") {
            return Ok(ImageRef {
                registry: String::new(),
                repository: String::new(),
                tag: None,
                digest: Some(reference.to_owned()),
            });
        }
        let (name, digest) = match reference.split_once('@') {
            Some((_, d)) if d.contains('@') => return Err(RefError::TwoDigests),
            Some((name, digest)) if is_digest(digest) => (name, Some(digest.to_owned())),
            Some((_, digest)) => return Err(RefError::BadDigest(digest.to_owned())),
            None => (reference, None),
        };
        // A tag is after the last `:` only if that `:` is past the last `/` (else it is a port).
        let (name, tag) = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => {
                if !is_tag(t) {
                    return Err(RefError::BadTag(t.to_owned()));
                }
                (n, Some(t.to_owned()))
            }
            _ => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (first.to_owned(), rest.to_owned()),
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = normalize_registry(&registry);
        if !is_host(&registry) {
            return Err(RefError::BadRegistry(registry));
        }
        if !repository.split('/').all(is_path_component) {
            return Err(RefError::BadRepository(repository));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The hex part of the digest, if any.
    pub fn digest_hex(&self) -> Option<&str> {
        self.digest
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .map(|(_, hex)| hex)
    }

    /// The fully qualified reference a tool can pull, pinned by digest when there is one:
    /// `registry/repository@digest`, else `registry/repository[:tag]`; a bare digest stays as it
    /// is. Several tools (skopeo, containers/image) reject `repo:tag@digest`, which imageIDs and
    /// hand-written configs can contain.
    pub fn pullable(&self) -> String {
        match (&self.digest, self.repository.is_empty()) {
            (Some(d), true) => d.clone(),
            (Some(d), false) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, _) => match &self.tag {
                Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
                None => format!("{}/{}", self.registry, self.repository),
            },
        }
    }

    /// File-name stem for this image's `{output}`: `<registry>_<repository>_<tag>_<algo>-<hex12>`,
    /// `/` and `:` and anything outside `[A-Za-z0-9._-]` replaced by `_`, absent parts left out.
    /// Deterministic, one path component, never hidden, never `..`.
    pub fn output_stem(&self) -> String {
        let repository = self.repository.replace('/', "_");
        let digest = self.digest.as_deref().map(|d| {
            let (algo, hex) = d.split_once(':').unwrap_or(("digest", d));
            format!("{algo}-{}", &hex[..hex.len().min(12)])
        });
        let parts = [
            Some(self.registry.as_str()),
            Some(repository.as_str()),
            self.tag.as_deref(),
            digest.as_deref(),
        ];
        let joined = parts
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let safe: String = joined
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if safe.is_empty() || safe.starts_with('.') {
            format!("_{safe}")
        } else {
            safe
        }
    }
}

impl fmt::Display for ImageRef {
    /// The fully qualified form, e.g. `docker.io/library/nginx:1.27@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.repository.is_empty() {
            write!(f, "{}/{}", self.registry, self.repository)?;
        }
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        match (&self.digest, self.repository.is_empty()) {
            (Some(d), false) => write!(f, "@{d}"),
            (Some(d), true) => write!(f, "{d}"),
            (None, _) => Ok(()),
        }
    }
}

/// A registry host as image references spell it: lower-case (host names are case-insensitive),
/// Docker Hub's other names folded to [`DOCKER_HUB`]. The one alias table of the project.
pub fn normalize_registry(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// The docker rule: the first component is a registry if it has a `.` or a `:` or is `localhost`.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `name[:port]` or `[ipv6][:port]`: a registry host as it appears in a reference.
pub fn is_host(host: &str) -> bool {
    let (name_ok, port) = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[addr]` or `[addr]:port`.
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (
            !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
            port,
        )
    } else {
        let (name, port) = match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        let labels_ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        (labels_ok, port)
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    name_ok && port_ok
}

fn is_path_component(component: &str) -> bool {
    !component.is_empty()
        && component
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
}

/// `algorithm:encoded` per the OCI image spec; sha256 must be exactly 64 lowercase hex.
pub fn is_digest(digest: &str) -> bool {
    let Some((algo, hex)) = digest.split_once(':') else {
        return false;
    };
    let algo_ok = !algo.is_empty()
        && algo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '_' | '-'))
        && algo.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    let hex_ok = if algo == "sha256" {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    } else {
        hex.len() >= 32
            && hex
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'))
    };
    algo_ok && hex_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn r(reference: &str) -> (String, String, Option<String>, Option<String>) {
        let p = ImageRef::parse(reference).unwrap_or_else(|e| panic!("{reference}: {e}"));
        (p.registry, p.repository, p.tag, p.digest)
    }

    fn t(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (
            registry.into(),
            repository.into(),
            tag.map(Into::into),
            digest.map(Into::into),
        )
    }

    #[test]
    fn parse_table() {
        let cases = [
            (
                format!("nginx@{D}"),
                t("docker.io", "library/nginx", None, Some(D)),
            ),
            (
                format!("docker.io/library/nginx@{D}"),
                t("docker.io", "library/nginx", None, Some(D)),
            ),
            (
                format!("index.docker.io/bitnami/redis@{D}"),
                t("docker.io", "bitnami/redis", None, Some(D)),
            ),
            (
                format!("localhost:5000/team/app@{D}"),
                t("localhost:5000", "team/app", None, Some(D)),
            ),
            (
                format!("127.0.0.1:5000/app:1.0@{D}"),
                t("127.0.0.1:5000", "app", Some("1.0"), Some(D)),
            ),
            (
                format!("[::1]:5000/app@{D}"),
                t("[::1]:5000", "app", None, Some(D)),
            ),
            ("localhost/app".to_owned(), t("localhost", "app", None, None)),
            (
                "ghcr.io/ckotzbauer/sbom-operator:0.8.0".to_owned(),
                t("ghcr.io", "ckotzbauer/sbom-operator", Some("0.8.0"), None),
            ),
            (
                "docker.io/alpine:3.15.4".to_owned(),
                t("docker.io", "library/alpine", Some("3.15.4"), None),
            ),
            (
                "alpine:3.15.4".to_owned(),
                t("docker.io", "library/alpine", Some("3.15.4"), None),
            ),
            (
                "bitnami/redis".to_owned(),
                t("docker.io", "bitnami/redis", None, None),
            ),
            (
                "registry.k8s.io/pause:3.9".to_owned(),
                t("registry.k8s.io", "pause", Some("3.9"), None),
            ),
            (D.to_owned(), t("", "", None, Some(D))),
        ];
        for (input, want) in cases {
            assert_eq!(r(&input), want, "{input}");
        }
    }

    #[test]
    fn registries_are_normalised_by_one_table() {
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "registry.hub.docker.com",
            "Docker.IO",
        ] {
            assert_eq!(normalize_registry(hub), DOCKER_HUB, "{hub}");
            let parsed = ImageRef::parse(&format!("{hub}/nginx@{D}")).unwrap();
            assert_eq!(
                (parsed.registry.as_str(), parsed.repository.as_str()),
                (DOCKER_HUB, "library/nginx"),
                "{hub}"
            );
        }
        assert_eq!(
            ImageRef::parse("Reg.Example.COM:5000/app").unwrap().registry,
            "reg.example.com:5000"
        );
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn rejects_garbage() {
        let bad = [
            ("", RefError::Empty),
            ("nginx latest", RefError::BadChar),
            ("docker-pullable://nginx", RefError::Scheme),
            ("nginx@sha256:abc", RefError::BadDigest("sha256:abc".into())),
            ("nginx@sha256:abc@sha256:def", RefError::TwoDigests),
            ("nginx:bad+tag", RefError::BadTag("bad+tag".into())),
            ("host:port/app", RefError::BadRegistry("host:port".into())),
            ("ghcr.io//app", RefError::BadRepository("/app".into())),
            ("ghcr.io/", RefError::BadRepository("".into())),
        ];
        for (input, want) in bad {
            assert_eq!(ImageRef::parse(input), Err(want), "{input:?}");
        }
        // Upper-case sha256 hex is not a sha256 digest, so it is read as repo:tag and rejected.
        assert!(ImageRef::parse(&D.to_uppercase()).is_err());
    }

    #[test]
    fn config_images() {
        // The forms job-image/README.md documents as accepted, and what it rejects.
        for ok in [
            format!("docker.io/library/nginx@{D}"),
            format!("nginx@{D}"),
            format!("nginx:1.27@{D}"),
            format!("10.0.0.5:5000/shop/web@{D}"),
            "bitnami/redis".to_owned(),
            "localhost/app:dev".to_owned(),
            D.to_owned(),
        ] {
            assert!(validate_config_image(&ok).is_ok(), "{ok}");
        }
        let upper = format!("nginx@sha256:{}", D[7..].to_uppercase());
        for bad in [
            upper.as_str(),
            "docker-pullable://nginx",
            "Shop/Web:1",
            "nginx@sha512:abc",
        ] {
            assert!(validate_config_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_is_fully_qualified() {
        assert_eq!(
            ImageRef::parse(&format!("nginx@{D}")).unwrap().to_string(),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(
            ImageRef::parse("alpine:3").unwrap().to_string(),
            "docker.io/library/alpine:3"
        );
        assert_eq!(ImageRef::parse(D).unwrap().to_string(), D);
    }

    #[test]
    fn pullable_prefers_the_digest() {
        let cases = [
            (format!("nginx:1.27@{D}"), format!("docker.io/library/nginx@{D}")),
            (
                format!("localhost:5000/app@{D}"),
                format!("localhost:5000/app@{D}"),
            ),
            ("alpine:3".to_owned(), "docker.io/library/alpine:3".to_owned()),
            ("ghcr.io/a/b".to_owned(), "ghcr.io/a/b".to_owned()),
            (D.to_owned(), D.to_owned()),
        ];
        for (input, want) in cases {
            assert_eq!(ImageRef::parse(&input).unwrap().pullable(), want, "{input}");
        }
    }

    #[test]
    fn output_stem_table() {
        let cases = [
            (
                format!("nginx@{D}"),
                "docker.io_library_nginx_sha256-0123456789ab",
            ),
            (
                format!("localhost:5000/team/app:1.0@{D}"),
                "localhost_5000_team_app_1.0_sha256-0123456789ab",
            ),
            (
                "ghcr.io/ckotzbauer/sbom-operator:0.8.0".to_owned(),
                "ghcr.io_ckotzbauer_sbom-operator_0.8.0",
            ),
            ("alpine".to_owned(), "docker.io_library_alpine"),
            (D.to_owned(), "sha256-0123456789ab"),
            (
                format!("[::1]:5000/app@{D}"),
                "___1__5000_app_sha256-0123456789ab",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ImageRef::parse(&input).unwrap().output_stem(), want, "{input}");
        }
    }

    #[test]
    fn digest_hex() {
        assert_eq!(ImageRef::parse(D).unwrap().digest_hex(), Some(&D[7..]));
        assert_eq!(ImageRef::parse("a:1").unwrap().digest_hex(), None);
    }
}
