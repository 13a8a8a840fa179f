//! `capstan serve`: the daemon.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_api::AppState;
use capstan_engine::Engine;
use capstan_images::Journal;
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config};

/// Options of `capstan serve`; flags win over the config file.
#[derive(Debug)]
pub struct ServeOptions {
    pub file: Config,
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub docker_host: Option<String>,
}

/// Live events buffered for slow stream clients before they fall back to the store.
const LIVE_BUFFER: usize = 4096;

/// How long shutdown waits for the journal to finish its current write.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Updates handed from the watcher to the auto-updater and not yet applied; a full queue
/// leaves the rest for the next cycle.
const AUTO_UPDATES_QUEUE: usize = 64;

pub async fn run(opts: ServeOptions) -> Result<()> {
    let file = opts.file;
    // a bad certificate or key stops capstan before it starts anything
    let tls = file
        .tls
        .as_ref()
        .map(|t| capstan_api::tls::server_config(&t.cert, &t.key))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let data = opts
        .data
        .or(file.data)
        .unwrap_or_else(config::default_data_dir);
    let listen = match opts.listen.or(file.listen) {
        Some(a) => a,
        None => config::DEFAULT_LISTEN.parse()?,
    };
    let host = opts.docker_host.or(file.docker.host);

    prepare_data_dir(&data)?;
    let _lock = lock_data_dir(&data)?;
    let token_path = data.join("admin.token");
    let token = ensure_secret(&token_path, "admin token")?;
    let store = Store::open(&data.join("state.db"))?;
    let engine = Engine::new(host.as_deref())?;

    let shutdown = CancellationToken::new();
    let (live, _) = broadcast::channel(LIVE_BUFFER);
    let journal = Journal::new(engine.clone(), store.clone(), live.clone());
    let status = journal.status();
    let journal_task = tokio::spawn(journal.run(shutdown.clone()));

    // logs: every container's lines into the embedded store
    let log_store = Arc::new(
        capstan_logs::Store::open(&data.join("logs")).context("cannot open the log store")?,
    );
    let (committed, committed_rx) = tokio::sync::watch::channel(log_store.checkpoint().seq);
    let log_options = file.logs.options();
    log_store.set_writer_memory(log_options.writer_memory());
    let (losses, lost_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(journal_losses(store.clone(), live.clone(), lost_rx));
    let collector = capstan_logs::Collector::new(
        engine.clone(),
        Arc::clone(&log_store),
        committed,
        log_options,
    )
    .with_losses(losses);
    let log_stats = collector.stats();
    if file.logs.collect.unwrap_or(true) {
        tokio::spawn(collector.run(shutdown.clone()));
    } else {
        info!("log collection is off ([logs] collect = false)");
    }
    let mut sinks = Vec::new();
    for sink in file.logs.sinks.clone() {
        let counters = Arc::new(capstan_logs::sinks::SinkStats::default());
        sinks.push((sink.name.clone(), Arc::clone(&counters)));
        tokio::spawn(capstan_logs::sinks::run(
            sink,
            Arc::clone(&log_store),
            data.join("logs").join("sinks"),
            committed_rx.clone(),
            counters,
            shutdown.clone(),
        ));
    }
    tokio::spawn(retain_logs(
        Arc::clone(&log_store),
        file.logs.clone(),
        shutdown.clone(),
    ));

    let deploying = capstan_model::RolloutLocks::default();
    let (auto_tx, auto_rx) = tokio::sync::mpsc::channel(AUTO_UPDATES_QUEUE);

    // registries: every running image checked for updates
    let (updates, hook_secret) = if file.images.watch.unwrap_or(true) {
        let client = capstan_registry::Client::new(file.images.registry_options()?)
            .context("cannot set up the registry client")?;
        let watcher = capstan_images::Watcher::new(
            engine.clone(),
            store.clone(),
            live.clone(),
            client,
            file.images.watch_config(&data)?,
        )
        .with_auto_updates(auto_tx);
        let state = watcher.state();
        tokio::spawn(watcher.run(shutdown.clone()));
        let secret = ensure_secret(&data.join("registry-hook.secret"), "registry hook secret")?;
        (Some(state), Some(Arc::from(secret.as_str())))
    } else {
        info!("registry watching is off ([images] watch = false)");
        (None, None)
    };

    let router = capstan_deploy::Router::spawn(
        engine.clone(),
        capstan_proxy::ProxyClient::new(&data, Some(proxy_launch(&data)?)),
        &live,
        shutdown.clone(),
    );
    // what the API, self-healing and automatic updates deploy with: the local engine
    let target = capstan_deploy::DockerTarget {
        engine: engine.clone(),
        apps_dir: data.join("apps"),
        router: Some(router.clone()),
        events: Some(live.clone()),
    };
    let deployer =
        capstan_deploy::Deployer::new(Arc::new(target), data.join("apps"), Some(live.clone()));
    let healer = capstan_deploy::Healer::new(
        deployer.clone(),
        store.clone(),
        deploying.clone(),
        live.clone(),
    );
    tokio::spawn(healer.run(shutdown.clone()));
    let auto_updater = capstan_deploy::AutoUpdater::new(
        deployer.clone(),
        store.clone(),
        deploying.clone(),
        live.clone(),
    );
    tokio::spawn(auto_updater.run(auto_rx, shutdown.clone()));

    // vulnerability scans: the advisory database and the per-layer cache, in one file
    let scanner = capstan_scan::Scanner::new(
        engine.clone(),
        capstan_scan::VulnDb::open(&data.join("vulndb.db")).map_err(|e| anyhow::anyhow!("{e}"))?,
        data.join("scan"),
    );
    if file.images.scan_on_pull.unwrap_or(false) {
        tokio::spawn(capstan_scan::scan_pulls(
            scanner.clone(),
            store.clone(),
            live.clone(),
            shutdown.clone(),
        ));
    }

    // container metrics from cgroups, and their history
    let mut history = None;
    let metrics = if file.metrics.collect.unwrap_or(true) {
        let metrics = Arc::new(capstan_metrics::Metrics::default());
        let mut collector = file.metrics.collector()?;
        if file.metrics.history.unwrap_or(true) {
            let kept = capstan_metrics::History::open(&data.join("metrics.db"), collector.interval)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            history = Some(Arc::new(kept));
            collector.history.clone_from(&history);
        }
        tokio::spawn(Arc::clone(&metrics).run(
            engine.clone(),
            collector,
            live.subscribe(),
            shutdown.clone(),
        ));
        Some(metrics)
    } else {
        None
    };

    // alert rules over metrics, logs and events
    let alerts = Arc::new(
        capstan_alerts::Alerts::new(
            file.alerts.rules().map_err(|e| anyhow::anyhow!("{e}"))?,
            capstan_alerts::Sources {
                store: store.clone(),
                live: live.clone(),
                history: history.clone(),
                logs: file
                    .logs
                    .collect
                    .unwrap_or(true)
                    .then(|| Arc::clone(&log_store)),
                rollouts: deploying.clone(),
            },
            file.alerts
                .evaluate_every()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            data.join("alert-rules.json"),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    tokio::spawn(Arc::clone(&alerts).run(shutdown.clone()));

    // notifications: each channel sends what the journal gained, a message per check cycle
    let notifier = capstan_notify::Notifier::new(
        store.clone(),
        &file.notify,
        data.join("notify"),
        capstan_model::host_name(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let notify_status = notifier.status();
    // a batch ends with a check cycle or with an alert evaluation that moved alerts
    let (batch_tx, batches) = tokio::sync::watch::channel(0_u64);
    let batch_tx = Arc::new(batch_tx);
    let mut sources = vec![alerts.evaluations()];
    sources.extend(updates.as_ref().map(|u| u.cycles()));
    for mut source in sources {
        let batch_tx = Arc::clone(&batch_tx);
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                batch_tx.send_modify(|n| *n += 1);
            }
        });
    }
    tokio::spawn(notifier.run(batches, alerts.firing(), shutdown.clone()));

    let state = AppState {
        store,
        engine: engine.clone(),
        journal: status,
        live,
        admin_token: Arc::from(token.as_str()),
        secure_cookies: tls.is_some(),
        shutdown: shutdown.clone(),
        apps_dir: data.join("apps"),
        deploying,
        deployer,
        router: Some(router),
        logs: Some(capstan_api::LogsState {
            store: log_store,
            stats: log_stats,
            committed: committed_rx,
            sinks,
        }),
        updates,
        hook_secret,
        notify: notify_status,
        metrics,
        history,
        alerts: Some(alerts),
        scanner,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another capstan or program using it? pick one with --listen)"))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the API listens beyond loopback; every route but health needs the token");
    }
    info!(%addr, data = %data.display(), engine = engine.host(), "capstan serving");
    // one line on stdout for people and scripts
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "capstan serving on {scheme}://{addr} (engine {}; admin token in {})",
        engine.host(),
        token_path.display()
    );

    tokio::spawn(capstan_process::stop_on_signals(
        shutdown.clone(),
        "finishing writes and stopping",
    ));
    // the client's address goes into the audit log
    let app = capstan_api::router(state).into_make_service_with_connect_info::<capstan_api::Peer>();
    match tls {
        Some(config) => {
            let listener = capstan_api::tls::TlsListener::new(listener, config, shutdown.clone())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
        }
    }
    .context("the API server failed")?;
    shutdown.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, journal_task)
        .await
        .is_err()
    {
        warn!(
            "the journal did not finish within {DRAIN_TIMEOUT:?}; its last batch will be replayed on next start"
        );
    }
    info!("capstan stopped");
    Ok(())
}

/// Drops log partitions past the configured age and size, every five minutes.
async fn retain_logs(
    store: Arc<capstan_logs::Store>,
    config: config::Logs,
    shutdown: CancellationToken,
) {
    loop {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let older_than = config.retention_ns().map(|age| now - age);
        let max_bytes = config.max_bytes();
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || s.retain(older_than, max_bytes)).await {
            Ok(Ok(dropped)) if !dropped.is_empty() => {
                info!(?dropped, "log retention dropped partitions");
            }
            Ok(Err(e)) => warn!(error = %e, "log retention failed"),
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_mins(5)) => {}
        }
    }
}

/// How the daemon starts its proxy: this same executable, `proxy --data DIR`.
fn proxy_launch(data: &Path) -> Result<capstan_proxy::Launch> {
    let program = std::env::current_exe()
        .context("cannot find capstan's own executable to start the proxy")?;
    Ok(capstan_proxy::Launch {
        program,
        args: vec!["proxy".into(), "--data".into(), data.as_os_str().to_owned()],
    })
}

fn prepare_data_dir(data: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| {
            format!(
                "cannot create data dir {} (pick another with --data or CAPSTAN_DATA)",
                data.display()
            )
        })?;
    // the journal and the token are capstan's alone, also in a dir someone made beforehand
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "cannot make data dir {} private (mode 0700)",
            data.display()
        )
    })?;
    Ok(())
}

/// Holds an exclusive lock on `<data>/capstan.lock` for the daemon's life.
fn lock_data_dir(data: &Path) -> Result<File> {
    capstan_process::lock_pid_file(&data.join("capstan.lock")).map_err(|e| match e {
        capstan_process::LockError::Held { pid } => anyhow::anyhow!(
            "another capstan{} is already using data dir {}; stop it first, or give this one its own with --data",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            data.display()
        ),
        e @ capstan_process::LockError::Io { .. } => anyhow::Error::new(e),
    })
}

/// Reads a secret (the admin token, the registry hook's secret), writing a new random one
/// (mode 0600) on first start; `what` names it in messages.
fn ensure_secret(path: &Path, what: &str) -> Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            warn!(path = %path.display(), "the {what} was readable by others; set its mode to 0600");
        }
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0_u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("cannot read /dev/urandom to make the {what}"))?;
    let token = bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the {what} to {}", path.display()))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    info!(path = %path.display(), "wrote a new {what}");
    Ok(token)
}

/// Journals each loss of log lines to rotation as a `capstan` event (`logs_rotated_away`).
async fn journal_losses(
    store: Store,
    live: broadcast::Sender<capstan_model::Event>,
    mut lost: tokio::sync::mpsc::Receiver<capstan_logs::RotatedAway>,
) {
    while let Some(loss) = lost.recv().await {
        let attributes = std::collections::BTreeMap::from([
            ("container".to_owned(), loss.container.clone()),
            ("files".to_owned(), loss.files.to_string()),
            (
                "files_counted".to_owned(),
                if loss.files_exact {
                    "exactly"
                } else {
                    "estimated"
                }
                .to_owned(),
            ),
            (
                "lines_estimated".to_owned(),
                loss.lines_estimated.to_string(),
            ),
        ]);
        let event = capstan_store::NewEvent::capstan(
            capstan_model::CapstanAction::LogsRotatedAway,
            loss.container_id.clone(),
            attributes,
        );
        match store
            .write(move |tx| capstan_store::events::insert(tx, &event))
            .await
        {
            Ok(Some(e)) => {
                let _ = live.send(e);
            }
            Ok(None) => {}
            Err(err) => warn!(error = %err, "cannot journal a loss of log lines"),
        }
    }
}
