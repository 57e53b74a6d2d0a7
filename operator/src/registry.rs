//! The registry's HTTP API (OCI distribution), as the operator itself reads it: bounded GETs
//! with the registry's login dance (a Bearer token from the challenge's realm, or Basic), for the
//! registry lookup ([`crate::lookup`]) and registry sources (tags, manifests, their digests).
//!
//! Hand-written on reqwest rather than through an OCI client crate: those read whole answers into
//! memory, and an answer here comes from a registry a tenant names; every read is bounded.

use std::{collections::HashMap, panic::AssertUnwindSafe, sync::Mutex, time::Duration};

use sha2::{Digest as _, Sha256};

/// Per request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Bodies read from a registry at most: a referrers index of
/// [`sbomjob_contract::referrers::MAX_REFERRERS`] entries, a tag page or a manifest is well under
/// this. A registry a tenant controls cannot make the operator hold more.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// A token endpoint's answer, at most.
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// Tags listed per request (`?n=`), and at most this many pages per repository.
const TAGS_PER_PAGE: usize = 1000;
const MAX_TAG_PAGES: usize = 100;

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The HTTP client of the operator's registry reads: bounded in time per request; TLS with the
/// system's CA certificates (none at all is an error, not a panic).
pub fn http_client() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let build = || {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sbomjob-operator/", env!("CARGO_PKG_VERSION")))
            .build()
    };
    match std::panic::catch_unwind(AssertUnwindSafe(build)) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err("the TLS setup panicked (no CA certificates?)".into()),
    }
}

/// One answer: its status, the headers the callers read, and the body (at most [`MAX_BODY`]).
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`.
    pub digest: Option<String>,
    /// `Link` (the next page of a tag list).
    pub link: Option<String>,
    pub body: Vec<u8>,
}

/// One repository of one registry, with the credential to send and the token it earned.
pub struct Repository<'a> {
    http: &'a reqwest::Client,
    /// `http(s)://host[:port]`, Docker Hub's API host for `docker.io`.
    base: String,
    name: String,
    auth: Option<(String, String)>,
    authorization: Mutex<Option<String>>,
}

impl<'a> Repository<'a> {
    /// `registry` as images name it (`docker.io`, `host:port`); `insecure`: plain HTTP.
    pub fn new(
        http: &'a reqwest::Client,
        registry: &str,
        name: &str,
        auth: Option<(String, String)>,
        insecure: bool,
    ) -> Self {
        let scheme = if insecure { "http" } else { "https" };
        let host = if registry == sbomjob_contract::image_ref::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        Repository {
            http,
            base: format!("{scheme}://{host}"),
            name: name.to_string(),
            auth,
            authorization: Mutex::new(None),
        }
    }

    /// `GET /v2/<name>/<path>`: the status and at most [`MAX_BODY`] bytes of the body (more is an
    /// error). A 401 is answered once: a Bearer token from the challenge's realm (with the
    /// credential, if any), or Basic with the credential.
    pub async fn get(&self, path: &str, accept: &str) -> Result<(u16, Vec<u8>), String> {
        let a = self.answer_of(path, accept).await?;
        Ok((a.status, a.body))
    }

    /// [`Self::get`], with the headers the callers read.
    pub async fn answer_of(&self, path: &str, accept: &str) -> Result<Answer, String> {
        let url = format!("{}/v2/{}/{path}", self.base, self.name);
        let known = self.authorization.lock().expect("lock").clone();
        let mut res = self.send(&url, accept, known.as_deref()).await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = res
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let authorization = self.login(&challenge).await?;
            res = self.send(&url, accept, Some(&authorization)).await?;
            *self.authorization.lock().expect("lock") = Some(authorization);
        }
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (content_type, digest, link) = (
            header("content-type"),
            header("docker-content-digest"),
            header("link"),
        );
        let status = res.status().as_u16();
        Ok(Answer {
            status,
            content_type,
            digest,
            link,
            body: read_bounded(res, MAX_BODY).await?,
        })
    }

    async fn send(
        &self,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, String> {
        let mut req = self.http.get(url).header(reqwest::header::ACCEPT, accept);
        if let Some(a) = authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        req.send().await.map_err(|e| chain(&e))
    }

    /// The `Authorization` value a `WWW-Authenticate` challenge asks for.
    async fn login(&self, challenge: &str) -> Result<String, String> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let (u, p) = self
                .auth
                .as_ref()
                .ok_or("the registry asks for a login and none is configured for it")?;
            return Ok(basic(u, p));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(format!("unsupported authentication challenge {challenge:?}"));
        }
        let realm = params.get("realm").ok_or("a Bearer challenge without realm")?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.name));
        let mut query = vec![("scope", scope)];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut req = self.http.get(realm.as_str()).query(&query);
        if let Some((u, p)) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, basic(u, p));
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("token from {realm}: {}", chain(&e)))?;
        let status = res.status();
        let body = read_bounded(res, MAX_TOKEN_BODY).await?;
        if !status.is_success() {
            return Err(format!("token from {realm}: HTTP {}", status.as_u16()));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| format!("token from {realm}: {e}"))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or("the token endpoint gave no token")?;
        Ok(format!("Bearer {token}"))
    }

    /// Every tag of the repository (`GET /v2/<name>/tags/list`, following `Link` pages), at
    /// most `most`; more is not an error, the rest is left (and said by the second value).
    pub async fn tags(&self, most: usize) -> Result<(Vec<String>, bool), RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut path = format!("tags/list?n={TAGS_PER_PAGE}");
        for _ in 0..MAX_TAG_PAGES {
            let a = self
                .answer_of(&path, "application/json")
                .await
                .map_err(RegistryError::Request)?;
            match a.status {
                200 => {}
                401 | 403 => return Err(RegistryError::Denied(a.status)),
                404 => return Err(RegistryError::NoRepository),
                other => return Err(RegistryError::Status(other)),
            }
            let page: Page = serde_json::from_slice(&a.body)
                .map_err(|e| RegistryError::Malformed(format!("tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() >= most {
                tags.truncate(most);
                return Ok((tags, true));
            }
            match a.link.as_deref().and_then(|l| next_page(l, &self.name)) {
                Some(next) => path = next,
                None => return Ok((tags, false)),
            }
        }
        Ok((tags, true))
    }

    /// What `reference` (a tag or a digest) points at: its digest, and for an index the digest
    /// of each platform's manifest that `platforms` admits (empty: every platform).
    pub async fn resolve(&self, reference: &str, platforms: &[String]) -> Result<Resolved, RegistryError> {
        let accept = [
            INDEX_MEDIA_TYPE,
            MANIFEST_MEDIA_TYPE,
            DOCKER_LIST_MEDIA_TYPE,
            DOCKER_MANIFEST_MEDIA_TYPE,
        ]
        .join(", ");
        let a = self
            .answer_of(&format!("manifests/{reference}"), &accept)
            .await
            .map_err(RegistryError::Request)?;
        match a.status {
            200 => {}
            401 | 403 => return Err(RegistryError::Denied(a.status)),
            404 => return Err(RegistryError::NoManifest(reference.to_string())),
            other => return Err(RegistryError::Status(other)),
        }
        // The digest is the body's; a header that disagrees is not believed.
        let digest = format!("sha256:{:x}", Sha256::digest(&a.body));
        if let Some(h) = &a.digest
            && h.starts_with("sha256:")
            && *h != digest
        {
            return Err(RegistryError::Malformed(format!(
                "the registry says {reference} is {h}, its body is {digest}"
            )));
        }
        resolved(digest, &a.body, a.content_type.as_deref(), platforms)
    }
}

/// A tag or digest resolved: the digest it names, and an index's platform manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: String,
    /// (`os/arch[/variant]`, digest) for an index; empty for a single manifest.
    pub platforms: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{0}")]
    Request(String),
    #[error("access denied (HTTP {0}): check the credentials")]
    Denied(u16),
    #[error("no such repository")]
    NoRepository,
    #[error("no manifest {0}")]
    NoManifest(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Malformed(String),
}

impl RegistryError {
    /// Worth trying again later (the registry may come back); a denial or a missing repository
    /// is the source's to fix.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Request(_) => true,
            RegistryError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

/// At most this many platform manifests of one index are kept.
const MAX_PLATFORMS: usize = 64;

fn resolved(
    digest: String,
    body: &[u8],
    content_type: Option<&str>,
    platforms: &[String],
) -> Result<Resolved, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
        #[serde(default)]
        platform: Option<Platform>,
    }
    #[derive(serde::Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let m: Manifest =
        serde_json::from_slice(body).map_err(|e| RegistryError::Malformed(format!("manifest: {e}")))?;
    let kind = m.media_type.as_deref().or(content_type).unwrap_or_default();
    let is_index = m.manifests.is_some()
        || kind.starts_with(INDEX_MEDIA_TYPE)
        || kind.starts_with(DOCKER_LIST_MEDIA_TYPE);
    if !is_index {
        return Ok(Resolved {
            digest,
            platforms: Vec::new(),
        });
    }
    let mut out = Vec::new();
    for e in m.manifests.unwrap_or_default() {
        // Attestation manifests (buildx's `unknown/unknown`) and entries without a platform are no images.
        let Some(p) = e.platform else { continue };
        if p.os == "unknown" || !sbomjob_contract::image_ref::is_digest(&e.digest) {
            continue;
        }
        let name = match &p.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
            _ => format!("{}/{}", p.os, p.architecture),
        };
        let wanted = platforms.is_empty()
            || platforms
                .iter()
                .any(|w| *w == name || (w.matches('/').count() < 2 && name.starts_with(&format!("{w}/"))));
        if wanted && out.len() < MAX_PLATFORMS {
            out.push((name, e.digest));
        }
    }
    Ok(Resolved {
        digest,
        platforms: out,
    })
}

/// The path of the next page from a `Link: </v2/<name>/tags/list?n=..&last=..>; rel="next"`
/// header; only a link within the same repository is followed.
fn next_page(link: &str, name: &str) -> Option<String> {
    let url = link
        .split(';')
        .next()?
        .trim()
        .strip_prefix('<')?
        .strip_suffix('>')?;
    // Absolute links are reduced to their path; another host or repository is not followed.
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    path.strip_prefix(&format!("/v2/{name}/"))
        .filter(|rest| rest.starts_with("tags/list"))
        .map(str::to_owned)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"` →
/// (`Bearer`, {realm, service, scope}); quoted values may hold commas.
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        value.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            value = chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_owned();
        }
        params.insert(key, value);
    }
    (scheme.to_owned(), params)
}

/// The body, or an error once it passes `most` bytes (read in chunks: never more in memory).
pub async fn read_bounded(mut res: reqwest::Response, most: usize) -> Result<Vec<u8>, String> {
    if res.content_length().is_some_and(|n| n > most as u64) {
        return Err(format!("the answer is larger than {most} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| chain(&e))? {
        if body.len() + chunk.len() > most {
            return Err(format!("the answer is larger than {most} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources on one line (reqwest puts the cause only in the source).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A registry's HTTP on loopback, for the tests of the operator's registry reads.
#[cfg(test)]
pub(crate) mod test_server {
    use std::sync::Mutex;

    pub(crate) type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);

    /// An HTTP server on loopback: `answer(path, query, authorization)` makes every response;
    /// every request path is recorded.
    pub(crate) async fn serve(
        answer: impl Fn(&str, &str, Option<&str>) -> Reply + Send + Sync + 'static,
    ) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use http_body_util::Full;
        use hyper::{body::Bytes, server::conn::http1, service::service_fn};
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (std::sync::Arc::new(answer), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_string();
                        log.lock().unwrap().push(path.clone());
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let (code, headers, body) =
                            answer(&path, req.uri().query().unwrap_or_default(), auth.as_deref());
                        let mut response = http::Response::builder().status(code);
                        for (k, v) in headers {
                            response = response.header(k, v);
                        }
                        let response = response.body(Full::new(Bytes::from(body))).unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_server::serve;

    fn platforms(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
        {"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","platform":{"os":"linux","architecture":"amd64"}},
        {"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
        {"digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","platform":{"os":"unknown","architecture":"unknown"}},
        {"digest":"not a digest","platform":{"os":"linux","architecture":"s390x"}}]}"#;

    #[test]
    fn an_index_gives_its_platforms_attestations_left_out() {
        let r = resolved("sha256:x".into(), INDEX.as_bytes(), None, &[]).unwrap();
        let names: Vec<&str> = r.platforms.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm/v7"]);
        // `linux/arm` admits every variant; `linux/arm/v6` none here.
        let r = resolved(
            "sha256:x".into(),
            INDEX.as_bytes(),
            None,
            &platforms(&["linux/arm"]),
        )
        .unwrap();
        assert_eq!(r.platforms.len(), 1);
        assert_eq!(r.platforms[0].0, "linux/arm/v7");
        let r = resolved(
            "sha256:x".into(),
            INDEX.as_bytes(),
            None,
            &platforms(&["linux/arm/v6"]),
        )
        .unwrap();
        assert!(r.platforms.is_empty());
        // A single manifest has no platforms list.
        let m =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert!(
            resolved("sha256:x".into(), m, None, &[])
                .unwrap()
                .platforms
                .is_empty()
        );
        assert!(matches!(
            resolved("sha256:x".into(), b"<html>", None, &[]),
            Err(RegistryError::Malformed(_))
        ));
    }

    #[test]
    fn next_pages_stay_in_the_repository() {
        assert_eq!(
            next_page(r#"</v2/team/app/tags/list?n=2&last=b>; rel="next""#, "team/app").as_deref(),
            Some("tags/list?n=2&last=b")
        );
        assert_eq!(
            next_page(
                r#"<https://r.example/v2/team/app/tags/list?last=b>; rel="next""#,
                "team/app"
            )
            .as_deref(),
            Some("tags/list?last=b")
        );
        assert_eq!(
            next_page(r#"</v2/other/tags/list?last=b>; rel="next""#, "team/app"),
            None
        );
        assert_eq!(
            next_page(r#"</v2/team/app/manifests/x>; rel="next""#, "team/app"),
            None
        );
        assert_eq!(next_page("garbage", "team/app"), None);
    }

    /// Tags over three pages (the registry's `Link`), bounded by `most`; a manifest resolved to
    /// the digest of its body, and a header that lies about it refused.
    #[tokio::test]
    async fn tags_follow_pages_and_digests_are_the_bodys() {
        let manifest =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#
                .to_vec();
        let digest = format!("sha256:{:x}", Sha256::digest(&manifest));
        let (m, d) = (manifest.clone(), digest.clone());
        let (addr, seen) = serve(move |path, query, _| {
            let json = |body: &str| {
                let headers = vec![("content-type", "application/json".to_string())];
                (200, headers, body.as_bytes().to_vec())
            };
            match (path, query) {
                ("/v2/team/app/tags/list", q) if !q.contains("last") => {
                    let (code, mut h, b) = json(r#"{"name":"team/app","tags":["1.2.0","1.2.3"]}"#);
                    h.push((
                        "link",
                        r#"</v2/team/app/tags/list?n=1000&last=1.2.3>; rel="next""#.into(),
                    ));
                    (code, h, b)
                }
                ("/v2/team/app/tags/list", q) if q.contains("last=1.2.3") => {
                    let (code, mut h, b) = json(r#"{"name":"team/app","tags":["1.3.0"]}"#);
                    h.push((
                        "link",
                        r#"</v2/team/app/tags/list?n=1000&last=1.3.0>; rel="next""#.into(),
                    ));
                    (code, h, b)
                }
                ("/v2/team/app/tags/list", _) => json(r#"{"name":"team/app","tags":null}"#),
                ("/v2/team/app/manifests/1.2.0", _) => {
                    (200, vec![("docker-content-digest", d.clone())], m.clone())
                }
                ("/v2/team/app/manifests/lies", _) => (
                    200,
                    vec![("docker-content-digest", format!("sha256:{}", "0".repeat(64)))],
                    m.clone(),
                ),
                ("/v2/private/tags/list", _) => (
                    401,
                    vec![("www-authenticate", r#"Basic realm="r""#.into())],
                    vec![],
                ),
                _ => (404, vec![], br#"{"errors":[]}"#.to_vec()),
            }
        })
        .await;
        let http = http_client().unwrap();
        let repo = Repository::new(&http, &addr, "team/app", None, true);
        assert_eq!(
            repo.tags(100).await.unwrap(),
            (platforms(&["1.2.0", "1.2.3", "1.3.0"]), false)
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(
            repo.tags(2).await.unwrap(),
            (platforms(&["1.2.0", "1.2.3"]), true)
        );
        let r = repo.resolve("1.2.0", &[]).await.unwrap();
        assert_eq!((r.digest, r.platforms.len()), (digest, 0));
        assert!(matches!(
            repo.resolve("lies", &[]).await,
            Err(RegistryError::Malformed(_))
        ));
        assert_eq!(
            repo.resolve("9.9.9", &[]).await,
            Err(RegistryError::NoManifest("9.9.9".into()))
        );
        let missing = Repository::new(&http, &addr, "nothing/here", None, true);
        assert_eq!(missing.tags(10).await, Err(RegistryError::NoRepository));
        // Basic asked for and no credential: the error names it; with one, it is sent.
        let private = Repository::new(&http, &addr, "private", None, true);
        assert!(matches!(private.tags(10).await, Err(RegistryError::Request(e)) if e.contains("login")));
        let private = Repository::new(&http, &addr, "private", Some(("u".into(), "p".into())), true);
        assert_eq!(private.tags(10).await, Err(RegistryError::Denied(401)));
        // A registry nobody listens on: transient, worth a retry.
        let dead = Repository::new(&http, "127.0.0.1:9", "x", None, true);
        assert!(dead.tags(1).await.unwrap_err().is_transient());
    }
}
