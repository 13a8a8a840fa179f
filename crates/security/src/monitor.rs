//! Runs the checks: at start, every `[security] every`, soon after containers change, and when
//! the API asks. One task owns the runs (no two at once); what they find is kept in the store
//! as the open findings, each new one journaled as `security_finding` and each gone one as
//! `security_resolved`, and published to the alert engine.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_engine::Engine;
use capstan_model::{
    CapstanAction, ConfigDuration, ConfigError, Event, SecurityFinding, SecurityReport,
};
use capstan_store::Store;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Snapshot, assess, is_check};

/// `[security]` of capstan.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// How often the checks run besides when containers change (`10m` by default).
    #[serde(default)]
    pub every: Option<ConfigDuration>,
    /// Check ids not to run (`["5.12", "2.9"]`): they report `not_applicable`.
    #[serde(default)]
    pub skip: Vec<String>,
}

/// The default of `every`.
const DEFAULT_EVERY: Duration = Duration::from_mins(10);
/// After a container changes, the checks wait this long for more changes before running.
const SETTLE: Duration = Duration::from_secs(2);
/// Runs that changes start are this far apart at least: a busy engine (a deploy, a crash loop)
/// does not have every container inspected again every few seconds.
const MIN_GAP: Duration = Duration::from_secs(15);
/// API requests waiting for a run.
const QUEUE: usize = 32;

impl SecurityConfig {
    /// How often the checks run.
    pub fn every(&self) -> Duration {
        self.every.map_or(DEFAULT_EVERY, |d| d.0)
    }

    /// Checks the section: bad input names its key.
    ///
    /// # Errors
    /// A [`ConfigError`] for an unknown check id or too short a period.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.every() < Duration::from_secs(10) {
            return Err(ConfigError::new("security.every", "at least 10s"));
        }
        for (i, id) in self.skip.iter().enumerate() {
            if !is_check(id) {
                return Err(ConfigError::new(
                    format!("security.skip[{i}]"),
                    format!("{id:?} is not a check id (`capstan security` lists them)"),
                ));
            }
        }
        Ok(())
    }
}

type Reply = oneshot::Sender<Result<SecurityReport, String>>;

/// The running checks, shared with the API and the alert engine. Cheap to clone.
#[derive(Clone)]
pub struct Security {
    requests: mpsc::Sender<Reply>,
    findings: watch::Receiver<Vec<SecurityFinding>>,
}

impl Security {
    /// Runs every check now (or joins the run about to start) and answers its report.
    ///
    /// # Errors
    /// Why the checks could not run (the engine did not answer), said for a person.
    pub async fn report(&self) -> Result<SecurityReport, String> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.map_err(|_| {
            "the security checks have stopped (capstan is shutting down)".to_owned()
        })?;
        rx.await
            .map_err(|_| "the security checks have stopped (capstan is shutting down)".to_owned())?
    }

    /// The open findings, as of the last run.
    pub fn findings(&self) -> watch::Receiver<Vec<SecurityFinding>> {
        self.findings.clone()
    }
}

/// Whether an engine event may change what the checks find.
fn changes_findings(e: &Event) -> bool {
    match e.kind.as_str() {
        "container" => matches!(
            e.action.as_str(),
            "create" | "start" | "destroy" | "rename" | "update"
        ),
        "network" => matches!(e.action.as_str(), "create" | "destroy"),
        _ => false,
    }
}

struct Runner {
    engine: Engine,
    store: Store,
    live: broadcast::Sender<Event>,
    skip: Vec<String>,
    findings: watch::Sender<Vec<SecurityFinding>>,
    /// The last failure said, so that an engine outage is logged once.
    failing: Option<String>,
}

impl Runner {
    async fn run(&mut self) -> Result<SecurityReport, String> {
        let snapshot = Snapshot::take(&self.engine)
            .await
            .map_err(|e| e.to_string());
        let snapshot = match snapshot {
            Ok(s) => {
                if self.failing.take().is_some() {
                    info!("the security checks run again");
                }
                s
            }
            Err(e) => {
                if self.failing.as_ref() != Some(&e) {
                    warn!(error = %e, "cannot run the security checks");
                    self.failing = Some(e.clone());
                }
                return Err(e);
            }
        };
        let mut report = assess(&snapshot, &self.skip, Utc::now());
        let known: BTreeMap<(String, String), SecurityFinding> = self
            .store
            .security_findings()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|f| ((f.check.clone(), f.object.key()), f))
            .collect();
        let mut new = Vec::new();
        for f in &mut report.findings {
            match known.get(&(f.check.clone(), f.object.key())) {
                Some(old) => f.since = old.since,
                None => new.push(f.clone()),
            }
        }
        let current: std::collections::BTreeSet<(String, String)> = report
            .findings
            .iter()
            .map(|f| (f.check.clone(), f.object.key()))
            .collect();
        let resolved: Vec<&SecurityFinding> = known
            .iter()
            .filter(|(k, _)| !current.contains(k))
            .map(|(_, f)| f)
            .collect();
        self.store
            .set_security_findings(report.findings.clone())
            .await
            .map_err(|e| e.to_string())?;
        for f in &new {
            self.journal(CapstanAction::SecurityFinding, f).await;
        }
        for f in resolved {
            self.journal(CapstanAction::SecurityResolved, f).await;
        }
        if !new.is_empty() {
            info!(
                new = new.len(),
                open = report.findings.len(),
                "security checks found more"
            );
        }
        self.findings.send_replace(report.findings.clone());
        Ok(report)
    }

    async fn journal(&self, action: CapstanAction, f: &SecurityFinding) {
        let attributes = BTreeMap::from([
            ("check".to_owned(), f.check.clone()),
            ("title".to_owned(), f.title.clone()),
            ("severity".to_owned(), f.severity.as_str().to_owned()),
            ("object_kind".to_owned(), f.object.kind.as_str().to_owned()),
            ("name".to_owned(), f.object.name.clone()),
            ("detail".to_owned(), f.detail.clone()),
        ]);
        self.store
            .record(&self.live, action, f.object.key(), attributes)
            .await;
    }
}

/// Starts the checks; they stop with `shutdown`.
pub async fn start(
    engine: Engine,
    store: Store,
    live: broadcast::Sender<Event>,
    config: &SecurityConfig,
    shutdown: CancellationToken,
) -> Security {
    let open = store.security_findings().await.unwrap_or_else(|e| {
        warn!(error = %e, "cannot read the open security findings; they are found again");
        Vec::new()
    });
    let (findings, findings_rx) = watch::channel(open);
    let (requests, mut rx) = mpsc::channel::<Reply>(QUEUE);
    let every = config.every();
    let mut events = live.subscribe();
    let mut runner = Runner {
        engine,
        store,
        live,
        skip: config.skip.clone(),
        findings,
        failing: None,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle: Option<Instant> = None;
        let mut last_run = Instant::now();
        loop {
            let due = settle.map_or_else(|| Instant::now() + every, |s| s.max(last_run + MIN_GAP));
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    last_run = Instant::now();
                    let _ = runner.run().await;
                }
                Some(first) = rx.recv() => {
                    // every request waiting now is answered by this one run
                    let mut waiting = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        waiting.push(more);
                    }
                    settle = None;
                    last_run = Instant::now();
                    let report = runner.run().await;
                    for w in waiting {
                        let _ = w.send(report.clone());
                    }
                }
                event = events.recv() => match event {
                    Ok(e) if changes_findings(&e) => {
                        settle.get_or_insert_with(|| Instant::now() + SETTLE);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        settle.get_or_insert_with(|| Instant::now() + SETTLE);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(due), if settle.is_some() => {
                    settle = None;
                    last_run = Instant::now();
                    let _ = runner.run().await;
                }
            }
        }
    });
    Security {
        requests,
        findings: findings_rx,
    }
}
