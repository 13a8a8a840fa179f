//! The agent's side: join once with a token, then keep one connection to the hub, saying hello
//! every few seconds, reconnecting with backoff when it drops. A removed host stops dialing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::{
    EventBatch, Hello, JoinRequest, LineBatch, SweepBatch, Taken, Welcome, WireError,
};
use crate::identity::Identity;
use crate::token::JoinToken;

/// How often a connected agent says hello.
const HELLO_EVERY: Duration = Duration::from_secs(5);
/// How long a caught-up agent waits before it looks for new records again.
const IDLE: Duration = Duration::from_millis(250);
/// The most records of a stream sent in one call.
const BATCH: usize = 1000;
/// The most metric sweeps sent in one call.
const SWEEPS: usize = 100;
/// The most bytes of log lines sent in one call (at least one line is).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A connection (TCP, TLS, HTTP/2) that takes longer is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A call the hub has not answered by then is given up (the connection with it).
const CALL_TIMEOUT: Duration = Duration::from_mins(1);
/// The longest wait between reconnects.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the agent keeps once joined (`<data>/fleet/hub.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// `https://host:port` of the hub's fleet listener.
    pub url: String,
    /// `sha256:<hex>` of the hub's certificate.
    pub hub: String,
    /// The host's name in the fleet.
    pub name: String,
}

impl Joined {
    /// What `dir` keeps, if this host joined.
    ///
    /// # Errors
    /// The file is there and cannot be read.
    pub fn load(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join("hub.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Keeps it in `dir`.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join("hub.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Why the agent cannot go on with the hub.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The URL or token is not one (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The hub presents another key than the one pinned (exit 2): not the hub, or a new one.
    #[error(
        "{0}: this is not the hub the join token was made on; check the URL, or make a new token there"
    )]
    WrongHub(String),
    /// The hub refused (a used or expired token, a removed host; exit 2).
    #[error("the hub refused: {0}")]
    Refused(String),
    /// Nothing answered, or the connection broke (exit 3).
    #[error("cannot reach the hub at {url}: {error}")]
    Unreachable { url: String, error: String },
}

/// The `host:port` of `https://host:port`.
fn address(url: &str) -> Result<String, AgentError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        AgentError::Usage(format!(
            "{url}: the hub's fleet address is https://HOST:PORT (its [fleet] listen)"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(AgentError::Usage(format!(
            "{url}: the hub's fleet address is https://HOST:PORT (its [fleet] listen)"
        )));
    }
    Ok(rest.to_owned())
}

/// One HTTP/2 connection to the hub (clones share it: each call is a stream of its own).
#[derive(Clone)]
pub(crate) struct Connection {
    send: SendRequest<Full<Bytes>>,
    /// Cancelled when the connection ends.
    ended: CancellationToken,
}

pub(crate) async fn connect(
    url: &str,
    identity: &Identity,
    hub: &str,
) -> Result<Connection, AgentError> {
    let addr = address(url)?;
    let unreachable = |error: String| AgentError::Unreachable {
        url: url.to_owned(),
        error,
    };
    let config = crate::tls::agent_config(identity, hub).map_err(AgentError::Usage)?;
    let work = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let name =
            ServerName::try_from(crate::HUB_NAME).map_err(|e| AgentError::Usage(e.to_string()))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| {
                // the pinned key did not match: the verifier's own message says which it saw
                let general = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
                    .and_then(|r| match r {
                        tokio_rustls::rustls::Error::General(m) => Some(m.clone()),
                        _ => None,
                    });
                match general {
                    Some(m) if m.contains("join token pins") => AgentError::WrongHub(m),
                    _ => unreachable(format!("TLS: {e}")),
                }
            })?;
        // pings find a hub gone without a word (a partition, a machine lost): the connection
        // ends, and the agent dials again
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(crate::KEEPALIVE)
            .keep_alive_timeout(crate::KEEPALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(format!("HTTP/2: {e}")))?;
        let ended = CancellationToken::new();
        let done = ended.clone();
        tokio::spawn(async move {
            let _ = conn.await;
            done.cancel();
        });
        Ok(Connection { send, ended })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
}

impl Connection {
    /// POSTs `body` to `path`; the hub's refusal is [`AgentError::Refused`].
    pub(crate) async fn call<B: Serialize, R: serde::de::DeserializeOwned>(
        &mut self,
        url: &str,
        path: &str,
        body: &B,
    ) -> Result<R, AgentError> {
        let unreachable = |error: String| AgentError::Unreachable {
            url: url.to_owned(),
            error,
        };
        let bytes = serde_json::to_vec(body).map_err(|e| AgentError::Usage(e.to_string()))?;
        let req = Request::post(path)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| AgentError::Usage(e.to_string()))?;
        let exchange = async {
            self.send
                .ready()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let resp = self
                .send
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, AgentError>((status, body))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_TIMEOUT:?}")))??;
        if status == StatusCode::OK {
            return serde_json::from_slice(&body)
                .map_err(|e| unreachable(format!("an answer that does not parse: {e}")));
        }
        let message = serde_json::from_slice::<WireError>(&body)
            .map_or_else(|_| format!("HTTP {status}"), |w| w.error.message);
        if status.is_server_error() {
            Err(unreachable(message))
        } else {
            Err(AgentError::Refused(message))
        }
    }
}

/// Joins the hub at `url` with `token` as host `name`, and keeps what it learnt in `dir`.
///
/// # Errors
/// [`AgentError`]: a malformed URL, the wrong hub, a refused token, no hub there.
pub async fn join(
    url: &str,
    token: &JoinToken,
    name: &str,
    identity: &Identity,
    dir: &Path,
) -> Result<Joined, AgentError> {
    let mut conn = connect(url, identity, &token.hub).await?;
    let welcome: Welcome = conn
        .call(
            url,
            "/fleet/v1/join",
            &JoinRequest {
                token: token.to_text(),
                name: name.to_owned(),
            },
        )
        .await?;
    let joined = Joined {
        url: url.to_owned(),
        hub: token.hub.clone(),
        name: welcome.name,
    };
    joined.save(dir).map_err(AgentError::Usage)?;
    info!(hub = %url, host = %joined.name, labels = ?welcome.labels, "joined the fleet");
    Ok(joined)
}

/// Keeps the link to the hub until `shutdown`: connects, ships the host's journal from where
/// the hub's cursor says (each batch answered only after the hub's durable commit, so a batch
/// whose answer is lost is sent again and skipped there), says hello every few seconds with
/// `engine()` (what the host's engine is), and reconnects with backoff when the connection
/// drops. Returns the hub's refusal when the host was removed: it is not a member any more.
///
/// # Errors
/// [`AgentError::Refused`] (removed), [`AgentError::WrongHub`] (another key at the URL).
pub async fn run_link<F, Fut>(
    joined: Joined,
    identity: Identity,
    (store, outboxes): (capstan_store::Store, crate::Outboxes),
    engine: F,
    shutdown: CancellationToken,
) -> Result<(), AgentError>
where
    F: Fn() -> Fut + Send,
    Fut: std::future::Future<Output = String> + Send,
{
    // what this agent was running for the hub when it stopped runs again
    if let Some(r) = outboxes.runner() {
        r.resume();
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match connect(&joined.url, &identity, &joined.hub).await {
            Ok(mut conn) => {
                info!(hub = %joined.url, "connected to the hub");
                let sources = (&store, &outboxes);
                match connected(&mut conn, &joined, sources, &engine, &shutdown).await {
                    Ok(()) => return Ok(()),
                    Err(e @ AgentError::Refused(_)) => return Err(e),
                    Err(e) => {
                        warn!(error = %e, "the link to the hub dropped; reconnecting");
                        backoff = Duration::from_secs(1);
                    }
                }
            }
            Err(e @ AgentError::WrongHub(_)) => return Err(e),
            Err(e) => warn!(error = %e, retry_in = ?backoff, "cannot reach the hub"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: hello, then ship and say hello again in turn until it ends
/// (`Err`) or `shutdown` (`Ok`).
async fn connected<F, Fut>(
    conn: &mut Connection,
    joined: &Joined,
    (store, outboxes): (&capstan_store::Store, &crate::Outboxes),
    engine: &F,
    shutdown: &CancellationToken,
) -> Result<(), AgentError>
where
    F: Fn() -> Fut + Send,
    Fut: std::future::Future<Output = String> + Send,
{
    let url = joined.url.as_str();
    // per stream: how old the oldest record the hub had not taken was at the last pass
    let mut lag = BTreeMap::from([("events".to_owned(), 0.0)]);
    let welcome = hello(conn, url, engine, &lag).await?;
    let mut cursor = welcome.cursors.get("events").copied().unwrap_or(0);
    // a hub that keeps no logs has no cursor for them: none are sent
    let mut lines_at = welcome
        .cursors
        .get("logs")
        .and_then(|c| u64::try_from(*c).ok());
    let logs = outboxes.logs.as_deref().filter(|_| lines_at.is_some());
    let mut swept_at = welcome.cursors.get("metrics").copied();
    let metrics = outboxes.metrics.as_deref().filter(|_| swept_at.is_some());
    info!(events = cursor, logs = ?lines_at, metrics = ?swept_at, "the hub's cursors");
    let mut hello_at = tokio::time::Instant::now() + HELLO_EVERY;
    // commands: a long poll of their own on this connection, each run to its end whatever
    // becomes of the connection
    let runner = outboxes.runner();
    let polling = runner
        .clone()
        .map(|r| tokio::spawn(r.poll(conn.clone(), url.to_owned())));
    let _stop_polling = AbortOnDrop(polling);
    loop {
        if let Some(r) = &runner {
            r.deliver(conn, url).await?;
        }
        let batch = store
            .read(move |c| capstan_store::events::own_after(c, cursor, BATCH))
            .await
            .map_err(|e| AgentError::Usage(format!("cannot read this host's journal: {e}")))?;
        lag.insert(
            "events".to_owned(),
            behind(batch.first().map(|e| e.time_nano)),
        );
        let mut shipped = !batch.is_empty();
        if shipped {
            let taken: Taken = conn
                .call(url, "/fleet/v1/events", &EventBatch { events: batch })
                .await?;
            cursor = taken.cursor;
        }
        if let (Some(outbox), Some(at)) = (logs, lines_at) {
            let mut lines = outbox
                .after(at, BATCH)
                .await
                .map_err(|e| AgentError::Usage(format!("cannot read this host's logs: {e}")))?;
            let mut bytes = 0;
            let keep = lines
                .iter()
                .take_while(|l| {
                    bytes += l.raw.len() + 256;
                    bytes <= BATCH_BYTES
                })
                .count()
                .max(1);
            lines.truncate(keep);
            lag.insert(
                "logs".to_owned(),
                behind(lines.first().map(|l| l.time_nano)),
            );
            if let Some(last) = lines.last().map(|l| l.seq) {
                shipped = true;
                let taken: Taken = conn
                    .call(url, "/fleet/v1/logs", &LineBatch { last, lines })
                    .await?;
                lines_at = u64::try_from(taken.cursor).ok();
            }
        }
        if let (Some(outbox), Some(at)) = (metrics, swept_at) {
            let sweeps = outbox
                .after(at, SWEEPS)
                .await
                .map_err(|e| AgentError::Usage(format!("cannot read this host's metrics: {e}")))?;
            let oldest = sweeps.first().map(|s| s.0.saturating_mul(1_000_000));
            lag.insert("metrics".to_owned(), behind(oldest));
            if !sweeps.is_empty() {
                shipped = true;
                let taken: Taken = conn
                    .call(url, "/fleet/v1/metrics", &SweepBatch { sweeps })
                    .await?;
                swept_at = Some(taken.cursor);
            }
        }
        if tokio::time::Instant::now() >= hello_at {
            hello(conn, url, engine, &lag).await?;
            hello_at = tokio::time::Instant::now() + HELLO_EVERY;
        }
        if shipped {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = conn.ended.cancelled() => {
                return Err(AgentError::Unreachable {
                    url: url.to_owned(),
                    error: "the hub closed the connection".to_owned(),
                });
            }
            () = tokio::time::sleep(IDLE) => {}
        }
    }
}

/// Says hello with what the host's engine is (`engine()`): the hub's cursors and the host's
/// labels in answer.
async fn hello<F, Fut>(
    conn: &mut Connection,
    url: &str,
    engine: &F,
    lag: &BTreeMap<String, f64>,
) -> Result<Welcome, AgentError>
where
    F: Fn() -> Fut + Send,
    Fut: std::future::Future<Output = String> + Send,
{
    let hello = Hello {
        engine: engine().await,
        lag: lag.clone(),
    };
    conn.call(url, "/fleet/v1/hello", &hello).await
}

/// Seconds since `oldest` (unix ns), the oldest record not shipped yet; 0 with none.
fn behind(oldest: Option<i64>) -> f64 {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    oldest.map_or(0.0, |t| {
        (now.saturating_sub(t).max(0) / 1_000_000) as f64 / 1000.0
    })
}

/// Aborts a task when dropped (the command poll of a connection that ended).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}
