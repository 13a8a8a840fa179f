//! Builds with BuildKit, the engine's own builder since API 1.39 (`POST /build?version=2`):
//! cache mounts (`RUN --mount=type=cache`), stages built only when the target needs them,
//! in parallel. bollard speaks BuildKit only through its gRPC session (a large dependency);
//! the engine also takes a build context as the request's body, which is all capstan needs,
//! so this one request is made here over the engine's own socket. Its progress comes as
//! BuildKit's `StatusResponse` messages (protobuf, base64 in `aux`), of which capstan reads
//! the few fields a build log shows: each step's name, whether it was cached, its output and
//! its error. That decoding is written by hand: a protobuf crate with generated types would
//! be far bigger than these forty lines.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;

use crate::{BuildContext, Engine, Error};

/// What a BuildKit build ended with (a failed build is an outcome: the engine did its part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildKitOutcome {
    /// Why the build failed, as BuildKit says; `None` when it succeeded.
    pub error: Option<String>,
    /// The step that failed (`[3/5] RUN make`), when one did.
    pub failed_step: Option<String>,
}

/// One step (a "vertex") of a build as its progress names it.
#[derive(Debug, Default)]
struct Vertex {
    number: usize,
    name: String,
    started: bool,
    done: bool,
}

/// The progress of one build: BuildKit's messages turned into log lines.
#[derive(Debug, Default)]
struct Progress {
    vertices: HashMap<String, Vertex>,
    failed: Option<String>,
}

impl Progress {
    fn vertex(&mut self, digest: &str) -> &mut Vertex {
        let next = self.vertices.len() + 1;
        self.vertices
            .entry(digest.to_owned())
            .or_insert_with(|| Vertex {
                number: next,
                ..Vertex::default()
            })
    }

    /// Reads one `StatusResponse` and says what it adds, a line at a time.
    fn status(&mut self, message: &[u8], line: &mut (dyn FnMut(&str) + Send)) {
        for (field, value) in fields(message) {
            match (field, value) {
                (1, Field::Bytes(v)) => self.on_vertex(v, line),
                (3, Field::Bytes(l)) => self.on_log(l, line),
                _ => {}
            }
        }
    }

    fn on_vertex(&mut self, message: &[u8], line: &mut (dyn FnMut(&str) + Send)) {
        let (mut digest, mut name, mut cached, mut started, mut completed, mut error) = (
            String::new(),
            String::new(),
            false,
            false,
            false,
            String::new(),
        );
        for (field, value) in fields(message) {
            match (field, value) {
                (1, Field::Bytes(v)) => digest = String::from_utf8_lossy(v).into_owned(),
                (3, Field::Bytes(v)) => name = String::from_utf8_lossy(v).into_owned(),
                (4, Field::Varint(v)) => cached = v != 0,
                (5, Field::Bytes(_)) => started = true,
                (6, Field::Bytes(_)) => completed = true,
                (7, Field::Bytes(v)) => error = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
        let v = self.vertex(&digest);
        if !name.is_empty() {
            v.name = name;
        }
        let (n, name) = (v.number, v.name.clone());
        if started && !v.started {
            v.started = true;
            line(&format!("#{n} {name}"));
        }
        if completed && !v.done {
            v.done = true;
            if !error.is_empty() {
                line(&format!("#{n} ERROR: {error}"));
                self.failed.get_or_insert(name);
            } else if cached {
                line(&format!("#{n} CACHED"));
            } else {
                line(&format!("#{n} DONE"));
            }
        }
    }

    fn on_log(&mut self, message: &[u8], line: &mut (dyn FnMut(&str) + Send)) {
        let (mut digest, mut text) = (String::new(), Vec::new());
        for (field, value) in fields(message) {
            match (field, value) {
                (1, Field::Bytes(v)) => digest = String::from_utf8_lossy(v).into_owned(),
                (4, Field::Bytes(v)) => text = v.to_vec(),
                _ => {}
            }
        }
        let n = self.vertex(&digest).number;
        for l in String::from_utf8_lossy(&text).lines() {
            line(&format!("#{n} {l}"));
        }
    }
}

/// A protobuf field's value, as far as capstan reads them.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a protobuf message (what does not read ends the list).
fn fields(buf: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let Some(key) = varint(buf, &mut at) else {
            break;
        };
        let value = match key & 7 {
            0 => match varint(buf, &mut at) {
                Some(v) => Field::Varint(v),
                None => break,
            },
            1 => {
                at += 8;
                Field::Other
            }
            2 => {
                let Some(len) = varint(buf, &mut at).and_then(|l| usize::try_from(l).ok()) else {
                    break;
                };
                let Some(bytes) = buf.get(at..at.saturating_add(len)) else {
                    break;
                };
                at += len;
                Field::Bytes(bytes)
            }
            5 => {
                at += 4;
                Field::Other
            }
            _ => break,
        };
        out.push((key >> 3, value));
    }
    out
}

/// The engine's address as a socket to dial.
pub(crate) enum Dial {
    Unix(String),
    Tcp(String),
}

impl Engine {
    /// Whether BuildKit builds can be asked of this engine (API 1.39 or newer, reached over a
    /// unix socket or plain TCP).
    ///
    /// # Errors
    /// [`Error::Unreachable`].
    pub async fn has_buildkit(&self) -> Result<bool, Error> {
        let version = self.version().await?;
        let newer = version
            .api_version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .is_some_and(|v| v >= (1, 39));
        Ok(newer && self.dial().is_some())
    }

    pub(crate) fn dial(&self) -> Option<Dial> {
        let host = self.host();
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(Dial::Unix(path.to_owned()));
        }
        host.strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .map(|a| Dial::Tcp(a.trim_end_matches('/').to_owned()))
    }

    /// Builds `context` with BuildKit and tags it `reference`, handing each line of its
    /// progress to `line` as it comes.
    ///
    /// # Errors
    /// [`Error::Api`] when the engine refuses the request, [`Error::Unreachable`]; a build
    /// that fails is an [`BuildKitOutcome`] with its error and step.
    pub async fn build_buildkit(
        &self,
        context: BuildContext,
        reference: &str,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BuildKitOutcome, Error> {
        let unreachable = |e: String| Error::Unreachable {
            host: self.host().to_owned(),
            reason: e,
        };
        let memory = context.memory.map(|m| m.to_string()).unwrap_or_default();
        let query = url_query(&[
            ("version", "2".to_owned()),
            ("t", reference.to_owned()),
            ("dockerfile", context.dockerfile.clone()),
            ("rm", "1".to_owned()),
            ("target", context.target.clone().unwrap_or_default()),
            (
                "buildargs",
                serde_json::to_string(&context.args).unwrap_or_default(),
            ),
            (
                "labels",
                serde_json::to_string(&context.labels).unwrap_or_default(),
            ),
            ("memory", memory),
        ]);
        let auth: HashMap<String, serde_json::Value> = context
            .credentials
            .iter()
            .map(|a| {
                (
                    a.server_address(),
                    serde_json::json!({
                        "username": a.username,
                        "password": a.password,
                        "serveraddress": a.server_address(),
                    }),
                )
            })
            .collect();
        let request = hyper::Request::post(format!("/build?{query}"))
            .header("host", "docker")
            .header("content-type", "application/x-tar")
            .header(
                "x-registry-config",
                base64::engine::general_purpose::URL_SAFE
                    .encode(serde_json::to_vec(&auth).unwrap_or_default()),
            )
            .body(http_body_util::Full::new(context.tar))
            .map_err(|e| Error::Api {
                status: 0,
                message: e.to_string(),
            })?;
        let Some(response) = self.raw(request, false).await? else {
            return Err(unreachable("BuildKit needs a unix or tcp engine".into()));
        };
        if response.status().as_u16() != 200 {
            return Err(api_error(response).await);
        }
        let mut body = response.into_body();
        let mut progress = Progress::default();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| unreachable(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            let mut messages =
                serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
            let mut used = 0;
            let mut failed = None;
            while let Some(message) = messages.next() {
                let Ok(m) = message else {
                    break;
                };
                used = messages.byte_offset();
                if let Some(e) = m["errorDetail"]["message"].as_str().or(m["error"].as_str()) {
                    failed = Some(e.to_owned());
                    break;
                }
                if m["id"] == "moby.buildkit.trace"
                    && let Some(aux) = m["aux"].as_str()
                    && let Ok(status) = base64::engine::general_purpose::STANDARD.decode(aux)
                {
                    progress.status(&status, line);
                } else if let Some(text) = m["stream"].as_str() {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        line(l);
                    }
                }
            }
            pending.drain(..used);
            if let Some(message) = failed {
                return Ok(BuildKitOutcome {
                    error: Some(message),
                    failed_step: progress.failed,
                });
            }
        }
        Ok(BuildKitOutcome {
            error: None,
            failed_step: progress.failed,
        })
    }
}

impl Engine {
    /// Sends `request` to the engine on an HTTP/1 connection of its own, kept for an upgrade
    /// when `upgrades` (what bollard does not do as capstan needs: BuildKit's progress, an
    /// exec's raw stream, a build cache prune by `keep-storage`). `Ok(None)`: the engine is on
    /// neither a unix socket nor plain tcp.
    ///
    /// # Errors
    /// [`Error::Unreachable`].
    pub(crate) async fn raw(
        &self,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        upgrades: bool,
    ) -> Result<Option<hyper::Response<hyper::body::Incoming>>, Error> {
        let unreachable = |reason: String| Error::Unreachable {
            host: self.host().to_owned(),
            reason,
        };
        let response = match self.dial() {
            Some(Dial::Unix(path)) => {
                let stream = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                send(stream, request, upgrades).await
            }
            Some(Dial::Tcp(addr)) => {
                let stream = tokio::net::TcpStream::connect(&addr)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                send(stream, request, upgrades).await
            }
            None => return Ok(None),
        };
        response.map(Some).map_err(unreachable)
    }
}

/// The engine's error answer `response` as an [`Error::Api`], with the message its JSON says.
pub(crate) async fn api_error(response: hyper::Response<hyper::body::Incoming>) -> Error {
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    Error::Api { status, message }
}

/// Sends `request` on a fresh HTTP/1 connection over `stream`.
async fn send<S>(
    stream: S,
    request: hyper::Request<http_body_util::Full<Bytes>>,
    upgrades: bool,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = if upgrades {
            connection.with_upgrades().await
        } else {
            connection.await
        };
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// `k=v&…`, each value percent-encoded (empty ones left out).
fn url_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let encoded: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={encoded}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf field: its key and a length-delimited value.
    fn bytes_field(n: u64, value: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from(n << 3 | 2).unwrap(),
            u8::try_from(value.len()).unwrap(),
        ];
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn buildkit_progress_reads_as_numbered_steps_their_output_and_the_failure() {
        let vertex = |digest: &str, name: &str, started: bool, done: bool, error: &str| {
            let mut v = bytes_field(1, digest.as_bytes());
            v.extend(bytes_field(3, name.as_bytes()));
            if started {
                v.extend(bytes_field(5, &[8, 1]));
            }
            if done {
                v.extend(bytes_field(6, &[8, 2]));
            }
            if !error.is_empty() {
                v.extend(bytes_field(7, error.as_bytes()));
            }
            bytes_field(1, &v)
        };
        let log = |digest: &str, msg: &str| {
            let mut l = bytes_field(1, digest.as_bytes());
            l.extend(bytes_field(4, msg.as_bytes()));
            bytes_field(3, &l)
        };
        let mut lines = Vec::new();
        let mut p = Progress::default();
        let mut say = |l: &str| lines.push(l.to_owned());
        p.status(
            &vertex("sha256:a", "[1/3] FROM base", true, true, ""),
            &mut say,
        );
        p.status(
            &vertex("sha256:b", "[2/3] RUN make", true, false, ""),
            &mut say,
        );
        p.status(&log("sha256:b", "compiling\nlinking\n"), &mut say);
        p.status(
            &vertex("sha256:b", "[2/3] RUN make", true, true, "exit code: 2"),
            &mut say,
        );
        assert_eq!(
            lines,
            [
                "#1 [1/3] FROM base",
                "#1 DONE",
                "#2 [2/3] RUN make",
                "#2 compiling",
                "#2 linking",
                "#2 ERROR: exit code: 2"
            ]
        );
        assert_eq!(p.failed.as_deref(), Some("[2/3] RUN make"));
        // what does not read is left alone
        assert!(fields(&[0xff]).is_empty());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            url_query(&[("t", "reg:5000/a b".into()), ("target", String::new())]),
            "t=reg%3A5000%2Fa%20b"
        );
    }
}
