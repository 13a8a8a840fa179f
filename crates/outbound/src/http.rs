//! What every delivery over HTTP shares (log sinks, notifiers): one HTTP client with timeouts, authentication, and the
//! reading of an answer into a body or an [`Error`] (status, `Retry-After`, permanence).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use capstan_model::ConfigError;

use crate::{Error, Secret};

/// A request that takes longer than this is a failed try.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_mins(5);
/// How much of an error body is kept for the operator.
const BODY_SNIPPET: usize = 512;

/// How a sink proves who it is.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    Bearer(Secret),
    /// A header of the caller's choice (`Authorization: ApiKey ...`).
    Header {
        name: String,
        value: Secret,
    },
}

/// `auth = { user = "...", password = "..." }` (or `password_file`, whose first line is the
/// password: keep it readable by capstan only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// Its password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Or a file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl Auth {
    /// Basic auth as configured, its password read from its file if need be.
    pub fn basic(config: Option<&BasicAuth>) -> Result<Self, Error> {
        let Some(c) = config else {
            return Ok(Self::None);
        };
        let password = match (&c.password, &c.password_file) {
            (Some(_), Some(_)) => {
                return Err(
                    ConfigError::new("auth", "give password or password_file, not both").into(),
                );
            }
            (Some(p), None) => p.clone(),
            (None, Some(path)) => Secret::from_file("auth.password_file", path)?,
            (None, None) => Secret::default(),
        };
        Ok(Self::Basic {
            user: c.user.clone(),
            password,
        })
    }

    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => req,
            Self::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
            Self::Bearer(token) => req.bearer_auth(token.expose()),
            Self::Header { name, value } => req.header(name.as_str(), value.expose()),
        }
    }
}

/// `tls = { ca_file = "...", crt_file = "...", key_file = "..." }`, for an `https://`
/// endpoint. Without it the system's CAs are trusted (`/etc/ssl/certs` on Debian).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificates of CAs trusted besides the system's: a private CA, or a server's own
    /// self-signed certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, its chain after it) for a server that asks for one; with
    /// `key_file`.
    #[serde(default)]
    pub crt_file: Option<PathBuf>,
    /// The client certificate's private key (PEM); keep it readable by capstan only.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// What a [`TlsConfig`] names, read and parsed.
pub struct Tls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl TlsConfig {
    /// Reads and parses the files: an error names the key and the file.
    ///
    /// # Errors
    /// A file cannot be read or holds no PEM of its kind, or `crt_file` and `key_file` are
    /// not given together.
    pub fn load(&self) -> Result<Tls, ConfigError> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    format!("tls.{key}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        };
        let no_pem = |path: &std::path::Path, why: String| {
            ConfigError::new(
                "tls.ca_file",
                format!("{} holds no PEM certificate{why}", path.display()),
            )
        };
        let roots = match &self.ca_file {
            None => Vec::new(),
            Some(path) => {
                let certs = reqwest::Certificate::from_pem_bundle(&read("ca_file", path)?)
                    .map_err(|e| no_pem(path, format!(" ({e})")))?;
                if certs.is_empty() {
                    return Err(no_pem(path, String::new()));
                }
                certs
            }
        };
        let identity = match (&self.crt_file, &self.key_file) {
            (None, None) => None,
            (Some(crt), Some(key)) => {
                let mut pem = read("crt_file", crt)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read("key_file", key)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ConfigError::new(
                        "tls",
                        format!(
                            "{} and {} are not a PEM certificate and its private key ({e})",
                            crt.display(),
                            key.display()
                        ),
                    )
                })?)
            }
            (Some(_), None) => {
                return Err(ConfigError::new("tls.crt_file", "give key_file with it"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("tls.key_file", "give crt_file with it"));
            }
        };
        Ok(Tls { roots, identity })
    }
}

/// The client every network sink uses: timeouts, no proxy from the environment (a sink talks
/// to the endpoint it was given), no redirects across hosts, and `tls` for https endpoints.
pub fn client(tls: Option<&TlsConfig>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        let Tls { roots, identity } = tls.load()?;
        builder = builder.tls_certs_merge(roots);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
    }
    builder
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("cannot set up an HTTP client: {e}")))
}

/// Checks configured extra headers: each name a header name, each value a header value (the
/// value is not repeated in the error: it may be a credential).
///
/// # Errors
/// The first bad header, under the key `headers`.
pub fn check_headers(
    headers: &std::collections::BTreeMap<String, Secret>,
) -> Result<(), ConfigError> {
    for (name, value) in headers {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new("headers", format!("{name:?} is not a header name")))?;
        reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
            ConfigError::new(
                "headers",
                format!("the value of {name:?} is not a header value"),
            )
        })?;
    }
    Ok(())
}

/// `base` with `path` appended (keeping any path prefix of `base`, as a reverse proxy needs).
pub fn join(base: &str, path: &str) -> Result<reqwest::Url, Error> {
    let url = endpoint(base)?;
    let mut s = url.as_str().trim_end_matches('/').to_owned();
    s.push_str(path);
    reqwest::Url::parse(&s).map_err(|e| Error::Config(format!("{base:?} + {path:?}: {e}")))
}

/// Checks an endpoint URL: absolute, http or https, with a host.
pub fn endpoint(text: &str) -> Result<reqwest::Url, Error> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        Error::Config(format!(
            "{text:?} is not a URL ({e}); write it like http://127.0.0.1:8123"
        ))
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Error::Config(format!(
                "{text:?}: the scheme {other:?} is not http or https"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Config(format!("{text:?} has no host")));
    }
    Ok(url)
}

/// Sends `req` and reads the whole answer: the body of a 2xx, or an [`Error::Status`] that is
/// permanent when `permanent` says so of its status.
pub async fn send(
    req: reqwest::RequestBuilder,
    url: &reqwest::Url,
    permanent: impl Fn(u16) -> bool,
) -> Result<Bytes, Error> {
    let resp = req.send().await.map_err(|e| request_error(url, e))?;
    let status = resp.status();
    let retry_after = retry_after(resp.headers(), chrono::Utc::now());
    let body = resp.bytes().await.map_err(|e| request_error(url, e))?;
    if status.is_success() {
        return Ok(body);
    }
    let code = status.as_u16();
    Err(Error::Status {
        url: redact(url),
        status: code,
        body: snippet(&body),
        retry_after,
        permanent: permanent(code),
    })
}

/// reqwest's error with its causes, which say what went wrong (`connection refused`).
fn request_error(url: &reqwest::Url, e: reqwest::Error) -> Error {
    let message = capstan_model::error_chain(&e.without_url());
    let hint = if message.contains("certificate") || message.contains("Certificate") {
        "the server's certificate is not trusted: give its CA in tls.ca_file, and check that \
         it names the host in the URL"
    } else {
        "is the server up and the endpoint right?"
    };
    Error::Request {
        url: redact(url),
        message,
        hint,
    }
}

/// 400 and 422 say the data itself is wrong; everything else (auth, 404 of a missing index
/// route, 408, 429, 5xx) may pass later and is retried.
pub fn data_rejected(status: u16) -> bool {
    matches!(status, 400 | 422)
}

/// The URL as messages show it: scheme, host and port only. Credentials, the path (a Slack
/// or Discord webhook's path is its secret) and the query (which may carry a token) stay out
/// of every error, and so of the statuses the API shows to viewers.
fn redact(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `Retry-After` as seconds or as an HTTP date, capped.
fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    capstan_model::parse_retry_after(value, now).map(|wait| wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:42 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(42)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:27:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn endpoints_are_checked_and_joined() {
        assert_eq!(
            join("http://127.0.0.1:9200/", "/_bulk").unwrap().as_str(),
            "http://127.0.0.1:9200/_bulk"
        );
        assert_eq!(
            join("http://h:1/es", "/_bulk").unwrap().as_str(),
            "http://h:1/es/_bulk"
        );
        for bad in ["127.0.0.1:9200", "ftp://h/", "https://", "nonsense"] {
            assert!(matches!(endpoint(bad), Err(Error::Config(_))), "{bad}");
        }
        let u = reqwest::Url::parse("http://u:p@h:1/x?password=s").unwrap();
        assert_eq!(redact(&u), "http://h:1");
        let slack = reqwest::Url::parse("https://hooks.slack.com/services/T0/B0/s3cret").unwrap();
        assert_eq!(redact(&slack), "https://hooks.slack.com");
    }

    #[test]
    fn basic_auth_reads_its_password_file_and_refuses_two_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let mut c = BasicAuth {
            user: "u".into(),
            password: None,
            password_file: Some(file),
        };
        match Auth::basic(Some(&c)).unwrap() {
            Auth::Basic { user, password } => {
                assert_eq!((user.as_str(), password.expose()), ("u", "s3cret"));
            }
            other => panic!("{other:?}"),
        }
        c.password = Some(Secret::from("x".to_owned()));
        assert!(matches!(Auth::basic(Some(&c)), Err(Error::Config(_))));
        c.password_file = Some(dir.path().join("missing"));
        c.password = None;
        assert!(matches!(Auth::basic(Some(&c)), Err(Error::Config(_))));
        assert!(matches!(Auth::basic(None), Ok(Auth::None)));
    }
}
