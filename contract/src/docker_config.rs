//! Docker `config.json` credentials: the one codec of the operator (pull secrets, both the
//! `kubernetes.io/dockerconfigjson` and the legacy `kubernetes.io/dockercfg` form) and of the
//! entrypoint (the `config.json` it writes for each tool, and `ENTRYPOINT_ATTACH_DOCKER_CONFIG`).
//!
//! Errors never quote a value: whatever is in these documents may be a password.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::image_ref::normalize_registry;

/// The key docker itself files Docker Hub credentials under.
pub const DOCKER_HUB_LEGACY_KEY: &str = "https://index.docker.io/v1/";

/// Why a docker config document cannot be used. Names the entry and the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DockerConfigError {
    /// Where and what kind only: serde's message would quote the offending value.
    #[error("not valid JSON ({0})")]
    NotJson(String),
    #[error("expected a JSON object{0}")]
    NotObject(&'static str),
    #[error("`auths` is not an object")]
    AuthsNotObject,
    #[error("entry {key:?} is not an object")]
    EntryNotObject { key: String },
    #[error("entry {key:?}: `{field}` is not a string")]
    NotString { key: String, field: &'static str },
    #[error("entry {key:?}: `auth` is not base64 of user:password")]
    BadAuth { key: String },
}

/// One entry, as written (empty strings read as absent).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `user:password`.
    pub auth: Option<String>,
    pub identitytoken: Option<String>,
    pub registrytoken: Option<String>,
}

/// Hand-written so that `{:?}` shows which fields are set, never their values.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "<set>");
        f.debug_struct("Entry")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("auth", &set(&self.auth))
            .field("identitytoken", &set(&self.identitytoken))
            .field("registrytoken", &set(&self.registrytoken))
            .finish()
    }
}

const STRING_FIELDS: [&str; 5] = ["username", "password", "auth", "identitytoken", "registrytoken"];

impl Entry {
    /// The user name and password a client logs in with: `auth` wins over `username`/`password`
    /// when both are there, as in the kubelet's `DockerConfigEntry` and docker's own loading.
    /// `None` when the entry has neither (a token-only entry). `key` names the entry in errors.
    pub fn basic(&self, key: &str) -> Result<Option<(String, String)>, DockerConfigError> {
        if let Some(encoded) = &self.auth {
            return decode_auth(encoded)
                .map(Some)
                .ok_or_else(|| DockerConfigError::BadAuth { key: key.to_owned() });
        }
        Ok(match (&self.username, &self.password) {
            (None, None) => None,
            (u, p) => Some((u.clone().unwrap_or_default(), p.clone().unwrap_or_default())),
        })
    }

    /// Every secret string of the entry, for redaction: the raw fields and, when `auth`
    /// decodes, its user name and password.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = [
            &self.auth,
            &self.password,
            &self.identitytoken,
            &self.registrytoken,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some((_, password)) = self.auth.as_deref().and_then(decode_auth) {
            all.push(password);
        }
        all
    }

    fn from_value(key: &str, value: &Value) -> Result<Entry, DockerConfigError> {
        let Value::Object(map) = value else {
            return Err(DockerConfigError::EntryNotObject { key: key.to_owned() });
        };
        let mut fields = STRING_FIELDS.map(|field| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
            Some(_) => Err(DockerConfigError::NotString {
                key: key.to_owned(),
                field,
            }),
        });
        let mut take = |i: usize| std::mem::replace(&mut fields[i], Ok(None));
        Ok(Entry {
            username: take(0)?,
            password: take(1)?,
            auth: take(2)?,
            identitytoken: take(3)?,
            registrytoken: take(4)?,
        })
    }
}

/// The `auths` of a docker config, by key as written (`https://index.docker.io/v1/`,
/// `ghcr.io`, `reg.io/team`), in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub auths: BTreeMap<String, Entry>,
}

impl DockerConfig {
    /// `{"auths": {...}}` (`config.json`, `.dockerconfigjson`); no `auths` is no credentials.
    /// Other keys (`credsStore`, `credHelpers`, ...) are ignored: they cannot work in a job.
    pub fn parse(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        let Value::Object(doc) = parse_json(bytes)? else {
            return Err(DockerConfigError::NotObject(" with `auths`"));
        };
        match doc.get("auths") {
            None | Some(Value::Null) => Ok(DockerConfig::default()),
            Some(Value::Object(auths)) => Self::from_entries(auths),
            Some(_) => Err(DockerConfigError::AuthsNotObject),
        }
    }

    /// The legacy `.dockercfg` form: the `auths` map itself.
    pub fn parse_legacy(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        match parse_json(bytes)? {
            Value::Object(auths) => Self::from_entries(&auths),
            _ => Err(DockerConfigError::NotObject(" of registries")),
        }
    }

    fn from_entries(auths: &Map<String, Value>) -> Result<DockerConfig, DockerConfigError> {
        let auths = auths
            .iter()
            .map(|(key, value)| Ok((key.clone(), Entry::from_value(key, value)?)))
            .collect::<Result<_, DockerConfigError>>()?;
        Ok(DockerConfig { auths })
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, DockerConfigError> {
    serde_json::from_slice(bytes).map_err(|e| {
        DockerConfigError::NotJson(
            format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
            .to_lowercase(),
        )
    })
}

/// `(user, password)` from an `auth` value (base64 of `user:password`; the password may hold
/// `:`).
pub fn decode_auth(encoded: &str) -> Option<(String, String)> {
    let text = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `auth` value for `user` and `password`.
pub fn encode_auth(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// A key as written (`https://index.docker.io/v1/`, `ghcr.io/v2/`, `reg.io/team/`) as
/// `(host, path)`: scheme, trailing `/`, `/v1` and `/v2` dropped, the host as image references
/// spell it ([`normalize_registry`]). `reg.io/team` is (`reg.io`, `team`).
pub fn split_key(key: &str) -> (String, String) {
    let key = key.trim();
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    let key = key.trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    (normalize_registry(host), path.trim_matches('/').to_owned())
}

/// The host part of a key ([`split_key`]).
pub fn key_host(key: &str) -> String {
    split_key(key).0
}

/// A `config.json` document with one credential filed under each of `keys`:
/// `{"auths": {<key>: {auth, username, password}}}`; no keys give an empty `auths`.
pub fn render(keys: &[String], user: &str, password: &str) -> Value {
    let entry = json!({
        "auth": encode_auth(user, password),
        "username": user,
        "password": password,
    });
    let auths: Map<String, Value> = keys.iter().map(|k| (k.clone(), entry.clone())).collect();
    json!({ "auths": auths })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn both_forms_and_auth_wins() {
        let doc = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}","username":"stale","password":"old"}},"ghcr.io":{{"username":"bot","password":"p:w"}},"tok.io":{{"registrytoken":"t"}}}},"credsStore":"desktop"}}"#,
            b64("hub:se:cret")
        );
        let config = DockerConfig::parse(doc.as_bytes()).unwrap();
        let basic = |k: &str| config.auths[k].basic(k).unwrap();
        assert_eq!(
            basic("https://index.docker.io/v1/"),
            Some(("hub".into(), "se:cret".into()))
        );
        assert_eq!(basic("ghcr.io"), Some(("bot".into(), "p:w".into())));
        assert_eq!(basic("tok.io"), None);
        assert_eq!(config.auths["tok.io"].registrytoken.as_deref(), Some("t"));

        let legacy = DockerConfig::parse_legacy(br#"{"reg.io":{"username":"u","password":""}}"#).unwrap();
        assert_eq!(
            legacy.auths["reg.io"].basic("reg.io").unwrap(),
            Some(("u".into(), "".into()))
        );
        assert_eq!(DockerConfig::parse(b"{}").unwrap(), DockerConfig::default());
    }

    #[test]
    fn errors_name_the_entry_and_the_field_never_the_value() {
        let cases = [
            (r#"{"auths":[]}"#.to_owned(), "`auths` is not an object"),
            (
                r#"{"auths":{"r.io":"hunter2"}}"#.to_owned(),
                r#"entry "r.io" is not an object"#,
            ),
            (
                r#"{"auths":{"r.io":{"password":"hunter2","username":7}}}"#.to_owned(),
                r#"entry "r.io": `username` is not a string"#,
            ),
            (
                r#"{"auths":{"r.io":{"auth":"%%hunter2"}}}"#.to_owned(),
                "`auth` is not base64",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("hunter2")),
                "`auth` is not base64 of user:password",
            ),
            (
                r#"{"auths":{"r.io":{"password":"hunter2""#.to_owned(),
                "not valid JSON (eof error",
            ),
            (r#"["hunter2"]"#.to_owned(), "expected a JSON object with `auths`"),
        ];
        for (doc, want) in cases {
            let err = DockerConfig::parse(doc.as_bytes())
                .and_then(|c| {
                    c.auths
                        .iter()
                        .try_for_each(|(k, e)| e.basic(k).map(drop))
                        .map(|_| c)
                })
                .expect_err(&doc)
                .to_string();
            assert!(err.contains(want), "{doc}: {err}");
            assert!(!err.contains("hunter2"), "{doc}: {err}");
        }
    }

    #[test]
    fn keys_reduce_to_host_and_path() {
        let cases = [
            ("https://index.docker.io/v1/", ("docker.io", "")),
            ("registry-1.docker.io", ("docker.io", "")),
            ("registry.hub.docker.com", ("docker.io", "")),
            ("https://ghcr.io/v2/", ("ghcr.io", "")),
            ("Reg.IO:5000/team/", ("reg.io:5000", "team")),
            ("*.example.com", ("*.example.com", "")),
        ];
        for (key, (host, path)) in cases {
            assert_eq!(split_key(key), (host.to_owned(), path.to_owned()), "{key}");
        }
    }

    #[test]
    fn rendered_documents_read_back() {
        let keys = vec!["docker.io".to_owned(), DOCKER_HUB_LEGACY_KEY.to_owned()];
        let doc = render(&keys, "bot", "pa:ss word");
        let config = DockerConfig::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(config.auths.len(), 2);
        for (key, entry) in &config.auths {
            assert_eq!(
                entry.basic(key).unwrap(),
                Some(("bot".into(), "pa:ss word".into()))
            );
        }
        assert_eq!(render(&[], "u", "p"), json!({"auths": {}}));
    }

    #[test]
    fn secrets_cover_every_form() {
        let entry = Entry {
            auth: Some(encode_auth("u", "from-auth")),
            password: Some("pw".into()),
            identitytoken: Some("id".into()),
            ..Default::default()
        };
        let secrets = entry.secrets();
        for want in ["pw", "id", "from-auth", entry.auth.as_deref().unwrap()] {
            assert!(secrets.iter().any(|s| s == want), "{want}");
        }
        assert!(!format!("{entry:?}").contains("pw"));
    }
}
