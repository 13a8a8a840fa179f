//! The HTTP side: one client per daemon, a token cache per registry and repository, and a
//! count of every request by kind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::auth::{Challenge, CredentialSource, Credentials, parse_challenge};
use crate::{Error, Reference};

/// Every manifest media type, so that a registry answers with what the tag really is (a
/// registry asked for less may convert, and the digest then matches nothing local).
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tags asked for per page.
const DEFAULT_PAGE_SIZE: u32 = 1000;
/// At most this many pages per listing (a registry sending `next` for ever is cut off).
const MAX_PAGES: usize = 1000;
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// How the client is set up.
#[derive(Debug, Default)]
pub struct Options {
    /// Registries spoken to over plain HTTP besides loopback ones (`host:port`).
    pub insecure: Vec<String>,
    /// Where credentials come from (shared with the engine's pulls and builds).
    pub credentials: std::sync::Arc<CredentialSource>,
    /// Tags asked for per page of a listing (default 1000).
    pub page_size: Option<u32>,
}

/// What a HEAD on a manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `Docker-Content-Digest`: the digest of the manifest or index the tag names.
    pub digest: String,
    pub media_type: String,
    pub size: Option<u64>,
    /// Docker Hub's pull budget, read for free from the HEAD's headers.
    pub rate_limit: Option<RateLimit>,
}

impl Head {
    /// Whether the tag names an index (a multi-arch image), whose children are per platform.
    pub fn is_index(&self) -> bool {
        is_index(&self.media_type)
    }
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("manifest.list") || media_type.contains("image.index")
}

/// `ratelimit-remaining: 76;w=21600` and `ratelimit-limit: 100;w=21600`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub remaining: u64,
    pub limit: Option<u64>,
    /// The window, in seconds.
    pub window_s: Option<u64>,
}

/// An OS and architecture (and variant) as manifests name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform capstan runs on, in Go's names (`amd64`, `arm64`, `arm` `v7`).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry for `other` runs here: same OS and architecture, and the same
    /// variant when both name one (`arm64` entries often leave out `v8`).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Child {
    pub digest: String,
    #[serde(default, rename = "mediaType")]
    pub media_type: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// A manifest fetched by digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    /// Its entries, when it is an index.
    pub children: Vec<Child>,
}

impl Manifest {
    /// The child for `platform` (attestations and `unknown` platforms never are).
    pub fn child_for(&self, platform: &Platform) -> Option<&Child> {
        self.children.iter().find(|c| {
            !c.annotations.contains_key("vnd.docker.reference.type")
                && c.platform.as_ref().is_some_and(|p| platform.matches(p))
        })
    }
}

/// How many requests of each kind the client made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub manifest_heads: u64,
    pub manifest_gets: u64,
    pub tag_pages: u64,
    pub tokens: u64,
    /// Requests sent again after a `401` (with a token or credentials).
    pub auth_retries: u64,
}

#[derive(Default)]
struct Counters {
    manifest_heads: AtomicU64,
    manifest_gets: AtomicU64,
    tag_pages: AtomicU64,
    tokens: AtomicU64,
    auth_retries: AtomicU64,
}

#[derive(Clone, Copy)]
enum Kind {
    ManifestHead,
    ManifestGet,
    TagPage,
}

/// A registry client. Cheap to share (`Arc`); its caches are behind short locks.
pub struct Client {
    http: reqwest::Client,
    options: Options,
    /// `Authorization` values by registry and scope, with when they expire.
    auth: Mutex<HashMap<String, (String, Instant)>>,
    counters: Counters,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("insecure", &self.options.insecure)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct IndexBody {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Child>,
}

/// Manifest `digest` from a registry's answer: its media type (the body's own, else
/// `header_type`, the answer's `Content-Type`) and, for an index, the manifests it lists.
///
/// # Errors
/// The body is not a manifest's JSON, said for the user.
pub fn parse_manifest(digest: &str, header_type: &str, body: &[u8]) -> Result<Manifest, String> {
    let parsed: IndexBody =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let media_type = parsed.media_type.unwrap_or_else(|| header_type.to_owned());
    Ok(Manifest {
        digest: digest.to_owned(),
        children: if is_index(&media_type) {
            parsed.manifests
        } else {
            Vec::new()
        },
        media_type,
    })
}

/// The tags of one page of a registry's tag list.
///
/// # Errors
/// The body is not a tag list's JSON, said for the user.
pub fn parse_tag_page(body: &[u8]) -> Result<Vec<String>, String> {
    let page: TagPage =
        serde_json::from_slice(body).map_err(|e| format!("the tag list is not JSON: {e}"))?;
    Ok(page.tags.unwrap_or_default())
}

impl Client {
    /// # Errors
    /// The TLS setup failed.
    pub fn new(options: Options) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Request {
                url: String::new(),
                message: e.to_string(),
                hint: "the HTTP client could not be set up",
            })?;
        Ok(Self {
            http,
            options,
            auth: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// The requests made so far, by kind.
    pub fn counts(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            manifest_heads: c.manifest_heads.load(Ordering::Relaxed),
            manifest_gets: c.manifest_gets.load(Ordering::Relaxed),
            tag_pages: c.tag_pages.load(Ordering::Relaxed),
            tokens: c.tokens.load(Ordering::Relaxed),
            auth_retries: c.auth_retries.load(Ordering::Relaxed),
        }
    }

    /// `http://` for loopback and configured insecure registries, else `https://`.
    fn base(&self, r: &Reference) -> String {
        let host = r.api_host();
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let insecure = loopback || self.options.insecure.iter().any(|i| i == host);
        format!("{}://{host}", if insecure { "http" } else { "https" })
    }

    fn url(&self, r: &Reference, path: &str) -> Result<Url, Error> {
        let text = format!("{}/v2/{}/{path}", self.base(r), r.repository);
        Url::parse(&text).map_err(|e| Error::Response {
            url: text,
            message: format!("not a URL: {e}"),
        })
    }

    /// HEADs the manifest `r` names: its digest and media type, and Docker Hub's budget.
    ///
    /// # Errors
    /// Unreachable, unauthorized, not found, rate-limited, or an answer with no digest.
    pub async fn head(&self, r: &Reference) -> Result<Head, Error> {
        let (url, resp) = self
            .manifest_request(r, r.manifest_ref(), Method::HEAD, Kind::ManifestHead)
            .await?;
        let headers = resp.headers();
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let digest = text("docker-content-digest").ok_or_else(|| Error::Response {
            url: url.to_string(),
            message: "the HEAD answer has no Docker-Content-Digest; capstan does not fall back to a GET to check for updates".into(),
        })?;
        Ok(Head {
            digest,
            media_type: text(CONTENT_TYPE.as_str()).unwrap_or_default(),
            size: text(CONTENT_LENGTH.as_str()).and_then(|s| s.parse().ok()),
            rate_limit: rate_limit(headers),
        })
    }

    /// A HEAD or GET of `/v2/<name>/manifests/<reference>` asking for every manifest media
    /// type; a 2xx answer, or the error its status means.
    async fn manifest_request(
        &self,
        r: &Reference,
        reference: &str,
        method: Method,
        kind: Kind,
    ) -> Result<(Url, reqwest::Response), Error> {
        let url = self.url(r, &format!("manifests/{reference}"))?;
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let resp = self
            .send(r, method, url.clone(), Some(&accept), kind)
            .await?;
        let resp = ok(r, &url, resp).await?;
        Ok((url, resp))
    }

    /// GETs the manifest `digest` of `r`'s repository (to look inside an index).
    ///
    /// # Errors
    /// As [`Client::head`], or a body that is not a manifest.
    pub async fn manifest(&self, r: &Reference, digest: &str) -> Result<Manifest, Error> {
        let (url, resp) = self
            .manifest_request(r, digest, Method::GET, Kind::ManifestGet)
            .await?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.bytes().await.map_err(|e| request_error(&url, &e))?;
        parse_manifest(digest, &header_type, &body).map_err(|message| Error::Response {
            url: url.to_string(),
            message,
        })
    }

    /// Every tag of `r`'s repository, following `Link: <...>; rel="next"` page by page.
    ///
    /// # Errors
    /// As [`Client::head`].
    pub async fn tags(&self, r: &Reference) -> Result<Vec<String>, Error> {
        let n = self.options.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        let mut url = self.url(r, &format!("tags/list?n={n}"))?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .send(r, Method::GET, url.clone(), None, Kind::TagPage)
                .await?;
            let resp = ok(r, &url, resp).await?;
            let next = next_link(resp.headers()).and_then(|l| url.join(&l).ok());
            let body = resp.bytes().await.map_err(|e| request_error(&url, &e))?;
            out.extend(parse_tag_page(&body).map_err(|message| Error::Response {
                url: url.to_string(),
                message,
            })?);
            match next {
                Some(u) => url = u,
                None => return Ok(out),
            }
        }
        Err(Error::Response {
            url: url.to_string(),
            message: format!("the tag list goes on past {MAX_PAGES} pages"),
        })
    }

    fn count(&self, kind: Kind) {
        let c = match kind {
            Kind::ManifestHead => &self.counters.manifest_heads,
            Kind::ManifestGet => &self.counters.manifest_gets,
            Kind::TagPage => &self.counters.tag_pages,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn cached(&self, key: &str) -> Option<String> {
        let map = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    /// Sends a request with what the registry asked for last time; on a `401`, gets a token
    /// (or uses Basic credentials) as its challenge says and sends it once more.
    async fn send(
        &self,
        r: &Reference,
        method: Method,
        url: Url,
        accept: Option<&str>,
        kind: Kind,
    ) -> Result<reqwest::Response, Error> {
        let key = format!("{} repository:{}:pull", r.registry, r.repository);
        let mut auth = self.cached(&key);
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            self.count(kind);
            if attempt > 0 {
                self.counters.auth_retries.fetch_add(1, Ordering::Relaxed);
            }
            let resp = req.send().await.map_err(|e| request_error(&url, &e))?;
            match resp.status() {
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    let value = self.authorize(r, challenge).await?;
                    let mut map = self
                        .auth
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    map.insert(key.clone(), value.clone());
                    drop(map);
                    auth = Some(value.0);
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(Error::Unauthorized {
                        registry: r.registry.clone(),
                        repository: r.repository.clone(),
                        had_credentials: true,
                        detail: format!(
                            "check the credentials for {}: capstan registries login {} replaces them",
                            r.registry, r.registry
                        ),
                    });
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| capstan_model::parse_retry_after(v, chrono::Utc::now()));
                    return Err(Error::RateLimited {
                        registry: r.registry.clone(),
                        retry_after,
                    });
                }
                _ => return Ok(resp),
            }
        }
        Err(Error::Unauthorized {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            had_credentials: true,
            detail: "the registry refused the token it gave".into(),
        })
    }

    /// Checks `credentials` against `registry` as `docker login` does: `GET /v2/`, and on a
    /// `401` the same request with Basic credentials, or a token asked for with them.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] when the registry refuses them; unreachable; another answer.
    pub async fn check_login(
        &self,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), Error> {
        let r = Reference::parse(&format!("{registry}/capstan-login-check"))?;
        let text = format!("{}/v2/", self.base(&r));
        let url = Url::parse(&text).map_err(|e| Error::Response {
            url: text.clone(),
            message: format!("not a URL: {e}"),
        })?;
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| request_error(&url, &e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return ok(&r, &url, resp).await.map(drop);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let refused = |detail: String| Error::Unauthorized {
            registry: registry.to_owned(),
            repository: "/v2/".to_owned(),
            had_credentials: true,
            detail,
        };
        let authorization = match challenge {
            Some(Challenge::Basic) => basic(credentials),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut token_url = Url::parse(&realm).map_err(|e| Error::Response {
                    url: realm.clone(),
                    message: format!("the token realm is not a URL: {e}"),
                })?;
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("account", &credentials.username);
                }
                let resp = self
                    .http
                    .get(token_url.clone())
                    .header(AUTHORIZATION, basic(credentials))
                    .send()
                    .await
                    .map_err(|e| request_error(&token_url, &e))?;
                if matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    return Err(refused(format!(
                        "its token service said {}: the user name or password is wrong",
                        resp.status()
                    )));
                }
                let (token, _) = token(&r, &token_url, resp).await?;
                format!("Bearer {token}")
            }
            None => {
                return Err(refused(
                    "it answered 401 without a challenge capstan understands (Basic or Bearer)"
                        .into(),
                ));
            }
        };
        let resp = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, authorization)
            .send()
            .await
            .map_err(|e| request_error(&url, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(refused("the user name or password is wrong".into()));
        }
        ok(&r, &url, resp).await.map(drop)
    }

    /// An `Authorization` value answering `challenge`, and until when it holds.
    async fn authorize(
        &self,
        r: &Reference,
        challenge: Option<Challenge>,
    ) -> Result<(String, Instant), Error> {
        let creds = self.options.credentials.lookup(&r.registry).await?;
        let unauthorized = |detail: String| Error::Unauthorized {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            had_credentials: creds.is_some(),
            detail,
        };
        match challenge {
            Some(Challenge::Basic) => {
                let Some(c) = &creds else {
                    return Err(unauthorized(format!(
                        "it wants a user and password: capstan registries login {} keeps them (or docker login {} in Docker's config)",
                        r.registry, r.registry
                    )));
                };
                Ok((basic(c), Instant::now() + Duration::from_hours(24)))
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", r.repository));
                let mut url = Url::parse(&realm).map_err(|e| Error::Response {
                    url: realm.clone(),
                    message: format!("the token realm is not a URL: {e}"),
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scope);
                }
                let mut req = self.http.get(url.clone());
                if let Some(c) = &creds {
                    req = req.header(AUTHORIZATION, basic(c));
                }
                self.counters.tokens.fetch_add(1, Ordering::Relaxed);
                let resp = req.send().await.map_err(|e| request_error(&url, &e))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(unauthorized(format!(
                        "its token service ({realm}) said {status}: check the credentials for {}",
                        r.registry
                    )));
                }
                let (token, expires_in) = token(r, &url, resp).await?;
                let until = token_until(Instant::now(), expires_in);
                Ok((format!("Bearer {token}"), until))
            }
            None => Err(unauthorized(
                "it answered 401 without a challenge capstan understands (Basic or Bearer)".into(),
            )),
        }
    }
}

/// The token a token service answered (`token`, else `access_token`), and its `expires_in`.
async fn token(
    r: &Reference,
    url: &Url,
    resp: reqwest::Response,
) -> Result<(String, Option<u64>), Error> {
    let resp = ok(r, url, resp).await?;
    let body = resp.bytes().await.map_err(|e| request_error(url, &e))?;
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Response {
        url: url.to_string(),
        message: format!("the token answer is not JSON: {e}"),
    })?;
    let token = answer
        .token
        .or(answer.access_token)
        .ok_or_else(|| Error::Response {
            url: url.to_string(),
            message: "the token answer has neither token nor access_token".into(),
        })?;
    Ok((token, answer.expires_in))
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A 2xx answer, or the error its status means.
async fn ok(r: &Reference, url: &Url, resp: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound {
            reference: r.to_string(),
        });
    }
    let body = resp.text().await.unwrap_or_default();
    Err(Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        body: body.chars().take(512).collect(),
    })
}

fn request_error(url: &Url, e: &reqwest::Error) -> Error {
    let message = capstan_model::error_chain(e);
    let hint = if message.contains("certificate") {
        "its certificate is not trusted: add its CA to the system's, or list it as insecure if it speaks plain HTTP"
    } else {
        "is the registry up and the name right?"
    };
    Error::Request {
        url: url.to_string(),
        message,
        hint,
    }
}

/// The target of `Link: <...>; rel="next"`.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| p.trim().trim_start_matches("rel=").trim_matches('"') == "next");
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| target.to_owned())
        })
    })
}

fn rate_limit(headers: &reqwest::header::HeaderMap) -> Option<RateLimit> {
    let read = |name: &str| -> Option<(u64, Option<u64>)> {
        let v = headers.get(name)?.to_str().ok()?;
        let (n, rest) = v.split_once(';').unwrap_or((v, ""));
        let window = rest
            .split(';')
            .find_map(|p| p.trim().strip_prefix("w="))
            .and_then(|w| w.parse().ok());
        Some((n.trim().parse().ok()?, window))
    };
    let (remaining, window_s) = read("ratelimit-remaining")?;
    Some(RateLimit {
        remaining,
        limit: read("ratelimit-limit").map(|(n, _)| n),
        window_s,
    })
}

/// Until when a token that lives `expires_in` seconds (the registry's word; 60 s when it says
/// nothing) is used, from `now`: a margin early, at least a second, and at most a day (a
/// registry's `expires_in: 18446744073709551615` once overflowed the clock and killed the
/// watcher).
fn token_until(now: Instant, expires_in: Option<u64>) -> Instant {
    const LONGEST: Duration = Duration::from_hours(24);
    let life = Duration::from_secs(expires_in.unwrap_or(60).max(1))
        .min(LONGEST)
        .saturating_sub(TOKEN_MARGIN)
        .max(Duration::from_secs(1));
    now.checked_add(life).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn next_links_and_rate_limits_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/app/tags/list?last=b&n=2")
        );
        h.insert(LINK, HeaderValue::from_static(r#"</x>; rel="prev""#));
        assert_eq!(next_link(&h), None);
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from_static("76;w=21600"),
        );
        h.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
        assert_eq!(
            rate_limit(&h),
            Some(RateLimit {
                remaining: 76,
                limit: Some(100),
                window_s: Some(21600)
            })
        );
    }

    #[test]
    fn the_host_platform_picks_its_child_and_never_an_attestation() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let child = |d: &str, arch: &str, variant: Option<&str>, attestation: bool| Child {
            digest: d.into(),
            media_type: String::new(),
            platform: Some(Platform {
                os: if attestation { "unknown" } else { "linux" }.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_owned),
            }),
            annotations: if attestation {
                HashMap::from([(
                    "vnd.docker.reference.type".into(),
                    "attestation-manifest".into(),
                )])
            } else {
                HashMap::new()
            },
        };
        let index = Manifest {
            digest: "sha256:i".into(),
            media_type: MANIFEST_MEDIA_TYPES[1].into(),
            children: vec![
                child("sha256:att", "unknown", None, true),
                child("sha256:arm", "arm64", Some("v8"), false),
                child("sha256:amd", "amd64", None, false),
            ],
        };
        assert_eq!(index.child_for(&amd64).unwrap().digest, "sha256:amd");
        let arm = Platform {
            architecture: "arm64".into(),
            ..amd64.clone()
        };
        assert_eq!(index.child_for(&arm).unwrap().digest, "sha256:arm");
        let arm_v7 = Platform {
            architecture: "arm".into(),
            variant: Some("v7".into()),
            ..amd64
        };
        assert!(index.child_for(&arm_v7).is_none());
    }

    #[test]
    fn a_token_lives_what_the_registry_says_within_bounds() {
        let now = Instant::now();
        // the answer that once overflowed the clock
        let until = token_until(now, Some(u64::MAX));
        assert_eq!(
            until - now,
            Duration::from_hours(24).saturating_sub(TOKEN_MARGIN)
        );
        assert!(token_until(now, Some(0)) - now >= Duration::from_secs(1));
        assert_eq!(
            token_until(now, None) - now,
            Duration::from_mins(1).saturating_sub(TOKEN_MARGIN)
        );
    }
}
