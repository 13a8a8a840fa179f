//! `capstan serve`: the daemon's composition root. It opens what every subsystem shares (the
//! data dir, the state store, the engine, the journal's live events, the shutdown signal),
//! starts each subsystem with its own config section (`subsystems.rs`: one start function each,
//! returning its handles), and serves the API over them. It decides nothing itself.

mod data_dir;
mod fleet;
mod remote_hosts;
mod subsystems;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_api::AppState;
use capstan_engine::Engine;
use capstan_model::Event;
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config};

pub use data_dir::{Opened, open};

/// Options of `capstan serve`; flags win over the config file.
pub struct ServeOptions {
    /// The config, checked.
    pub file: Config,
    /// The data dir, opened ([`open`]).
    pub data: Opened,
    pub listen: Option<SocketAddr>,
    pub docker_host: Option<String>,
    /// Run as a fleet host (`capstan agent`): keep the link to the hub it joined.
    pub agent: Option<(capstan_fleet::Joined, capstan_fleet::Identity)>,
    /// Stop when the process that started this one is gone (an agent a hub runs for a host
    /// without one: a hub killed -9 leaves none behind).
    pub exit_with_parent: bool,
}

/// Live events buffered for slow stream clients before they fall back to the store.
const LIVE_BUFFER: usize = 4096;

/// What every subsystem is started with.
struct Base {
    /// The data directory.
    data: PathBuf,
    /// The state store.
    store: Store,
    /// The engine.
    engine: Engine,
    /// Whether there is one (`[docker] enabled`): without one, nothing that asks it runs.
    engine_on: bool,
    /// The journal's live events (everything stored, as it is stored).
    live: broadcast::Sender<Event>,
    /// Cancelled when the daemon stops.
    shutdown: CancellationToken,
    /// The data dir's vault (secrets) and keyring (credentials).
    vault: Arc<capstan_vault::Vault>,
    keyring: capstan_vault::keyring::Keyring,
    /// Where registry credentials come from: every pull, build, scan and update check.
    registries: Arc<capstan_registry::CredentialSource>,
    /// The registry client (update checks, login checks).
    registry: Arc<capstan_registry::Client>,
}

pub async fn run(opts: ServeOptions) -> Result<()> {
    let file = opts.file;
    // a bad certificate or key stopped capstan before it started anything (`Config::check`)
    let tls = file
        .tls
        .as_ref()
        .map(|t| capstan_api::tls::server_config(&t.cert, &t.key))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // each API connection, log file and index segment is a descriptor: as many as allowed
    let open_files = capstan_process::limits::raise_fd_limit();
    info!(open_files, "open-file limit");
    let opened = opts.data;
    let data = opened.data.clone();
    let listen = match opts.listen.or(file.listen) {
        Some(a) => a,
        None => config::DEFAULT_LISTEN.parse()?,
    };
    let host = opts.docker_host.or(file.docker.host.clone());

    let token_path = data.join("admin.token");
    let token = data_dir::ensure_secret(&token_path, "admin token")?;
    let logins = capstan_registry::Logins::new(opened.keyring.clone());
    let registries = Arc::new(file.images.credential_source(Some(Arc::new(logins)))?);
    let registry = Arc::new(
        capstan_registry::Client::new(file.images.registry_options(Arc::clone(&registries)))
            .context("cannot set up the registry client")?,
    );
    let base = Base {
        registries,
        registry,
        store: Store::open(&data.join("state.db"))?,
        engine: Engine::with_remote(host.as_deref(), file.docker.remote())?,
        engine_on: file.docker.enabled.unwrap_or(true),
        live: broadcast::channel(LIVE_BUFFER).0,
        shutdown: CancellationToken::new(),
        data,
        vault: opened.vault.clone(),
        keyring: opened.keyring.clone(),
    };

    if opts.exit_with_parent {
        tokio::spawn(exit_with_parent(base.shutdown.clone()));
    }
    let journal = subsystems::start_journal(&base);
    subsystems::start_retention(&base, &file.retention);
    let clusters = subsystems::cluster_engines(&file.targets)?;
    subsystems::start_pod_journals(&base, &file.targets);
    let logs = subsystems::start_logs(&base, &file.logs, &clusters, &file.targets)?;
    let rollouts = capstan_model::RolloutLocks::default();
    let (auto_tx, auto_rx) = tokio::sync::mpsc::channel(subsystems::AUTO_UPDATES_QUEUE);
    let images = subsystems::start_images(&base, &file.images, auto_tx, &file.targets)?;
    let deploy = subsystems::start_deploy(
        &base,
        &rollouts,
        auto_rx,
        &clusters,
        (&file.targets, &file.proxy, &file.acme),
    )?;
    let scanner = subsystems::start_scan(&base, &file.images)?;
    let metrics = subsystems::start_metrics(&base, &file.metrics, file.fleet.listen.is_some())?;
    let security = subsystems::start_security(&base, &file.security).await;
    let prune = file.images.prune_schedule()?;
    // backups of apps' volumes ([backups]), on their schedules too
    let backups = file
        .backups
        .restic(&base.data)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(|restic| capstan_backup::Backups {
            restic: Some(restic),
            engine: base.engine.clone(),
            store: base.store.clone(),
            live: base.live.clone(),
        });
    if let Some(b) = &backups {
        capstan_backup::start_schedule(b.clone(), base.shutdown.clone());
    }
    subsystems::start_prunes(&base, prune);
    let alerts = subsystems::start_alerts(
        &base,
        &file.alerts,
        metrics.history.clone(),
        logs.collecting.then(|| Arc::clone(&logs.api.store)),
        &rollouts,
        security.as_ref(),
    )?;
    let pipeline = subsystems::start_pipeline(&base, &file.pipeline, &deploy, &rollouts, &scanner);
    let notify = subsystems::start_notify(&base, &file.notify, &alerts, images.updates.as_ref())?;
    let hub = fleet::start_hub(&base, &file.fleet, &logs, metrics.history.as_ref()).await?;
    if let (Some(hub), Some(listen)) = (&hub, file.fleet.listen) {
        remote_hosts::start(&base, hub, listen, &file.targets).await?;
    }
    if let Some((joined, identity)) = opts.agent {
        fleet::start_link(
            &base,
            (&logs, metrics.history.as_ref()),
            (&deploy.deployer, &rollouts),
            joined,
            identity,
        )?;
    }

    let state = AppState {
        store: base.store.clone(),
        engine: base.engine.clone(),
        journal: Arc::clone(&journal.status),
        live: base.live.clone(),
        admin_token: Arc::from(token.as_str()),
        secure_cookies: tls.is_some(),
        allowed_hosts: file.allowed_hosts.clone().into(),
        shutdown: base.shutdown.clone(),
        apps_dir: base.data.join("apps"),
        deploying: rollouts,
        deployer: deploy.deployer,
        router: deploy.router,
        logs: Some(logs.api),
        updates: images.updates,
        hook_secret: images.hook_secret,
        hooks: Some(pipeline.hooks),
        builder: Some(pipeline.builder),
        notify,
        metrics: metrics.metrics,
        history: metrics.history,
        alerts: Some(alerts),
        scanner,
        sign_ins: Arc::default(),
        security,
        registries: Arc::clone(&base.registries),
        registry: Arc::clone(&base.registry),
        targets: file.targets.clone().into(),
        places: Arc::new(deploy.places),
        engine_on: base.engine_on,
        version: crate::VERSION,
        hub,
        prune,
        backups,
    };
    serve_api(&base, state, listen, tls, &token_path).await?;
    base.shutdown.cancel();
    journal.stopped().await;
    info!("capstan stopped");
    Ok(())
}

/// Stops capstan (`shutdown`) once the process that started it is gone: it is then the child
/// of another (init, a subreaper), which is checked every second.
async fn exit_with_parent(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        if std::os::unix::process::parent_id() != parent {
            warn!(
                parent,
                "the process that started this capstan is gone: stopping"
            );
            shutdown.cancel();
            return;
        }
    }
}

/// Serves the API until SIGTERM or SIGINT.
async fn serve_api(
    base: &Base,
    state: AppState,
    listen: SocketAddr,
    tls: Option<capstan_api::tls::ServerConfig>,
    token_path: &std::path::Path,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another capstan or program using it? pick one with --listen)"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the API listens beyond loopback; every route but health needs the token");
    }
    let engine = if base.engine_on {
        base.engine.host()
    } else {
        "none: [docker] enabled = false"
    };
    info!(%addr, data = %base.data.display(), engine, "capstan serving");
    // one line on stdout for people and scripts
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "capstan serving on {scheme}://{addr} (engine {engine}; admin token in {})",
        token_path.display()
    );

    let shutdown = base.shutdown.clone();
    tokio::spawn(capstan_process::stop_on_signals(
        shutdown.clone(),
        "finishing writes and stopping",
    ));
    // the client's address goes into the audit log; caps and timeouts: capstan_api::server
    let app = capstan_api::router(state);
    match tls {
        Some(config) => {
            let listener = capstan_api::tls::TlsListener::new(listener, config, shutdown.clone())?;
            capstan_api::server::serve(listener, app, shutdown).await;
        }
        None => capstan_api::server::serve(listener, app, shutdown).await,
    }
    Ok(())
}

/// How long shutdown waits for the journal to finish its current write.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The journal's task: the one subsystem shutdown waits for (its last batch is written).
struct JournalHandle {
    status: Arc<capstan_images::JournalStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl JournalHandle {
    /// Waits for the journal to finish its batch after shutdown, for a while.
    async fn stopped(self) {
        if tokio::time::timeout(DRAIN_TIMEOUT, self.task)
            .await
            .is_err()
        {
            warn!(
                "the journal did not finish within {DRAIN_TIMEOUT:?}; its last batch will be replayed on next start"
            );
        }
    }
}
