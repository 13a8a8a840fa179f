//! The CLI's view of the daemon: `CAPSTAN_URL` and `CAPSTAN_TOKEN`, errors to exit codes.

use std::time::Duration;

use capstan_model::{ErrorBody, ErrorCode, ExitStatus};
use serde::de::DeserializeOwned;

use super::Failure;
use crate::config;

/// Default daemon address.
const DEFAULT_URL: &str = "http://127.0.0.1:7878";

/// A client for the daemon's API.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// From `CAPSTAN_URL` (default `http://127.0.0.1:7878`) and `CAPSTAN_TOKEN` (default: the
    /// admin token file in the default data dir).
    pub fn from_env() -> Result<Self, Failure> {
        let base = std::env::var("CAPSTAN_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let token = std::env::var("CAPSTAN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                std::fs::read_to_string(config::default_data_dir().join("admin.token"))
                    .ok()
                    .map(|t| t.trim().to_owned())
            });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self { http, base, token })
    }

    fn request(&self, path: &str, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        let mut req = self.http.get(format!("{}{path}", self.base)).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// The daemon's URL, as the CLI reaches it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and checks the status; API errors become failures with exit codes.
    pub async fn send(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, Failure> {
        self.check(self.request(path, query)).await
    }

    /// POSTs a JSON body and reads a JSON answer.
    pub async fn post<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// PUTs a JSON body and reads a JSON answer.
    pub async fn put<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.check(req).await?.json().await.map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: unexpected answer from the daemon: {e}"),
            )
        })
    }

    /// DELETEs; the answer's body is not read.
    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        let mut req = self.http.delete(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.check(req).await.map(drop)
    }

    /// POSTs raw bytes (a build context) and reads a JSON answer.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<T, Failure> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        self.check(req).await?.json().await.map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: unexpected answer from the daemon: {e}"),
            )
        })
    }

    /// POSTs a JSON body asking for newline-delimited JSON, and calls `on_line` with each line
    /// as it arrives.
    pub async fn post_lines<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        on_line: impl FnMut(&str) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .json(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        read_lines(self.check(req).await?, on_line).await
    }

    /// Sends a request; API errors become failures with exit codes.
    async fn check(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let response = request.send().await.map_err(|e| self.unanswered(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.failure(response).await)
    }

    /// Opens a WebSocket on `path` (subprotocol `protocol`): the connection, switched.
    pub async fn websocket(
        &self,
        path: &str,
        query: &[(&str, String)],
        protocol: &str,
    ) -> Result<reqwest::Upgraded, Failure> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let request = self
            .request(path, query)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", &key)
            .header("sec-websocket-protocol", protocol);
        let response = request.send().await.map_err(|e| self.unanswered(&e))?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.failure(response).await);
        }
        let accepted = response
            .headers()
            .get("sec-websocket-accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if accepted != tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
        {
            return Err(Failure::new(
                ExitStatus::Failure,
                "capstan: the daemon's WebSocket answer does not match the request (a proxy in between?)",
            ));
        }
        response.upgrade().await.map_err(|e| {
            Failure::new(
                ExitStatus::Unreachable,
                format!("capstan: the daemon did not switch to the WebSocket: {e}"),
            )
        })
    }

    /// The failure a request that got no answer stands for.
    fn unanswered(&self, e: &reqwest::Error) -> Failure {
        if e.is_connect() || e.is_timeout() {
            self.unreachable()
        } else {
            Failure::new(
                ExitStatus::Unreachable,
                format!("capstan daemon at {} failed to answer: {e}", self.base),
            )
        }
    }

    /// The failure an error answer stands for.
    async fn failure(&self, response: reqwest::Response) -> Failure {
        let status = response.status();
        let body: Option<ErrorBody> = response.json().await.ok();
        let (code, message) = body.map_or_else(
            || (ErrorCode::Unknown, format!("the daemon answered {status}")),
            |b| (b.error.code, b.error.message),
        );
        let hint = if code == ErrorCode::Unauthorized && self.token.is_none() {
            " (no token found: set CAPSTAN_TOKEN, or CAPSTAN_DATA to the daemon's data dir)"
        } else {
            ""
        };
        Failure::new(code.exit_status(), format!("capstan: {message}{hint}"))
    }

    /// GETs a JSON document.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Failure> {
        self.send(path, query).await?.json().await.map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: unexpected answer from the daemon: {e}"),
            )
        })
    }

    /// The message for a daemon that does not answer.
    pub fn unreachable(&self) -> Failure {
        Failure::new(
            ExitStatus::Unreachable,
            format!(
                "capstan daemon not reachable at {} (start it with: capstan serve)",
                self.base
            ),
        )
    }
}

/// Reads a Server-Sent Events body and calls `on_data` with each event's `data`.
/// Calls `on_line` with each non-empty line of a newline-delimited answer as it arrives (a
/// line split across chunks, even inside a character, is joined first).
pub async fn read_lines(
    response: reqwest::Response,
    mut on_line: impl FnMut(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut each = |bytes: &[u8]| {
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim();
        if line.is_empty() {
            Ok(())
        } else {
            on_line(line)
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Failure::new(
                ExitStatus::Unreachable,
                format!("capstan: the daemon's answer broke off: {e}"),
            )
        })?;
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|b| *b == b'\n') {
            each(&buf[start..start + end])?;
            start += end + 1;
        }
        buf.drain(..start);
    }
    each(&buf)
}

pub async fn read_sse(
    response: reqwest::Response,
    mut on_data: impl FnMut(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            Failure::new(
                ExitStatus::Unreachable,
                format!("capstan: event stream broke: {e}"),
            )
        })?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                on_data(&data.join("\n"))?;
            }
        }
    }
    Ok(())
}
