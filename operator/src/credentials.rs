//! Registry credentials from image pull secrets.
//!
//! Both secret types the kubelet accepts are read: `kubernetes.io/dockerconfigjson`
//! (`{"auths": {...}}` under `.dockerconfigjson`) and the legacy `kubernetes.io/dockercfg`
//! (`{...}` under `.dockercfg`). An entry holds `username`/`password` or a base64 `auth` of
//! `user:password`. Keys are matched against the image the way the kubelet's keyring does:
//! scheme and `/v1/` suffixes ignored, Docker Hub aliases folded, globs in host labels (each
//! matching one label, [`host_matches`]), and a key with a path matching only repositories under
//! that path; the most specific key wins.

use k8s_openapi::api::core::v1::Secret;
use sbomjob_contract::ImageRef;
use sbomjob_contract::docker_config::{DockerConfig, DockerConfigError, split_key};

pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// One usable credential of a pull secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// Registry host as matched (lower-case, Docker Hub = `docker.io`, may start with `*.`).
    pub host: String,
    /// Repository path prefix the key was limited to (`""` = the whole registry).
    pub path: String,
    pub username: String,
    pub password: String,
}

/// Credentials chosen for an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// Why a pull secret could not be used. Displayed in a warning next to the secret's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("has type {0:?}; expected {DOCKER_CONFIG_JSON} or {DOCKER_CFG}")]
    WrongType(String),
    #[error("has no data key {0}")]
    MissingKey(&'static str),
    #[error("{key}: {error}")]
    Invalid {
        key: &'static str,
        #[source]
        error: DockerConfigError,
    },
}

/// The credentials of a pull secret, in the order of its keys.
pub fn parse_pull_secret(secret: &Secret) -> Result<Vec<AuthEntry>, SecretError> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    let (key, parse): (_, fn(&[u8]) -> _) = match type_ {
        DOCKER_CONFIG_JSON => (".dockerconfigjson", DockerConfig::parse),
        DOCKER_CFG => (".dockercfg", DockerConfig::parse_legacy),
        other => return Err(SecretError::WrongType(other.to_string())),
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or(SecretError::MissingKey(key))?;
    let invalid = |error| SecretError::Invalid { key, error };
    let config = parse(&bytes.0).map_err(invalid)?;
    config
        .auths
        .iter()
        .map(|(name, entry)| {
            let (username, password) = entry.basic(name).map_err(invalid)?.unwrap_or_default();
            let (host, path) = split_key(name);
            Ok(AuthEntry {
                host,
                path,
                username,
                password,
            })
        })
        .collect()
}

/// `host[:port]` -> (host, port); `[::1]:5000` -> (`::1`, `5000`). A host with no port, or one
/// that is not `host:port` (a bare IPv6 address), is all host, as Go's `net.SplitHostPort` fails.
fn split_port(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((inner, after)) = rest.split_once(']')
        && let Some(port) = after.strip_prefix(':')
    {
        return (inner, port);
    }
    match host.split_once(':') {
        Some((h, port)) if !port.contains(':') && !h.starts_with('[') => (h, port),
        _ => (host, ""),
    }
}

/// Whether a pull-secret key's host matches an image's registry, as the kubelet's `URLsMatch`
/// does: the ports are equal, both hosts have the same number of dot-separated labels, and each
/// label matches its glob (`*` any run of characters, `?` one character). So a wildcard covers
/// exactly one label: `*.example.com` matches `a.example.com`, not `a.b.example.com` nor
/// `example.com`; `*.*.example.com` and `registry-*.example.com` work too. Character classes
/// (`[a-z]`) are not globs here: `[` is matched as itself, which keeps IPv6 literals exact.
fn host_matches(pattern: &str, host: &str) -> bool {
    let ((pattern, pattern_port), (host, host_port)) = (split_port(pattern), split_port(host));
    let (patterns, labels): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), host.split('.').collect());
    pattern_port == host_port
        && patterns.len() == labels.len()
        && patterns
            .iter()
            .zip(&labels)
            .all(|(p, l)| glob_matches(p.as_bytes(), l.as_bytes()))
}

/// True when the host pattern has a glob in it (an exact host is more specific).
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// `*` and `?` globbing of one label (bytes: host names are ASCII once normalised).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_matches(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_matches(rest, &text[1..]),
    }
}

fn path_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The credential for `image` from the first secret (in order) that has a matching key; within a
/// secret the most specific key (exact host over wildcard, longer path) wins.
pub fn find_credentials<'a>(
    image: &str,
    secrets: impl IntoIterator<Item = &'a [AuthEntry]>,
) -> Option<Credentials> {
    find_credentials_within(image, secrets, usize::MAX).credentials
}

/// What [`find_credentials_within`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub credentials: Option<Credentials>,
    /// The positions (in the secrets given) of the secrets whose matching credential was passed
    /// over for its size before one was found: each would have been used otherwise.
    pub too_large: Vec<usize>,
}

/// As [`find_credentials`], with credentials larger than `max_size` ([`AuthEntry::size`])
/// treated as absent: the next matching key of the secret, or of a later secret, is used. A
/// tenant's pull secret with a huge password must not make every config element huge.
pub fn find_credentials_within<'a>(
    image: &str,
    secrets: impl IntoIterator<Item = &'a [AuthEntry]>,
    max_size: usize,
) -> Found {
    let mut found = Found::default();
    // Only references the work list accepts reach here; anything else gets no credentials.
    let Ok(ImageRef {
        registry, repository, ..
    }) = ImageRef::parse(image)
    else {
        return found;
    };
    for (n, entries) in secrets.into_iter().enumerate() {
        let mut matching: Vec<&AuthEntry> = entries
            .iter()
            .filter(|e| host_matches(&e.host, &registry) && path_matches(&e.path, &repository))
            .collect();
        // Most specific first; among equals the later key, as `max_by_key` picked before.
        matching.reverse();
        matching.sort_by_key(|e| std::cmp::Reverse((!is_glob(&e.host), e.path.len())));
        let usable = matching.iter().position(|e| e.size() <= max_size);
        if !matching.is_empty() && usable != Some(0) {
            found.too_large.push(n);
        }
        if let Some(e) = usable.map(|i| matching[i]) {
            found.credentials = Some(Credentials {
                registry,
                username: e.username.clone(),
                password: e.password.clone(),
            });
            return found;
        }
    }
    found
}

impl AuthEntry {
    /// Bytes the credential takes in `image-config.json`: user name and password as JSON
    /// strings, without their quotes.
    pub fn size(&self) -> usize {
        json_string_len(&self.username) + json_string_len(&self.password)
    }
}

fn json_string_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(usize::MAX, |j| j.len() - 2)
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, body: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some([(key.to_string(), ByteString(body.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    fn json_secret(body: &str) -> Secret {
        secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", body)
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn dockerconfigjson_with_auth_and_with_username() {
        let body = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"ghcr.io":{{"username":"bot","password":"p:w"}}}}}}"#,
            b64("hub:se:cret")
        );
        let entries = parse_pull_secret(&json_secret(&body)).unwrap();
        let creds = |image| find_credentials(image, [entries.as_slice()]);
        assert_eq!(
            creds("nginx:1"),
            Some(Credentials {
                registry: "docker.io".into(),
                username: "hub".into(),
                password: "se:cret".into()
            })
        );
        assert_eq!(creds("docker.io/library/nginx:1").unwrap().username, "hub");
        assert_eq!(creds("index.docker.io/acme/app").unwrap().username, "hub");
        assert_eq!(creds("ghcr.io/acme/api:1").unwrap().password, "p:w");
        assert_eq!(creds("quay.io/acme/api"), None);
        // A local image (`sha256:...` alone) has no registry: Docker Hub's key is not for it.
        assert_eq!(creds(&format!("sha256:{}", "a".repeat(64))), None);
    }

    #[test]
    fn auth_wins_over_username_and_password_as_in_the_kubelet() {
        let body = format!(
            r#"{{"auths":{{"reg.io":{{"auth":"{}","username":"stale","password":"old"}}}}}}"#,
            b64("bot:fresh")
        );
        let entries = parse_pull_secret(&json_secret(&body)).unwrap();
        let c = find_credentials("reg.io/a:1", [entries.as_slice()]).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bot", "fresh"));
    }

    #[test]
    fn dockercfg_legacy_format() {
        let body = format!(
            r#"{{"reg.example.com:5000":{{"auth":"{}","email":"x@y"}}}}"#,
            b64("u:p")
        );
        let entries = parse_pull_secret(&secret(DOCKER_CFG, ".dockercfg", &body)).unwrap();
        let c = find_credentials("reg.example.com:5000/a/b:1", [entries.as_slice()]).unwrap();
        assert_eq!(
            (c.registry.as_str(), c.username.as_str(), c.password.as_str()),
            ("reg.example.com:5000", "u", "p")
        );
        // The port is part of the registry's identity.
        assert_eq!(
            find_credentials("reg.example.com/a/b", [entries.as_slice()]),
            None
        );
        assert_eq!(
            find_credentials("reg.example.com:5001/a/b", [entries.as_slice()]),
            None
        );
    }

    #[test]
    fn first_matching_secret_wins_and_specific_keys_beat_general() {
        let a = parse_pull_secret(&json_secret(
            r#"{"auths":{"quay.io":{"username":"a","password":"1"}}}"#,
        ))
        .unwrap();
        let b = parse_pull_secret(&json_secret(
            r#"{"auths":{"*.example.com":{"username":"wild","password":"2"},
                         "reg.example.com":{"username":"exact","password":"3"},
                         "reg.example.com/team":{"username":"team","password":"4"}}}"#,
        ))
        .unwrap();
        let c = parse_pull_secret(&json_secret(
            r#"{"auths":{"reg.example.com":{"username":"late","password":"5"}}}"#,
        ))
        .unwrap();
        let all = [a.as_slice(), b.as_slice(), c.as_slice()];
        let user = |image| find_credentials(image, all).map(|c| c.username);
        assert_eq!(user("reg.example.com/team/app:1").as_deref(), Some("team"));
        assert_eq!(user("reg.example.com/teamx/app").as_deref(), Some("exact"));
        assert_eq!(user("other.example.com/app").as_deref(), Some("wild"));
        assert_eq!(user("example.com/app"), None);
        assert_eq!(user("quay.io/x/y").as_deref(), Some("a"));
    }

    /// As the kubelet's URLsMatch: same port, same number of labels, each label a glob.
    #[test]
    fn host_globs_match_one_label_each() {
        for (pattern, host, want) in [
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.example.org", false),
            ("*.*.example.com", "a.b.example.com", true),
            ("*.*.example.com", "a.example.com", false),
            ("registry-*.example.com", "registry-eu.example.com", true),
            ("registry-*.example.com", "registry-.example.com", true),
            ("registry-*.example.com", "mirror-eu.example.com", false),
            ("reg.*.io", "reg.acme.io", true),
            ("reg.example.*", "reg.example.com", true),
            ("r?g.example.com", "reg.example.com", true),
            ("r?g.example.com", "rg.example.com", false),
            ("*", "localhost", true),
            ("*", "reg.io", false),
            ("*.example.com", "a.example.com:5000", false),
            ("*.example.com:5000", "a.example.com:5000", true),
            ("*.example.com:5000", "a.example.com:5001", false),
            ("*.example.com:5000", "a.example.com", false),
            ("reg.example.com", "reg.example.com", true),
            ("reg.example.com", "REG.example.com", false),
            ("[::1]:5000", "[::1]:5000", true),
            ("[::1]:5000", "[::1]:5001", false),
            ("10.0.0.*:5000", "10.0.0.5:5000", true),
        ] {
            assert_eq!(host_matches(pattern, host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn wildcard_keys_through_the_lookup() {
        let entries = parse_pull_secret(&json_secret(
            r#"{"auths":{"*.example.com":{"username":"one","password":"1"},
                         "*.*.example.com":{"username":"two","password":"2"},
                         "https://registry-*.example.com:5000/v2/":{"username":"port","password":"3"}}}"#,
        ))
        .unwrap();
        let user = |image| find_credentials(image, [entries.as_slice()]).map(|c| c.username);
        assert_eq!(user("a.example.com/app").as_deref(), Some("one"));
        assert_eq!(user("a.b.example.com/app").as_deref(), Some("two"));
        assert_eq!(user("registry-eu.example.com:5000/app").as_deref(), Some("port"));
        assert_eq!(user("example.com/app"), None);
        assert_eq!(user("a.b.c.example.com/app"), None);
    }

    #[test]
    fn credentials_over_the_size_are_passed_over() {
        let big = "x".repeat(600_000);
        let a = parse_pull_secret(&json_secret(&format!(
            r#"{{"auths":{{"reg.io":{{"username":"huge","password":"{big}"}},
                          "*.io":{{"username":"wild","password":"w"}}}}}}"#
        )))
        .unwrap();
        let b = parse_pull_secret(&json_secret(
            r#"{"auths":{"reg.io":{"username":"next","password":"n"}}}"#,
        ))
        .unwrap();
        assert_eq!(a[1].size(), 4 + 600_000);
        let found = find_credentials_within("reg.io/app", [a.as_slice(), b.as_slice()], 65_536);
        // The most specific key is too large: the secret's next matching key is used.
        assert_eq!(found.credentials.unwrap().username, "wild");
        assert_eq!(found.too_large, [0]);
        // Without the huge key's fallback in the same secret, the next secret's.
        let only_huge = [a[1].clone()];
        let found = find_credentials_within("reg.io/app", [&only_huge[..], b.as_slice()], 65_536);
        assert_eq!(found.credentials.unwrap().username, "next");
        assert_eq!(found.too_large, [0]);
        // A too-large key less specific than the one used is not "passed over".
        let small_exact = [
            b[0].clone(),
            AuthEntry {
                host: "*.io".into(),
                ..a[1].clone()
            },
        ];
        let found = find_credentials_within("reg.io/app", [&small_exact[..]], 65_536);
        assert_eq!(
            (found.credentials.unwrap().username, found.too_large),
            ("next".into(), vec![])
        );
        // JSON escapes count: a quote is two bytes in image-config.json.
        let quoted = AuthEntry {
            username: "\"".into(),
            ..b[0].clone()
        };
        assert_eq!(quoted.size(), 2 + 1);
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let encoded = b64("u:hunter2-secret");
        for (body, want) in [
            (
                format!(r#"{{"auths":{{"r.io":"{encoded}"}}}}"#),
                "is not an object",
            ),
            (
                r#"{"auths":{"r.io":{"password":"hunter2-secret","username":7}}}"#.to_string(),
                "`username` is not a string",
            ),
            ("{\"auths\": hunter2-secret".to_string(), "not valid JSON"),
        ] {
            let err = parse_pull_secret(&json_secret(&body)).unwrap_err().to_string();
            assert!(
                err.starts_with(".dockerconfigjson: ") && err.contains(want),
                "{err}"
            );
            assert!(
                !err.contains("hunter2") && !err.contains(&encoded),
                "the message quotes the secret: {err}"
            );
        }
    }

    #[test]
    fn malformed_secrets_are_errors_not_panics() {
        let invalid = |body: &str| match parse_pull_secret(&json_secret(body)) {
            Err(SecretError::Invalid { error, .. }) => error,
            other => panic!("{body}: {other:?}"),
        };
        assert!(matches!(invalid("{not json"), DockerConfigError::NotJson(_)));
        assert_eq!(invalid(r#"{"auths":[]}"#), DockerConfigError::AuthsNotObject);
        assert_eq!(
            invalid(r#"{"auths":{"r.io":{"auth":"%%%"}}}"#),
            DockerConfigError::BadAuth { key: "r.io".into() }
        );
        let no_colon = format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("nocolon"));
        assert!(matches!(invalid(&no_colon), DockerConfigError::BadAuth { .. }));
        assert_eq!(
            parse_pull_secret(&secret("Opaque", "x", "{}")),
            Err(SecretError::WrongType("Opaque".into()))
        );
        assert_eq!(
            parse_pull_secret(&secret(DOCKER_CONFIG_JSON, ".dockercfg", "{}")),
            Err(SecretError::MissingKey(".dockerconfigjson"))
        );
    }
}
