//! One start function per subsystem: each takes what every subsystem shares ([`Base`]) and its
//! own config section, spawns its tasks (they stop with `Base::shutdown`), and returns the
//! handles the API and the other subsystems use.

use std::sync::Arc;

use anyhow::{Context, Result};
use capstan_model::{AutoUpdate, RolloutLocks};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Base, JournalHandle, data_dir};

/// Updates handed from the watcher to the auto-updater and not yet applied; a full queue
/// leaves the rest for the next cycle.
pub(super) const AUTO_UPDATES_QUEUE: usize = 64;
/// Losses of log lines waiting to be journaled.
const LOSSES_QUEUE: usize = 64;

/// The journal of the engine's events (and everything derived from them).
pub(super) fn start_journal(base: &Base) -> JournalHandle {
    let journal =
        capstan_images::Journal::new(base.engine.clone(), base.store.clone(), base.live.clone());
    let status = journal.status();
    if !base.engine_on {
        info!("no engine events to journal ([docker] enabled = false)");
        return JournalHandle {
            status,
            task: tokio::spawn(async {}),
        };
    }
    let task = tokio::spawn(journal.run(base.shutdown.clone()));
    JournalHandle { status, task }
}

/// The log job, as the API and the alert rules see it.
pub(super) struct Logs {
    /// The store, statistics and sinks the API serves.
    pub api: capstan_api::LogsState,
    /// Told the last sequence number of every commit (the collector's, a fleet host's).
    pub committed: tokio::sync::watch::Sender<u64>,
    /// Whether lines are collected at all (`[logs] collect`).
    pub collecting: bool,
}

/// The engine of each Swarm of `[[targets]]` (one of the cluster's managers), by target name.
pub(super) fn cluster_engines(
    targets: &[capstan_deploy::targets::TargetConfig],
) -> Result<Vec<(String, capstan_engine::Engine)>> {
    targets
        .iter()
        .filter(|t| t.kind == capstan_model::TargetKind::Swarm)
        .map(|t| {
            capstan_engine::Engine::new(Some(&t.docker_host))
                .map(|e| (t.name.clone(), e))
                .map_err(|e| anyhow::anyhow!("targets.{}.docker_host: {e}", t.name))
        })
        .collect()
}

/// The image journal of each Kubernetes target's pods (what each container runs, by digest;
/// the pulls that fail).
pub(super) fn start_pod_journals(base: &Base, targets: &[capstan_deploy::targets::TargetConfig]) {
    for t in targets
        .iter()
        .filter(|t| t.kind == capstan_model::TargetKind::Kubernetes)
    {
        let journal =
            capstan_kube::PodJournal::new(t.clone(), base.store.clone(), base.live.clone());
        tokio::spawn(journal.run(base.shutdown.clone()));
    }
}

/// Logs: every container's lines, and every task's of the `clusters`, into the embedded
/// store, its sinks, its retention, and the journaling of what the engine rotated away
/// before it was read.
pub(super) fn start_logs(
    base: &Base,
    config: &capstan_logs::LogsConfig,
    clusters: &[(String, capstan_engine::Engine)],
    targets: &[capstan_deploy::targets::TargetConfig],
) -> Result<Logs> {
    let store = Arc::new(
        capstan_logs::Store::open(&base.data.join("logs")).context("cannot open the log store")?,
    );
    let (committed, committed_rx) = tokio::sync::watch::channel(store.checkpoint().seq);
    let options = config.options();
    store.set_writer_memory(options.writer_memory());
    let (losses, lost_rx) = mpsc::channel(LOSSES_QUEUE);
    tokio::spawn(capstan_logs::upkeep::journal_losses(
        base.store.clone(),
        base.live.clone(),
        lost_rx,
    ));
    let collector = capstan_logs::Collector::new(
        base.engine.clone(),
        Arc::clone(&store),
        committed.clone(),
        options,
    )
    .with_losses(losses)
    .with_clusters(
        clusters
            .iter()
            .map(|(target, engine)| capstan_logs::Cluster {
                target: target.clone(),
                engine: engine.clone(),
            })
            .collect(),
    )
    .with_build_logs(capstan_pipeline::buildlog::logs_dir(&base.data));
    let collector = match &config.pods {
        Some(dir) => collector.with_pod_logs(dir.clone()),
        None => collector,
    };
    let collector = if base.engine_on {
        collector
    } else {
        collector.without_engine()
    };
    let collector = match &config.pod_labels_from {
        None => collector,
        Some(name) => {
            // a [[targets]] entry, else (the config's check allows no other name) the cluster
            // capstan runs in, through its pod's ServiceAccount
            let target = targets
                .iter()
                .find(|t| &t.name == name && t.kind == capstan_model::TargetKind::Kubernetes)
                .cloned()
                .unwrap_or_else(|| capstan_deploy::targets::TargetConfig {
                    name: name.clone(),
                    kind: capstan_model::TargetKind::Kubernetes,
                    ..capstan_deploy::targets::TargetConfig::default()
                });
            collector.with_pod_labels(Arc::new(capstan_kube::ApiPodLabels::new(target)))
        }
    };
    let stats = collector.stats();
    let collecting = config.collect.unwrap_or(true);
    if collecting {
        tokio::spawn(collector.run(base.shutdown.clone()));
    } else {
        info!("log collection is off ([logs] collect = false)");
    }
    let mut sinks = Vec::new();
    for sink in config.sinks.clone() {
        let counters = Arc::new(capstan_logs::sinks::SinkStats::default());
        sinks.push((sink.name.clone(), Arc::clone(&counters)));
        tokio::spawn(capstan_logs::sinks::run(
            sink,
            Arc::clone(&store),
            base.data.join("logs").join("sinks"),
            committed_rx.clone(),
            counters,
            base.shutdown.clone(),
        ));
    }
    tokio::spawn(capstan_logs::upkeep::retain(
        Arc::clone(&store),
        config.retention(),
        config.max_bytes(),
        base.shutdown.clone(),
    ));
    Ok(Logs {
        api: capstan_api::LogsState {
            store,
            stats,
            committed: committed_rx,
            sinks,
            tails: Arc::new(tokio::sync::Semaphore::new(capstan_api::MAX_TAILS)),
        },
        committed,
        collecting,
    })
}

/// Registry watching, as the API sees it.
pub(super) struct Images {
    /// The watcher's checks, when it runs.
    pub updates: Option<Arc<capstan_images::WatchState>>,
    /// The secret registry webhooks prove they know.
    pub hook_secret: Option<Arc<str>>,
}

/// Registries: every running image checked for updates; the allowed ones handed to `auto`.
pub(super) fn start_images(
    base: &Base,
    config: &capstan_images::ImagesConfig,
    auto: mpsc::Sender<AutoUpdate>,
    targets: &[capstan_deploy::targets::TargetConfig],
) -> Result<Images> {
    if !base.engine_on {
        info!("registry watching is off: no engine ([docker] enabled = false)");
        return Ok(Images {
            updates: None,
            hook_secret: None,
        });
    }
    if !config.watch.unwrap_or(true) {
        info!("registry watching is off ([images] watch = false)");
        return Ok(Images {
            updates: None,
            hook_secret: None,
        });
    }
    let watcher = capstan_images::Watcher::new(
        base.engine.clone(),
        base.store.clone(),
        base.live.clone(),
        Arc::clone(&base.registry),
        config.watch_config(&base.data)?,
    )
    .with_auto_updates(auto);
    // the images Kubernetes targets' pods run, offered as this engine's are
    let watcher = targets
        .iter()
        .filter(|t| t.kind == capstan_model::TargetKind::Kubernetes)
        .fold(watcher, |w, t| {
            w.watching(Arc::new(capstan_kube::TargetPods::new(t.clone())))
        });
    let updates = watcher.state();
    tokio::spawn(watcher.run(base.shutdown.clone()));
    let secret = data_dir::ensure_credential(
        &base.keyring,
        "registry-hook",
        &base.data.join("registry-hook.secret"),
        "registry hook secret",
    )?;
    Ok(Images {
        updates: Some(updates),
        hook_secret: Some(Arc::from(secret.as_str())),
    })
}

/// The deploy job, as the API sees it.
pub(super) struct Deploy {
    /// Runs releases, rollbacks and downs.
    pub deployer: capstan_deploy::Deployer,
    /// Keeps capstan's proxy in step with the replicas in rotation (none without an engine).
    pub router: Option<capstan_deploy::Router>,
    /// A deployer for each `[[targets]]` entry, by name.
    pub places: std::collections::BTreeMap<String, capstan_deploy::Deployer>,
}

/// Deploys on the local engine through capstan's proxy; self-healing and automatic updates
/// (from `auto`) go through the same deployer and the same rollout locks as the API.
pub(super) fn start_deploy(
    base: &Base,
    rollouts: &RolloutLocks,
    auto: mpsc::Receiver<AutoUpdate>,
    targets: &[(String, capstan_engine::Engine)],
    (kubernetes, proxy, acme): (
        &[capstan_deploy::targets::TargetConfig],
        &crate::config::ProxyConfig,
        &capstan_acme::AcmeConfig,
    ),
) -> Result<Deploy> {
    // the clusters of `[[targets]]`: the proxy routes their apps' ports to their tasks
    let mut clusters: Vec<(String, Arc<dyn capstan_deploy::Target>)> = Vec::new();
    for (name, engine) in targets {
        // the cluster's own events, and its tasks' failures, into the journal
        let journal = capstan_images::ClusterJournal::new(
            name,
            engine.clone(),
            base.store.clone(),
            base.live.clone(),
        );
        tokio::spawn(journal.run(base.shutdown.clone()));
        clusters.push((
            name.clone(),
            Arc::new(capstan_deploy::SwarmTarget::new(name, engine.clone())),
        ));
    }
    // capstan's proxy serves published ports on the engine's machine: this one's
    let router = if base.engine_on && base.engine.is_local() {
        let client =
            capstan_proxy::ProxyClient::new(&base.data, Some(data_dir::proxy_launch(&base.data)?));
        // host names: the shared ports, and their certificates from files and ACME
        let (http, https) = proxy.ports()?;
        let edge = capstan_acme::start(
            capstan_acme::Setup {
                data: base.data.clone(),
                acme: acme.check().map_err(|e| anyhow::anyhow!("{e}"))?,
                files: proxy.certificates()?,
                http,
                https,
                proxy: client.clone(),
                store: base.store.clone(),
                live: base.live.clone(),
            },
            base.shutdown.clone(),
        )
        .context("cannot make the certificates' directory")?;
        Some(capstan_deploy::Router::spawn(
            base.engine.clone(),
            base.store.clone(),
            client,
            &base.live,
            base.shutdown.clone(),
            clusters.iter().map(|(_, t)| Arc::clone(t)).collect(),
            edge,
        ))
    } else {
        None
    };
    let apps = base.data.join("apps");
    let secrets = capstan_deploy::SecretStore {
        vault: base.vault.clone(),
        run_dir: data_dir::secrets_run_dir(&base.data)?,
    };
    let target = capstan_deploy::DockerTarget {
        engine: base.engine.clone(),
        apps_dir: apps.clone(),
        router: router.clone(),
        events: Some(base.live.clone()),
        secrets: Some(secrets.clone()),
        credentials: Some(Arc::clone(&base.registries)),
        retiring: Arc::default(),
    };
    let mut deployer =
        capstan_deploy::Deployer::new(Arc::new(target), apps, Some(base.live.clone()));
    deployer.secrets = Some(secrets);
    deployer.ledger = Some(base.store.clone());
    // what an older capstan kept of inline secrets in the ledger, sealed (until then, a release
    // that still holds one is read as it is)
    let sealing = deployer.clone();
    let store = base.store.clone();
    tokio::spawn(async move {
        match sealing.seal_ledger_secrets(&store).await {
            Ok(0) => {}
            Ok(n) => info!(
                releases = n,
                "sealed the inline secrets the ledger kept in plain text"
            ),
            Err(e) => {
                warn!(error = %e, "cannot seal the inline secrets the ledger keeps; tried again at the next start");
            }
        }
    });
    let healer = capstan_deploy::Healer::new(
        deployer.clone(),
        base.store.clone(),
        rollouts.clone(),
        base.live.clone(),
    );
    // without an engine, there is nothing here to heal or update
    if base.engine_on {
        tokio::spawn(healer.run(base.shutdown.clone()));
    }
    // a Kubernetes cluster serves its published ports itself (its Services)
    for t in kubernetes
        .iter()
        .filter(|t| t.kind == capstan_model::TargetKind::Kubernetes)
    {
        clusters.push((
            t.name.clone(),
            Arc::new(capstan_kube::KubernetesTarget::new(
                t.clone(),
                Arc::clone(&base.registry),
            )),
        ));
    }
    // one rollout engine over every target: each keeps the same ledger, files and vault
    let places = clusters
        .into_iter()
        .map(|(name, target)| {
            let mut d = deployer.clone();
            d.target = target;
            d.place = Some(name.clone());
            (name, d)
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let auto_updater = capstan_deploy::AutoUpdater::new(
        deployer.clone(),
        base.store.clone(),
        rollouts.clone(),
        base.live.clone(),
    )
    .with_places(places.clone());
    if base.engine_on {
        tokio::spawn(auto_updater.run(auto, base.shutdown.clone()));
    }
    Ok(Deploy {
        deployer,
        router,
        places,
    })
}

/// Vulnerability scans: the advisory database and the per-layer cache, in one file; with
/// `[images] scan_on_pull`, every pulled image scanned.
pub(super) fn start_scan(
    base: &Base,
    config: &capstan_images::ImagesConfig,
) -> Result<capstan_scan::Scanner> {
    let scanner = capstan_scan::Scanner::new(
        base.engine.clone(),
        capstan_scan::VulnDb::open(&base.data.join("vulndb.db"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        base.data.join("scan"),
    );
    if config.scan_on_pull.unwrap_or(false) {
        tokio::spawn(capstan_scan::scan_pulls(
            scanner.clone(),
            base.store.clone(),
            base.live.clone(),
            base.shutdown.clone(),
        ));
    }
    Ok(scanner)
}

/// Container metrics, as the API and the alert rules see them.
pub(super) struct Metrics {
    /// The last readings, when collected.
    pub metrics: Option<Arc<capstan_metrics::Metrics>>,
    /// Their recent history, when kept.
    pub history: Option<Arc<capstan_metrics::History>>,
}

/// Container metrics from cgroups (or the engine's stats), and their history; a fleet's hub
/// (`hub`) keeps a history for its hosts' metrics even when it collects none of its own.
pub(super) fn start_metrics(
    base: &Base,
    config: &capstan_metrics::MetricsConfig,
    hub: bool,
) -> Result<Metrics> {
    let mut collector = config.collector()?;
    let keep = config.history.unwrap_or(true);
    let open = |interval| -> Result<Option<Arc<capstan_metrics::History>>> {
        let kept = capstan_metrics::History::open(&base.data.join("metrics.db"), interval)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Some(Arc::new(kept)))
    };
    if !config.collect.unwrap_or(true) || !base.engine_on {
        if !base.engine_on {
            info!("container metrics are off: no engine ([docker] enabled = false)");
        }
        return Ok(Metrics {
            metrics: None,
            history: if hub && keep {
                open(collector.interval)?
            } else {
                None
            },
        });
    }
    let metrics = Arc::new(capstan_metrics::Metrics::default());
    let mut history = None;
    if keep {
        history = open(collector.interval)?;
        collector.history.clone_from(&history);
    }
    tokio::spawn(Arc::clone(&metrics).run(
        base.engine.clone(),
        collector,
        base.live.subscribe(),
        base.shutdown.clone(),
    ));
    Ok(Metrics {
        metrics: Some(metrics),
        history,
    })
}

/// Alert rules over metrics (`history`), logs (`logs`) and events, held during rollouts.
pub(super) fn start_alerts(
    base: &Base,
    config: &capstan_alerts::AlertsConfig,
    history: Option<Arc<capstan_metrics::History>>,
    logs: Option<Arc<capstan_logs::Store>>,
    rollouts: &RolloutLocks,
    security: Option<&capstan_security::Security>,
) -> Result<Arc<capstan_alerts::Alerts>> {
    let alerts = Arc::new(
        capstan_alerts::Alerts::new(
            config.rules().map_err(|e| anyhow::anyhow!("{e}"))?,
            capstan_alerts::Sources {
                store: base.store.clone(),
                live: base.live.clone(),
                history,
                logs,
                rollouts: rollouts.clone(),
                security: security.map(capstan_security::Security::findings),
            },
            config
                .evaluate_every()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            base.data.join("alert-rules.json"),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    tokio::spawn(Arc::clone(&alerts).run(base.shutdown.clone()));
    Ok(alerts)
}

/// What the notification channels report, by name.
type NotifyStatus =
    Arc<std::sync::Mutex<std::collections::BTreeMap<String, capstan_model::NotifyChannel>>>;

/// Notifications: each channel sends what the journal gained, one message per batch; a batch
/// ends with a check cycle (`updates`) or an alert evaluation that moved alerts.
pub(super) fn start_notify(
    base: &Base,
    config: &[capstan_notify::ChannelConfig],
    alerts: &capstan_alerts::Alerts,
    updates: Option<&Arc<capstan_images::WatchState>>,
) -> Result<NotifyStatus> {
    let notifier = capstan_notify::Notifier::new(
        base.store.clone(),
        config,
        base.data.join("notify"),
        capstan_model::host_name(),
    )?;
    let status = notifier.status();
    let (batch_tx, batches) = tokio::sync::watch::channel(0_u64);
    let batch_tx = Arc::new(batch_tx);
    let mut sources = vec![alerts.evaluations()];
    sources.extend(updates.map(|u| u.cycles()));
    for mut source in sources {
        let batch_tx = Arc::clone(&batch_tx);
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                batch_tx.send_modify(|n| *n += 1);
            }
        });
    }
    tokio::spawn(notifier.run(batches, alerts.firing(), base.shutdown.clone()));
    Ok(status)
}

/// Retention: at start and every hour, the journal's events and the audit log's rows older
/// than `[retention]` keeps are removed (in batches, each a short write).
pub(super) fn start_retention(base: &Base, config: &crate::config::RetentionConfig) {
    use capstan_store::retention::Kept;
    let (store, shutdown) = (base.store.clone(), base.shutdown.clone());
    let kept = [
        (Kept::Events, config.journal()),
        (Kept::Audit, config.audit()),
    ];
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_hours(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            for (table, keep) in kept {
                let before = now.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX));
                match store.prune(table, before).await {
                    Ok(0) => {}
                    Ok(n) => info!(
                        ?table,
                        removed = n,
                        "retention: removed rows older than kept"
                    ),
                    Err(e) => {
                        warn!(?table, error = %e, "retention: cannot remove old rows; tried again in an hour");
                    }
                }
            }
        }
    });
}

/// The host security checks: at start, every `[security] every`, soon after containers change
/// and when the API asks; their open findings kept in the store and journaled as they change.
pub(super) async fn start_security(
    base: &Base,
    config: &capstan_security::SecurityConfig,
) -> Option<capstan_security::Security> {
    if !base.engine_on {
        info!("the security checks are off: no engine ([docker] enabled = false)");
        return None;
    }
    let started = capstan_security::monitor::start(
        base.engine.clone(),
        base.store.clone(),
        base.live.clone(),
        config,
        base.shutdown.clone(),
    )
    .await;
    Some(started)
}

/// Scheduled prunes of the images capstan brought and nothing keeps (`[images] prune…`): the
/// first a period after start, then every period.
pub(super) fn start_prunes(base: &Base, schedule: capstan_images::PruneSchedule) {
    let Some(every) = schedule.every.filter(|_| base.engine_on) else {
        info!("scheduled image prunes are off");
        return;
    };
    let (engine, store, live, shutdown) = (
        base.engine.clone(),
        base.store.clone(),
        base.live.clone(),
        base.shutdown.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let options = capstan_deploy::prune::PruneOptions {
                keep: schedule.keep,
                dry_run: false,
                build_cache: Some(schedule.build_cache),
            };
            match capstan_deploy::prune::prune(&engine, &store, &live, options).await {
                Ok(r) => info!(
                    removed = r.removed.len(),
                    reclaimed = r.reclaimed,
                    build_cache = r.build_cache_reclaimed,
                    left = r.left.len(),
                    "scheduled image prune"
                ),
                Err(e) => warn!(error = %e, "scheduled image prune failed; trying again next time"),
            }
        }
    });
}

/// The pipeline: git webhooks and the builds they queue.
pub(super) struct Pipeline {
    pub hooks: capstan_pipeline::Hooks,
    pub builder: capstan_pipeline::Builder,
}

/// Receives git webhooks and runs the builds they queue, deploying through the apps' own
/// deployers.
pub(super) fn start_pipeline(
    base: &Base,
    config: &capstan_pipeline::PipelineConfig,
    deploy: &Deploy,
    rollouts: &capstan_model::RolloutLocks,
    scanner: &capstan_scan::Scanner,
) -> Pipeline {
    let queued = Arc::new(tokio::sync::Notify::new());
    let hooks = capstan_pipeline::Hooks::new(
        base.store.clone(),
        base.keyring.clone(),
        Arc::clone(&queued),
    );
    let builder = capstan_pipeline::Builder::new(capstan_pipeline::builder::Setup {
        store: base.store.clone(),
        engine: base.engine.clone(),
        registries: Arc::clone(&base.registries),
        keyring: base.keyring.clone(),
        scanner: scanner.clone(),
        places: capstan_pipeline::Places {
            local: deploy.deployer.clone(),
            targets: Arc::new(deploy.places.clone()),
        },
        locks: rollouts.clone(),
        data: base.data.clone(),
        options: config.options(),
        queued,
    });
    tokio::spawn(builder.clone().run(base.shutdown.clone()));
    Pipeline { hooks, builder }
}
