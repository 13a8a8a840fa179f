//! The hub's side: a listener for agents (`[fleet] listen`), the hosts it knows, the join tokens
//! it hands out, and the connections it can cut at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use capstan_model::FleetHost;
use capstan_store::Store;
use capstan_store::fleet::{HostRow, JoinRefused};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::identity::{Identity, fingerprint};
use crate::token::JoinToken;

/// The largest batch a host may send.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[fleet]` of the hub's capstan.toml.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where agents connect (nothing listens unless configured).
    pub listen: SocketAddr,
}

/// The hub: its identity, its hosts and their live connections.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("fingerprint", &self.inner.identity.fingerprint())
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    identity: Identity,
    /// Where hosts' log lines and metrics go (the hub's stores), when it keeps them.
    inboxes: crate::Inboxes,
    /// Commands for hosts, and who waits for their ends.
    queue: crate::commands::Queue,
    /// Fingerprint → the connections presenting it (an id each, and what cuts it).
    live: Mutex<HashMap<String, Vec<(u64, CancellationToken)>>>,
    next: AtomicU64,
    /// Fingerprint → each stream's lag, as its last hello said.
    lags: Mutex<HashMap<String, BTreeMap<String, f64>>>,
}

/// The peer of a connection, as its handshake proved it.
#[derive(Debug, Clone)]
struct Peer {
    fingerprint: String,
    address: SocketAddr,
    conn: u64,
}

/// An error as the agent reads it: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub error: WireErrorBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireErrorBody {
    pub code: String,
    pub message: String,
}

type Refusal = (StatusCode, Json<WireError>);

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    (
        status,
        Json(WireError {
            error: WireErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }),
    )
}

fn internal(e: &capstan_store::Error) -> Refusal {
    warn!(error = %e, "the hub's store failed");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the hub cannot read or write its store; try again",
    )
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub token: String,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Stream → how far the hub has durably taken it: where the agent resumes.
    #[serde(default)]
    pub cursors: BTreeMap<String, i64>,
}

/// A batch of the host's journal, oldest first.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EventBatch {
    pub events: Vec<capstan_model::Event>,
}

/// A batch of the host's log lines, oldest first; `last` is the host's sequence number of the
/// last of them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LineBatch {
    pub last: u64,
    pub lines: Vec<capstan_model::LogLine>,
}

/// A batch of the host's metric sweeps, oldest first.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SweepBatch {
    pub sweeps: Vec<crate::Sweep>,
}

/// The stream's cursor after the hub's commit.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Taken {
    pub cursor: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub engine: String,
    /// Per stream: seconds since the oldest record the hub had not taken at the agent's last
    /// pass (0: caught up).
    #[serde(default)]
    pub lag: BTreeMap<String, f64>,
}

fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn host_of(row: HostRow, connected: bool) -> FleetHost {
    let at = |n: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(n);
    FleetHost {
        labels: serde_json::from_str(&row.labels).unwrap_or_default(),
        state: if connected { "connected" } else { "away" }.to_owned(),
        engine: row.engine,
        address: row.address,
        joined: at(row.joined_nano),
        last_contact: row.last_contact_nano.map(at),
        fingerprint: row.fingerprint,
        name: row.name,
        lag: BTreeMap::new(),
        load1: None,
        containers: None,
        alerts: Vec::new(),
    }
}

impl Hub {
    /// The hub of `store`, known to agents by `identity`, keeping hosts' log lines and
    /// metrics in `inboxes`.
    pub fn new(store: Store, identity: Identity, inboxes: crate::Inboxes) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                identity,
                inboxes,
                queue: crate::commands::Queue::default(),
                live: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                lags: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// `sha256:<hex>` of the hub's certificate: what join tokens pin.
    pub fn fingerprint(&self) -> String {
        self.inner.identity.fingerprint()
    }

    /// A new join token (`id`, `secret` random, from the caller) that lets `uses` hosts in
    /// (each once) until `expires_nano`, giving each `labels`.
    ///
    /// # Errors
    /// The store's.
    pub async fn issue(
        &self,
        (id, secret): (String, String),
        (labels, uses): (&BTreeMap<String, String>, u32),
        expires_nano: i64,
        by: &str,
    ) -> Result<JoinToken, capstan_store::Error> {
        let token = JoinToken::new(&self.fingerprint(), id, secret);
        let row = capstan_store::fleet::JoinTokenRow {
            id: token.id.clone(),
            hash: token.hash(),
            labels: serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()),
            created_nano: now_nanos(),
            created_by: by.to_owned(),
            expires_nano,
            used_nano: None,
            used_by: None,
            uses: i64::from(uses),
            used: 0,
        };
        self.inner
            .store
            .write(move |tx| capstan_store::fleet::add_join_token(tx, &row))
            .await?;
        Ok(token)
    }

    /// Enrolls host `name` with key `fingerprint` and `labels`, without a token: a host whose
    /// agent this hub runs itself (its engine reached over ssh or TLS; its key made here).
    /// `Ok(Err(why))` when another key holds the name.
    ///
    /// # Errors
    /// The store's.
    pub async fn enroll(
        &self,
        name: &str,
        fingerprint: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Result<(), String>, capstan_store::Error> {
        let (owned, fp) = (name.to_owned(), fingerprint.to_owned());
        let labels = serde_json::to_string(labels)?;
        let done = self
            .inner
            .store
            .write(move |tx| capstan_store::fleet::enroll(tx, &owned, &fp, &labels, now_nanos()))
            .await?;
        Ok(done.map(drop).map_err(|_| {
            format!(
                "a host named {name} is in the fleet with another key (an agent joined under that name): give this target another name, or remove that host (`capstan hosts remove {name}`)"
            )
        }))
    }

    /// Keeps `command` for the host of `key` until it reports the end (a hub restarted
    /// meanwhile offers it again), and offers it; the end arrives on the receiver, the steps
    /// on `progress`.
    ///
    /// # Errors
    /// The store's: nothing was offered.
    pub(crate) async fn enqueue(
        &self,
        key: &str,
        command: crate::commands::Command,
        progress: Option<tokio::sync::mpsc::Sender<capstan_model::Progress>>,
    ) -> Result<tokio::sync::oneshot::Receiver<crate::commands::Done>, capstan_store::Error> {
        let row = capstan_store::fleet::CommandRow {
            id: command.id.clone(),
            fingerprint: key.to_owned(),
            app: command.op.app().to_owned(),
            release: command.release,
            op: serde_json::to_string(&command.op)?,
            queued_nano: now_nanos(),
        };
        self.inner
            .store
            .write(move |tx| capstan_store::fleet::add_command(tx, &row))
            .await?;
        let done = self.inner.queue.wait(&command.id, progress);
        self.inner.queue.offer(key, command);
        Ok(done)
    }

    /// Offers `command` to the connected host of `key` without keeping it (a read: asked again
    /// when lost), and waits up to `wait` for its end.
    pub(crate) async fn ask_now(
        &self,
        key: &str,
        command: crate::commands::Command,
        wait: Duration,
    ) -> Option<crate::commands::Done> {
        let id = command.id.clone();
        let done = self.inner.queue.wait(&id, None);
        self.inner.queue.offer(key, command);
        let answer = tokio::time::timeout(wait, done).await;
        self.inner.queue.forget(&id);
        self.inner.queue.withdraw(key, &id);
        answer.ok().and_then(Result::ok)
    }

    /// Forgets who waited for command `id` (the command stays offered until its end).
    pub(crate) fn stop_waiting(&self, id: &str) {
        self.inner.queue.forget(id);
    }

    /// Offers again the commands the store keeps (their hosts have not reported their ends:
    /// this hub restarted meanwhile).
    async fn restore_commands(&self) {
        let rows = match self.inner.store.read(capstan_store::fleet::commands).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot read the commands kept for hosts; they are offered after the next restart");
                return;
            }
        };
        for row in rows {
            match serde_json::from_str(&row.op) {
                Ok(op) => self.inner.queue.offer(
                    &row.fingerprint,
                    crate::commands::Command {
                        id: row.id,
                        release: row.release,
                        op,
                    },
                ),
                Err(e) => {
                    warn!(id = %row.id, error = %e, "a command kept for a host is unreadable; skipped");
                }
            }
        }
    }

    /// The key of the host named `name`, if it is in the fleet.
    ///
    /// # Errors
    /// The store's.
    pub async fn host_key(&self, name: &str) -> Result<Option<String>, capstan_store::Error> {
        let name = name.to_owned();
        let rows = self.inner.store.read(capstan_store::fleet::hosts).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.fingerprint))
    }

    pub(crate) fn connected(&self, fingerprint: &str) -> bool {
        self.inner
            .live
            .lock()
            .is_ok_and(|l| l.get(fingerprint).is_some_and(|c| !c.is_empty()))
    }

    /// Every host, with whether its agent is connected now.
    ///
    /// # Errors
    /// The store's.
    pub async fn hosts(&self) -> Result<Vec<FleetHost>, capstan_store::Error> {
        let rows = self.inner.store.read(capstan_store::fleet::hosts).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let connected = self.connected(&r.fingerprint);
                let lag = self
                    .inner
                    .lags
                    .lock()
                    .ok()
                    .and_then(|l| l.get(&r.fingerprint).cloned())
                    .unwrap_or_default();
                FleetHost {
                    lag,
                    ..host_of(r, connected)
                }
            })
            .collect())
    }

    /// Removes the host `name` and cuts its connections at once; `None` when there is none.
    ///
    /// # Errors
    /// The store's.
    pub async fn remove(&self, name: &str) -> Result<Option<FleetHost>, capstan_store::Error> {
        let owned = name.to_owned();
        let Some(row) = self
            .inner
            .store
            .write(move |tx| capstan_store::fleet::remove_host(tx, &owned))
            .await?
        else {
            return Ok(None);
        };
        let cut = self
            .inner
            .live
            .lock()
            .ok()
            .and_then(|mut l| l.remove(&row.fingerprint))
            .unwrap_or_default();
        for (_, token) in &cut {
            token.cancel();
        }
        self.inner.queue.drop_host(&row.fingerprint);
        info!(host = %row.name, connections = cut.len(), "host removed; its connections cut");
        Ok(Some(host_of(row, false)))
    }

    /// Accepts agents on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        self.restore_commands().await;
        let config = match crate::tls::hub_config(&self.inner.identity) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                warn!(error = %e, "the fleet listener cannot start");
                return;
            }
        };
        let acceptor = TlsAcceptor::from(config);
        loop {
            let (tcp, address) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "the fleet listener cannot accept; trying again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let hub = self.clone();
            let acceptor = acceptor.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(%address, error = %e, "a fleet handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                    return;
                };
                let fingerprint = fingerprint(cert);
                hub.connection(tls, fingerprint, address, shutdown).await;
            });
        }
    }

    /// Serves one agent's connection until it ends, the hub stops, or its host is removed.
    async fn connection(
        &self,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        fingerprint: String,
        address: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let conn = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let cut = shutdown.child_token();
        if let Ok(mut live) = self.inner.live.lock() {
            live.entry(fingerprint.clone())
                .or_default()
                .push((conn, cut.clone()));
        }
        let peer = Peer {
            fingerprint: fingerprint.clone(),
            address,
            conn,
        };
        let app = Router::new()
            .route("/fleet/v1/join", post(join))
            .route("/fleet/v1/hello", post(hello))
            .route("/fleet/v1/events", post(events))
            .route("/fleet/v1/logs", post(logs))
            .route("/fleet/v1/metrics", post(metrics))
            .route("/fleet/v1/commands/next", post(next_command))
            .route("/fleet/v1/commands/step", post(command_step))
            .route("/fleet/v1/commands/done", post(command_done))
            // a batch of long lines is larger than axum's default
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
            .layer(Extension(peer))
            .with_state(self.clone());
        let service = hyper_util::service::TowerToHyperService::new(app);
        // pings find an agent gone without a word: it is shown away, not connected
        let serving = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(crate::KEEPALIVE)
            .keep_alive_timeout(crate::KEEPALIVE)
            .serve_connection(TokioIo::new(tls), service);
        tokio::select! {
            r = serving => if let Err(e) = r {
                debug!(%address, error = %e, "a fleet connection ended");
            },
            // dropping the connection closes it: the host's next byte finds it gone
            () = cut.cancelled() => debug!(%address, "a fleet connection cut"),
        }
        if let Ok(mut live) = self.inner.live.lock()
            && let Some(c) = live.get_mut(&fingerprint)
        {
            c.retain(|(id, _)| *id != conn);
            if c.is_empty() {
                live.remove(&fingerprint);
            }
        }
    }

    /// The host the peer's key belongs to, or the refusal an unknown key gets.
    async fn known(&self, peer: &Peer) -> Result<HostRow, Refusal> {
        let fp = peer.fingerprint.clone();
        match self
            .inner
            .store
            .read(move |c| capstan_store::fleet::host_by_fingerprint(c, &fp))
            .await
        {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(refuse(
                StatusCode::FORBIDDEN,
                "not_a_member",
                "this host is not a member of the fleet (never joined, or removed): join it with a new token from `capstan hosts join-token`",
            )),
            Err(e) => Err(internal(&e)),
        }
    }
}

async fn join(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<Welcome>, Refusal> {
    let token = JoinToken::parse(&req.token)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_token", e.to_string()))?;
    if capstan_model::check_object_name("host", &req.name).is_err() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_name",
            format!(
                "{:?} cannot name a host: lowercase letters, digits and '-', at most 63 (set --name)",
                req.name
            ),
        ));
    }
    let (id, hash) = (token.id.clone(), token.hash());
    let (name, fp) = (req.name.clone(), peer.fingerprint.clone());
    let joined = hub
        .inner
        .store
        .write(move |tx| capstan_store::fleet::join(tx, (&id, &hash), &name, &fp, now_nanos()))
        .await
        .map_err(|e| internal(&e))?;
    match joined {
        Ok(row) => {
            info!(host = %row.name, address = %peer.address, fingerprint = %row.fingerprint, "a host joined the fleet");
            Ok(Json(Welcome {
                labels: serde_json::from_str(&row.labels).unwrap_or_default(),
                name: row.name,
                cursors: BTreeMap::new(),
            }))
        }
        Err(refused) => {
            let message = match refused {
                JoinRefused::UnknownToken => {
                    "the hub knows no such join token: make one with `capstan hosts join-token`"
                        .to_owned()
                }
                JoinRefused::Used(by) => format!(
                    "the join token was used already (by host {by}); a token lets one host in: make another with `capstan hosts join-token`"
                ),
                JoinRefused::Expired => {
                    "the join token expired: make another with `capstan hosts join-token`"
                        .to_owned()
                }
                JoinRefused::NameTaken => format!(
                    "a host named {} is in the fleet with another key: pick another name (--name), or remove it first (`capstan hosts remove {}`)",
                    req.name, req.name
                ),
            };
            warn!(address = %peer.address, name = %req.name, reason = %message, "a join was refused");
            Err(refuse(StatusCode::FORBIDDEN, "join_refused", message))
        }
    }
}

async fn hello(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<Hello>,
) -> Result<Json<Welcome>, Refusal> {
    let row = hub.known(&peer).await?;
    let (fp, address) = (peer.fingerprint.clone(), peer.address.to_string());
    let engine = req.engine;
    if let Ok(mut lags) = hub.inner.lags.lock() {
        lags.insert(peer.fingerprint.clone(), req.lag);
    }
    hub.inner
        .store
        .write(move |tx| capstan_store::fleet::contact(tx, &fp, now_nanos(), &engine, &address))
        .await
        .map_err(|e| internal(&e))?;
    debug!(host = %row.name, conn = peer.conn, "hello");
    let fp = peer.fingerprint.clone();
    let events = hub
        .inner
        .store
        .read(move |c| capstan_store::fleet::cursor(c, &fp, "events"))
        .await
        .map_err(|e| internal(&e))?;
    let mut cursors = BTreeMap::from([("events".to_owned(), events)]);
    if let Some(logs) = &hub.inner.inboxes.logs {
        let at = logs.cursor(&peer.fingerprint);
        cursors.insert("logs".to_owned(), i64::try_from(at).unwrap_or(i64::MAX));
    }
    if let Some(metrics) = &hub.inner.inboxes.metrics {
        let at = metrics.cursor(&peer.fingerprint).await.map_err(|e| {
            warn!(error = %e, "cannot read a host's metrics cursor");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the hub cannot read its metrics history; try again",
            )
        })?;
        cursors.insert("metrics".to_owned(), at);
    }
    Ok(Json(Welcome {
        labels: serde_json::from_str(&row.labels).unwrap_or_default(),
        name: row.name,
        cursors,
    }))
}

/// A batch of the host's log lines: stored with `host`, and the cursor moved, in one commit of
/// the log store; only then is the cursor answered.
async fn logs(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(batch): Json<LineBatch>,
) -> Result<Json<Taken>, Refusal> {
    let row = hub.known(&peer).await?;
    let Some(inbox) = &hub.inner.inboxes.logs else {
        return Err(refuse(
            StatusCode::CONFLICT,
            "no_logs",
            "the hub keeps no logs ([logs] collect = false there)",
        ));
    };
    let cursor = inbox
        .take(&peer.fingerprint, &row.name, batch.last, batch.lines)
        .await
        .map_err(|e| {
            warn!(host = %row.name, error = %e, "cannot store a host's log lines");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the hub cannot store log lines now; try again",
            )
        })?;
    Ok(Json(Taken {
        cursor: i64::try_from(cursor).unwrap_or(i64::MAX),
    }))
}

/// A batch of the host's journal: journaled with `host`, and the cursor moved, in one durable
/// commit; only then is the cursor answered.
async fn events(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(batch): Json<EventBatch>,
) -> Result<Json<Taken>, Refusal> {
    let row = hub.known(&peer).await?;
    let (name, fp) = (row.name, peer.fingerprint.clone());
    let (cursor, taken) = hub
        .inner
        .store
        .write_synced(move |tx| capstan_store::fleet::take_events(tx, (&name, &fp), &batch.events))
        .await
        .map_err(|e| internal(&e))?;
    debug!(host = %peer.fingerprint, cursor, taken = taken.len(), "events taken");
    Ok(Json(Taken { cursor }))
}

/// A batch of the host's metric sweeps: kept with `host`, and the cursor moved, in one
/// transaction of the metrics history; only then is the cursor answered.
async fn metrics(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(batch): Json<SweepBatch>,
) -> Result<Json<Taken>, Refusal> {
    let row = hub.known(&peer).await?;
    let Some(inbox) = &hub.inner.inboxes.metrics else {
        return Err(refuse(
            StatusCode::CONFLICT,
            "no_metrics",
            "the hub keeps no metrics history ([metrics] collect = false there)",
        ));
    };
    let cursor = inbox
        .take(&peer.fingerprint, &row.name, batch.sweeps)
        .await
        .map_err(|e| {
            warn!(host = %row.name, error = %e, "cannot keep a host's metrics");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the hub cannot keep metrics now; try again",
            )
        })?;
    Ok(Json(Taken { cursor }))
}

/// The host's next command (`null` when none came within the poll's wait).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NextCommand {
    pub command: Option<crate::commands::Command>,
}

/// An empty request or answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Nothing {}

/// A long poll for the host's next command.
async fn next_command(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(_): Json<Nothing>,
) -> Result<Json<NextCommand>, Refusal> {
    hub.known(&peer).await?;
    let command = hub
        .inner
        .queue
        .next(&peer.fingerprint, peer.conn, crate::host::POLL_WAIT)
        .await;
    Ok(Json(NextCommand { command }))
}

/// A step of a command under way, for whoever waits.
async fn command_step(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(step): Json<crate::commands::Step>,
) -> Result<Json<Nothing>, Refusal> {
    hub.known(&peer).await?;
    hub.inner.queue.step(step).await;
    Ok(Json(Nothing {}))
}

/// A command's end: recorded (the release's outcome, when it ran one) and the command
/// forgotten, in one transaction, then told to its caller if one still waits (the hub may have
/// restarted meanwhile). Sent again, it records the same.
async fn command_done(
    State(hub): State<Hub>,
    Extension(peer): Extension<Peer>,
    Json(done): Json<crate::commands::Done>,
) -> Result<Json<Nothing>, Refusal> {
    let row = hub.known(&peer).await?;
    if done.release > 0 {
        info!(host = %row.name, app = %done.report.app, release = done.release, outcome = ?done.report.outcome, "a host's release ended");
    } else {
        debug!(host = %row.name, app = %done.report.app, outcome = ?done.report.outcome, "a host's command ended");
    }
    // (a down's end records nothing: its ledger entry was written before it was asked)
    let end = (done.release > 0).then(|| capstan_store::fleet::CommandEnd {
        app: done.report.app.clone(),
        release: done.release,
        result: done.report.outcome.result().as_str().to_owned(),
        images: serde_json::to_string(&done.images).unwrap_or_default(),
        report: serde_json::to_string(&done.report).unwrap_or_default(),
    });
    let id = done.id.clone();
    hub.inner
        .store
        .write(move |tx| capstan_store::fleet::end_command(tx, &id, end.as_ref()))
        .await
        .map_err(|e| internal(&e))?;
    hub.inner.queue.done(done);
    Ok(Json(Nothing {}))
}
