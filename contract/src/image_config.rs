//! `image-config.json`: the one definition of the wire format.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::image_ref::{ImageRef, RefError, validate_config_image};

/// Directory the operator mounts the config Secret at inside the job container.
pub const MOUNT_DIR: &str = "/sbom";
/// Key of the config Secret, and so the file name under [`MOUNT_DIR`].
pub const CONFIG_FILE_NAME: &str = "image-config.json";

/// One image to catalogue: an element of the top-level array.
///
/// Field order matches the Go original (`registry-host`, `registry-user`, `registry-password`,
/// `image`, `pods`), so documents we emit look like the ones job images already parse.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// Registry the credentials are for (as written in the pull secret), or `""`.
    #[serde(rename = "registry-host")]
    pub registry_host: String,
    /// Registry user name, or `""`.
    #[serde(rename = "registry-user")]
    pub registry_user: String,
    /// Registry password or token, or `""`.
    #[serde(rename = "registry-password")]
    pub registry_password: String,
    /// The image: a digest reference (`repo@sha256:...`, the container's imageID without its
    /// `scheme://`), or a tag reference as in the spec's example.
    pub image: String,
    /// Every container occurrence that runs this image, or as many as fit the operator's Secret
    /// budget (see [`pods_omitted`](Self::pods_omitted)).
    pub pods: Vec<PodRef>,
    /// How many container occurrences were left out of `pods` for size (an image in thousands of
    /// pods). Optional: absent means 0, and it is only written when not 0, so documents without
    /// a cut look exactly as the spec's. Added by sbomjob; other producers never write it.
    #[serde(rename = "pods-omitted", default, skip_serializing_if = "is_zero")]
    pub pods_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Hand-written so that `{:?}` (in a log line, a panic, a test failure) never shows the password.
impl fmt::Debug for ImageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.registry_password.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ImageConfig")
            .field("registry_host", &self.registry_host)
            .field("registry_user", &self.registry_user)
            .field("registry_password", &password)
            .field("image", &self.image)
            .field("pods", &self.pods)
            .field("pods_omitted", &self.pods_omitted)
            .finish()
    }
}

/// A pod that runs the image.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub pod: String,
    pub namespace: String,
    /// The operator's `SBOM_KUBERNETES_CLUSTER_ID`.
    pub cluster: String,
}

/// The default location of the config file inside a job container.
pub fn default_path() -> PathBuf {
    Path::new(MOUNT_DIR).join(CONFIG_FILE_NAME)
}

/// Why a config document was rejected. Element indexes count from 0, as in `jq '.[N]'`.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("config must be a JSON array of images, found {found}")]
    NotArray { found: &'static str },
    #[error(transparent)]
    Element(#[from] InvalidElement),
}

/// One element of the array that cannot be processed: the entrypoint reports it failed and runs
/// the others (the document itself is fine).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("config element {index}: {problem}")]
pub struct InvalidElement {
    pub index: usize,
    /// Its `image` when that is a string, else empty (for the summary line).
    pub image: String,
    pub problem: String,
}

impl InvalidElement {
    /// An element whose `image` [`validate_config_image`] rejects.
    pub fn bad_image(index: usize, image: &str, e: RefError) -> InvalidElement {
        InvalidElement {
            index,
            image: image.to_owned(),
            problem: format!("key `image` ({image:?}): {e}"),
        }
    }
}

/// Each element of the array: its config, or why it cannot be processed.
pub type Element = Result<ImageConfig, InvalidElement>;

/// Reads and parses the config file; see [`parse_elements`].
pub fn load(path: &Path) -> Result<Vec<Element>, ConfigError> {
    parse_elements(&read(path)?)
}

/// The config file's bytes.
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::Missing {
                path: path.to_owned(),
            }
        } else {
            ConfigError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

const STRING_KEYS: [&str; 4] = ["registry-host", "registry-user", "registry-password", "image"];
const POD_KEYS: [&str; 3] = ["pod", "namespace", "cluster"];

/// Parses an `image-config.json` document in which every element must be valid; the first
/// invalid one is the error. See [`parse_elements`].
pub fn parse(bytes: &[u8]) -> Result<Vec<ImageConfig>, ConfigError> {
    Ok(parse_elements(bytes)?.into_iter().collect::<Result<_, _>>()?)
}

/// Parses an `image-config.json` document, element by element.
///
/// The document must be a JSON array (else an error: nothing can run). Each element must have
/// exactly the spec's shape: the five keys, all strings (empty strings allowed for credentials),
/// `pods` an array of `{pod, namespace, cluster}`, and the optional `pods-omitted` a whole number;
/// unknown extra keys are ignored because the contract allows keys to be added. `image` must pass [`validate_config_image`]. An element that
/// does not is an [`InvalidElement`] naming the element and the key, so a broken operator (or a
/// hand-edited Secret) is caught before any tool runs, without holding back the other elements.
pub fn parse_elements(bytes: &[u8]) -> Result<Vec<Element>, ConfigError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(ConfigError::NotJson)?;
    let Value::Array(elements) = doc else {
        return Err(ConfigError::NotArray { found: kind(&doc) });
    };
    Ok(elements
        .into_iter()
        .enumerate()
        .map(|(index, element)| parse_element(index, element))
        .collect())
}

fn parse_element(index: usize, element: Value) -> Element {
    let image = element
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let invalid = |problem: String| InvalidElement {
        index,
        image: image.clone(),
        problem,
    };
    check_element(&element).map_err(invalid)?;
    let config: ImageConfig = serde_json::from_value(element).map_err(|e| invalid(e.to_string()))?;
    check_image(index, &config)?;
    Ok(config)
}

/// The element's reference, as the entrypoint will use it.
pub fn check_image(index: usize, config: &ImageConfig) -> Result<ImageRef, InvalidElement> {
    validate_config_image(&config.image).map_err(|e| InvalidElement::bad_image(index, &config.image, e))
}

/// Checks the shape by hand: serde's own messages do not name the key for a `null`.
fn check_element(element: &Value) -> Result<(), String> {
    let Value::Object(map) = element else {
        return Err(format!("expected an object, found {}", kind(element)));
    };
    for key in STRING_KEYS {
        expect_string(map.get(key), key)?;
    }
    let pods = match map.get("pods") {
        None => return Err("missing key `pods`".into()),
        Some(Value::Array(pods)) => pods,
        Some(other) => return Err(format!("key `pods` is {}, expected an array", kind(other))),
    };
    for (i, pod) in pods.iter().enumerate() {
        let Value::Object(pod) = pod else {
            return Err(format!("key `pods[{i}]` is {}, expected an object", kind(pod)));
        };
        for key in POD_KEYS {
            expect_string(pod.get(key), &format!("pods[{i}].{key}"))?;
        }
    }
    match map.get("pods-omitted") {
        None => {}
        Some(Value::Number(n)) if n.is_u64() => {}
        Some(other) => {
            return Err(format!(
                "key `pods-omitted` is {}, expected a whole number",
                kind(other)
            ));
        }
    }
    Ok(())
}

fn expect_string(value: Option<&Value>, key: &str) -> Result<(), String> {
    match value {
        None => Err(format!("missing key `{key}`")),
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("key `{key}` is {}, expected a string", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ImageConfig {
    /// Whether this element carries registry credentials to hand to the tool.
    pub fn has_credentials(&self) -> bool {
        !self.registry_user.is_empty() || !self.registry_password.is_empty()
    }

    /// Unique pod names, in first-seen order.
    pub fn pod_names(&self) -> Vec<&str> {
        unique(self.pods.iter().map(|p| p.pod.as_str()))
    }

    /// Unique namespaces, in first-seen order.
    pub fn namespaces(&self) -> Vec<&str> {
        unique(self.pods.iter().map(|p| p.namespace.as_str()))
    }

    /// Unique cluster ids, in first-seen order (one in practice: the operator's).
    pub fn clusters(&self) -> Vec<&str> {
        unique(self.pods.iter().map(|p| p.cluster.as_str()))
    }
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Go repo's example form: tag references and filled registry fields.
    const EXAMPLE_FORM: &str = r#"[{"registry-host":"ghcr.io","registry-user":"u","registry-password":"p","image":"ghcr.io/ckotzbauer/sbom-operator:0.8.0","pods":[{"pod":"p","namespace":"n","cluster":"c"}]},{"registry-host":"docker.io","registry-user":"u2","registry-password":"p2","image":"docker.io/alpine:3.15.4","pods":[{"pod":"a","namespace":"n2","cluster":"c"},{"pod":"b","namespace":"n2","cluster":"c"}]}]"#;

    /// What the Go operator emits today (and sbomjob without credentials): digest references,
    /// empty credential strings, one pods entry per container occurrence.
    const EMITTED_FORM: &str = r#"[{"registry-host":"","registry-user":"","registry-password":"","image":"docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","pods":[{"pod":"web-1","namespace":"shop","cluster":"prod"},{"pod":"web-1","namespace":"shop","cluster":"prod"},{"pod":"web-2","namespace":"shop","cluster":"prod"}]},{"registry-host":"","registry-user":"","registry-password":"","image":"nginx@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210","pods":[]},{"registry-host":"","registry-user":"","registry-password":"","image":"sha256:1111111111111111111111111111111111111111111111111111111111111111","pods":[{"pod":"local","namespace":"dev","cluster":"kind"}]}]"#;

    fn element(index: usize, problem: &str) -> String {
        format!("config element {index}: {problem}")
    }

    fn err(doc: &str) -> String {
        parse(doc.as_bytes()).expect_err("must be rejected").to_string()
    }

    #[test]
    fn parses_example_form_with_tags_and_credentials() {
        let images = parse(EXAMPLE_FORM.as_bytes()).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].registry_host, "ghcr.io");
        assert_eq!(images[0].registry_user, "u");
        assert_eq!(images[0].registry_password, "p");
        assert_eq!(images[0].image, "ghcr.io/ckotzbauer/sbom-operator:0.8.0");
        assert_eq!(
            images[0].pods,
            vec![PodRef {
                pod: "p".into(),
                namespace: "n".into(),
                cluster: "c".into()
            }]
        );
        assert!(images[1].has_credentials());
        assert_eq!(images[1].pod_names(), vec!["a", "b"]);
    }

    #[test]
    fn parses_emitted_form_with_digests_and_empty_credentials() {
        let images = parse(EMITTED_FORM.as_bytes()).unwrap();
        assert_eq!(images.len(), 3);
        assert!(images.iter().all(|i| !i.has_credentials()));
        assert_eq!(images[0].pod_names(), vec!["web-1", "web-2"]);
        assert_eq!(images[0].namespaces(), vec!["shop"]);
        assert_eq!(images[0].clusters(), vec!["prod"]);
        assert!(images[1].pods.is_empty());
        assert!(images[2].image.starts_with("sha256:"));
    }

    #[test]
    fn round_trip_keeps_keys_and_order() {
        for doc in [EXAMPLE_FORM, EMITTED_FORM, "[]"] {
            let images = parse(doc.as_bytes()).unwrap();
            assert_eq!(serde_json::to_string(&images).unwrap(), doc);
        }
    }

    #[test]
    fn accepts_unknown_extra_keys() {
        let doc = r#"[{"registry-host":"","registry-user":"","registry-password":"","image":"a/b:1","pods":[{"pod":"p","namespace":"n","cluster":"c","node":"x"}],"platform":"linux/arm64"}]"#;
        assert_eq!(parse(doc.as_bytes()).unwrap()[0].image, "a/b:1");
    }

    #[test]
    fn pods_omitted_is_optional_and_written_only_when_not_zero() {
        let ok =
            r#"{"registry-host":"","registry-user":"","registry-password":"","image":"a/b:1","pods":[]}"#;
        assert_eq!(parse(format!("[{ok}]").as_bytes()).unwrap()[0].pods_omitted, 0);
        let cut = ok.replace(r#""pods":[]"#, r#""pods":[],"pods-omitted":1200"#);
        let images = parse(format!("[{cut}]").as_bytes()).unwrap();
        assert_eq!(images[0].pods_omitted, 1200);
        assert_eq!(serde_json::to_string(&images[0]).unwrap(), cut);
        let none = ImageConfig {
            pods_omitted: 0,
            ..images[0].clone()
        };
        assert_eq!(serde_json::to_string(&none).unwrap(), ok);
        for (bad, found) in [("-1", "a number"), ("1.5", "a number"), (r#""7""#, "a string")] {
            let doc = format!(
                "[{}]",
                ok.replace(r#""pods":[]"#, &format!(r#""pods":[],"pods-omitted":{bad}"#))
            );
            assert_eq!(
                err(&doc),
                element(
                    0,
                    &format!("key `pods-omitted` is {found}, expected a whole number")
                )
            );
        }
    }

    #[test]
    fn empty_array_is_nothing_to_do() {
        assert!(parse(b"[]").unwrap().is_empty());
        assert!(parse(b" [ ]\n").unwrap().is_empty());
    }

    #[test]
    fn rejects_non_json() {
        assert!(
            err("{not json").starts_with("config is not JSON: "),
            "{}",
            err("{not json")
        );
        assert!(err("").starts_with("config is not JSON: "));
    }

    #[test]
    fn rejects_wrong_top_level() {
        assert_eq!(
            err(r#"{"image":"a"}"#),
            "config must be a JSON array of images, found an object"
        );
        assert_eq!(err("null"), "config must be a JSON array of images, found null");
        assert_eq!(
            err(r#""x""#),
            "config must be a JSON array of images, found a string"
        );
    }

    #[test]
    fn names_the_element_and_the_key() {
        let ok = r#"{"registry-host":"","registry-user":"","registry-password":"","image":"a:1","pods":[]}"#;
        let no_image = r#"{"registry-host":"","registry-user":"","registry-password":"","pods":[]}"#;
        let doc = format!("[{ok},{ok},{ok},{no_image}]");
        assert_eq!(err(&doc), element(3, "missing key `image`"));

        let null_password = ok.replace(r#""registry-password":"""#, r#""registry-password":null"#);
        assert_eq!(
            err(&format!("[{ok},{null_password}]")),
            element(1, "key `registry-password` is null, expected a string")
        );

        let number_user = ok.replace(r#""registry-user":"""#, r#""registry-user":42"#);
        assert_eq!(
            err(&format!("[{number_user}]")),
            element(0, "key `registry-user` is a number, expected a string")
        );

        let pods_object = ok.replace(r#""pods":[]"#, r#""pods":{}"#);
        assert_eq!(
            err(&format!("[{pods_object}]")),
            element(0, "key `pods` is an object, expected an array")
        );

        let no_pods = ok.replace(r#","pods":[]"#, "");
        assert_eq!(err(&format!("[{no_pods}]")), element(0, "missing key `pods`"));

        let bad_pod = ok.replace(
            r#""pods":[]"#,
            r#""pods":[{"pod":"p","namespace":"n","cluster":"c"},{"pod":"q","namespace":"n"}]"#,
        );
        assert_eq!(
            err(&format!("[{ok},{bad_pod}]")),
            element(1, "missing key `pods[1].cluster`")
        );

        assert_eq!(
            err(&format!("[{ok},7]")),
            element(1, "expected an object, found a number")
        );
    }

    #[test]
    fn rejects_unusable_image_references() {
        let with = |image: &str| {
            format!(
                r#"[{{"registry-host":"","registry-user":"","registry-password":"","image":{},"pods":[]}}]"#,
                serde_json::to_string(image).unwrap()
            )
        };
        assert!(err(&with("")).starts_with("config element 0: key `image` (\"\"): "));
        let scheme = err(&with("docker-pullable://nginx@sha256:00"));
        assert!(scheme.starts_with("config element 0: key `image`"), "{scheme}");
        assert!(err(&with("nginx@sha256:xyz")).contains("digest"));
    }

    #[test]
    fn an_invalid_element_stands_alone() {
        let ok = r#"{"registry-host":"","registry-user":"","registry-password":"","image":"a:1","pods":[]}"#;
        let bad_image = ok.replace("a:1", "docker-pullable://a:1");
        let no_image = ok.replace(r#""image":"a:1","#, "");
        let doc = format!("[{ok},{bad_image},{no_image},7,{ok}]");
        let elements = parse_elements(doc.as_bytes()).unwrap();
        assert_eq!(elements.len(), 5);
        assert!(elements[0].is_ok() && elements[4].is_ok());
        let e = elements[1].as_ref().unwrap_err();
        assert_eq!((e.index, e.image.as_str()), (1, "docker-pullable://a:1"));
        assert!(
            e.to_string()
                .starts_with("config element 1: key `image` (\"docker-pullable://a:1\"): has a `scheme://`"),
            "{e}"
        );
        let e = elements[2].as_ref().unwrap_err();
        assert_eq!((e.index, e.image.as_str()), (2, ""));
        assert_eq!(e.problem, "missing key `image`");
        assert_eq!(
            elements[3].as_ref().unwrap_err().problem,
            "expected an object, found a number"
        );
        // The strict parse rejects the document at the first of them; the document-level errors
        // stay errors for both.
        assert_eq!(
            err(&doc),
            element(
                1,
                "key `image` (\"docker-pullable://a:1\"): has a `scheme://` prefix; expected a plain reference"
            )
        );
        assert!(parse_elements(b"{}").is_err());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let images = parse(
            EXAMPLE_FORM
                .replace(r#""registry-password":"p""#, r#""registry-password":"s3cr3t-pw""#)
                .as_bytes(),
        )
        .unwrap();
        let shown = format!("{images:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn load_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json");
        let e = load(&path).unwrap_err().to_string();
        assert_eq!(e, format!("config file {} does not exist", path.display()));
    }
}
