//! The fleet in the daemon: the hub's listener (`[fleet] listen`) taking hosts' journals and
//! log lines into this capstan's stores, and a host's link (`capstan agent`) shipping its own.

use std::sync::Arc;

use anyhow::{Context, Result};
use capstan_model::LogLine;
use tracing::{info, warn};

use super::Base;
use super::subsystems::Logs;

/// One host's batch on its way into the hub's log store, and where its cursor goes.
struct Arriving {
    key: String,
    last: u64,
    entries: Vec<capstan_logs::Entry>,
    reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// The most lines one commit takes from the batches waiting.
const GROUP_LINES: usize = 50_000;

/// The hub's log store, taking hosts' lines: every batch that arrives while a commit runs goes
/// into the next one (one commit for many hosts, each answered once it is durable).
struct HubLogs {
    store: Arc<capstan_logs::Store>,
    arriving: tokio::sync::mpsc::Sender<Arriving>,
}

impl HubLogs {
    fn start(store: Arc<capstan_logs::Store>, committed: tokio::sync::watch::Sender<u64>) -> Self {
        let (arriving, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(commit_groups(Arc::clone(&store), committed, rx));
        Self { store, arriving }
    }
}

/// Commits what arrives, in groups, until every sender is gone.
async fn commit_groups(
    store: Arc<capstan_logs::Store>,
    committed: tokio::sync::watch::Sender<u64>,
    mut rx: tokio::sync::mpsc::Receiver<Arriving>,
) {
    while let Some(first) = rx.recv().await {
        let mut lines = first.entries.len();
        let mut group = vec![first];
        while lines < GROUP_LINES {
            let Ok(more) = rx.try_recv() else { break };
            lines += more.entries.len();
            group.push(more);
        }
        let (batches, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|a| ((a.key, a.last, a.entries), a.reply))
            .unzip();
        let store = Arc::clone(&store);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let result = tokio::task::spawn_blocking(move || store.append_remote(batches, now)).await;
        match result {
            Ok(Ok((cursors, seq))) => {
                if let Some(seq) = seq {
                    committed.send_if_modified(|at| {
                        let newer = seq > *at;
                        if newer {
                            *at = seq;
                        }
                        newer
                    });
                }
                for (reply, cursor) in replies.into_iter().zip(cursors) {
                    let _ = reply.send(Ok(cursor));
                }
            }
            Ok(Err(e)) => {
                let e = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl capstan_fleet::LogInbox for HubLogs {
    fn cursor(&self, key: &str) -> u64 {
        self.store.remote_cursor(key)
    }

    async fn take(
        &self,
        key: &str,
        host: &str,
        last: u64,
        lines: Vec<LogLine>,
    ) -> Result<u64, String> {
        // the lines say the host they were written on, as its fleet knows it
        let mut origins: std::collections::HashMap<
            capstan_model::Origin,
            Arc<capstan_model::Origin>,
        > = std::collections::HashMap::new();
        let entries: Vec<capstan_logs::Entry> = lines
            .into_iter()
            .map(|mut l| {
                host.clone_into(&mut l.origin.host);
                let origin = Arc::clone(
                    origins
                        .entry(l.origin.clone())
                        .or_insert_with(|| Arc::new(l.origin.clone())),
                );
                let mut e = capstan_logs::Entry::from(l);
                e.origin = origin;
                e
            })
            .collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.arriving
            .send(Arriving {
                key: key.to_owned(),
                last,
                entries,
                reply,
            })
            .await
            .map_err(|_| "the hub's log store is stopping".to_owned())?;
        answer
            .await
            .map_err(|_| "the hub's log store is stopping".to_owned())?
    }
}

/// A host's log store, read for shipping.
struct HostLogs {
    store: Arc<capstan_logs::Store>,
    everything: capstan_logs::LogQuery,
}

#[async_trait::async_trait]
impl capstan_fleet::LogOutbox for HostLogs {
    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<LogLine>, String> {
        let store = Arc::clone(&self.store);
        let query = self.everything.clone();
        tokio::task::spawn_blocking(move || store.after(seq, &query, limit))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The hub's metrics history, taking hosts' sweeps.
struct HubMetrics(Arc<capstan_metrics::History>);

#[async_trait::async_trait]
impl capstan_fleet::MetricsInbox for HubMetrics {
    async fn cursor(&self, key: &str) -> Result<i64, String> {
        let (history, key) = (Arc::clone(&self.0), key.to_owned());
        tokio::task::spawn_blocking(move || history.remote_cursor(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn take(
        &self,
        key: &str,
        host: &str,
        sweeps: Vec<capstan_fleet::Sweep>,
    ) -> Result<i64, String> {
        let (history, key, host) = (Arc::clone(&self.0), key.to_owned(), host.to_owned());
        tokio::task::spawn_blocking(move || history.record_remote(&key, &host, &sweeps))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// A host's metrics history, read for shipping.
struct HostMetrics(Arc<capstan_metrics::History>);

#[async_trait::async_trait]
impl capstan_fleet::MetricsOutbox for HostMetrics {
    async fn after(&self, t: i64, limit: usize) -> Result<Vec<capstan_fleet::Sweep>, String> {
        let history = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || history.sweeps_after(t, limit))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// What a host runs for its hub: a release of an app through its own rollout engine, under
/// the app's rollout lock, recorded in its own ledger too.
struct HostOps {
    deployer: capstan_deploy::Deployer,
    store: capstan_store::Store,
    locks: capstan_model::RolloutLocks,
}

/// How long a release from the hub waits for the app's lock here.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_mins(10);

#[async_trait::async_trait]
impl capstan_fleet::HostOps for HostOps {
    async fn deploy(
        &self,
        mut request: capstan_deploy::DeployRequest,
        pull: bool,
        progress: tokio::sync::mpsc::Sender<capstan_model::Progress>,
    ) -> Result<
        (
            capstan_model::Report,
            std::collections::BTreeMap<String, String>,
        ),
        String,
    > {
        let app = request.app();
        let _lock = capstan_deploy::hold_when_free(&self.locks, &app, LOCK_WAIT)
            .await
            .ok_or_else(|| format!("{app} stayed busy on the host (a deploy or a healing pass)"))?;
        request.pull = pull;
        let report = self
            .deployer
            .release(&self.store, "hub", &request, Some(progress))
            .await
            .map_err(|e| e.to_string())?;
        let images = self
            .store
            .current_release(app)
            .await
            .ok()
            .flatten()
            .and_then(|row| serde_json::from_str(&row.images).ok())
            .unwrap_or_default();
        Ok((report, images))
    }

    async fn down(&self, app: String, volumes: bool) -> Result<Vec<String>, String> {
        let _lock = capstan_deploy::hold_when_free(&self.locks, &app, LOCK_WAIT)
            .await
            .ok_or_else(|| format!("{app} stayed busy on the host (a deploy or a healing pass)"))?;
        self.deployer
            .take_down(&self.store, "hub", &app, volumes)
            .await
            .map_err(|e| e.to_string())
    }

    async fn observe(&self, app: String) -> Result<Vec<capstan_deploy::Replica>, String> {
        self.deployer
            .target
            .observe(&app)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The fleet's hub, when `[fleet] listen` says where agents connect: its identity (made at
/// first start under `<data>/fleet/hub`) and its listener. Hosts' lines go into this capstan's
/// log store when it keeps logs.
pub(super) async fn start_hub(
    base: &Base,
    fleet: &crate::config::FleetConfig,
    logs: &Logs,
    history: Option<&Arc<capstan_metrics::History>>,
) -> Result<Option<capstan_fleet::Hub>> {
    let Some(listen) = fleet.listen else {
        return Ok(None);
    };
    let identity =
        capstan_fleet::Identity::load_or_create(&base.data.join("fleet/hub"), "capstan-hub")
            .map_err(|e| anyhow::anyhow!("the fleet hub's key: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("fleet.listen: cannot listen on {listen} (is another program using it?)")
        })?;
    let inboxes = capstan_fleet::Inboxes {
        logs: Some(Arc::new(HubLogs::start(
            Arc::clone(&logs.api.store),
            logs.committed.clone(),
        ))),
        metrics: history
            .map(|h| Arc::new(HubMetrics(Arc::clone(h))) as Arc<dyn capstan_fleet::MetricsInbox>),
    };
    let hub = capstan_fleet::Hub::new(base.store.clone(), identity, inboxes);
    info!(addr = %listener.local_addr()?, fingerprint = %hub.fingerprint(), "the fleet hub listens for agents");
    tokio::spawn(hub.clone().serve(listener, base.shutdown.clone()));
    Ok(Some(hub))
}

/// A fleet host's link to its hub (`capstan agent`): its journal and (when it collects them)
/// its log lines shipped from the hub's cursors, hello with the engine's version every few
/// seconds, reconnecting as needed. A host the hub removed stops dialing and goes on by itself.
pub(super) fn start_link(
    base: &Base,
    (logs, history): (&Logs, Option<&Arc<capstan_metrics::History>>),
    (deployer, locks): (&capstan_deploy::Deployer, &capstan_model::RolloutLocks),
    joined: capstan_fleet::Joined,
    identity: capstan_fleet::Identity,
) -> Result<()> {
    let engine = base.engine.clone();
    let engine_on = base.engine_on;
    let shutdown = base.shutdown.clone();
    let store = base.store.clone();
    let mut outboxes = capstan_fleet::Outboxes::default();
    if logs.collecting {
        let everything = logs
            .api
            .store
            .compile("")
            .map_err(|e| anyhow::anyhow!("the log query of everything: {e}"))?;
        outboxes.logs = Some(Arc::new(HostLogs {
            store: Arc::clone(&logs.api.store),
            everything,
        }));
    }
    if let Some(h) = history {
        outboxes.metrics = Some(Arc::new(HostMetrics(Arc::clone(h))));
    }
    if base.engine_on {
        outboxes.ops = Some(Arc::new(HostOps {
            deployer: deployer.clone(),
            store: base.store.clone(),
            locks: locks.clone(),
        }));
        outboxes.commands_dir = Some(base.data.join("fleet/commands"));
    }
    tokio::spawn(async move {
        let hub = joined.url.clone();
        let described = move || {
            let engine = engine.clone();
            async move {
                if !engine_on {
                    return "none".to_owned();
                }
                match engine.version().await {
                    Ok(v) => format!("docker {}, api {}", v.version, v.api_version),
                    Err(e) => format!("unreachable: {e}"),
                }
            }
        };
        if let Err(e) =
            capstan_fleet::run_link(joined, identity, (store, outboxes), described, shutdown).await
        {
            warn!(hub = %hub, error = %e, "this host stopped dialing the hub; it goes on by itself (join it again with a new token)");
        }
    });
    Ok(())
}
