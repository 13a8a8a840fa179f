//! Self-healing: a loop, woken by the engine's container events and by a timer, that keeps each
//! app's current release running: a missing replica is recreated, one that stays exited against
//! its restart policy is replaced, an unhealthy one is restarted with exponential backoff and,
//! after a few attempts, left alone with an event saying so. Drift (a container changed by
//! hand) is not touched here: `capstan plan` shows it and `capstan deploy` fixes it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use capstan_compose::Project;
use capstan_compose::model::Service;
use capstan_model::{CapstanAction, Event, ReleaseResult, RolloutLocks};
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::HealError;
use crate::plan::replicas_of;
use crate::{DeployRequest, Deployer};

/// How often the loop looks even without events.
const PERIOD: Duration = Duration::from_secs(10);
/// How long a replica may stay exited before it is replaced (the engine's own restart policy
/// gets the first go).
const EXITED_GRACE: Duration = Duration::from_secs(5);
/// Restarts of an unhealthy replica before capstan gives up on it.
const MAX_RESTARTS: u32 = 5;
/// First wait between restarts; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The grace period an unhealthy replica gets when it is restarted.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// The self-healing loop.
pub struct Healer {
    deployer: Deployer,
    store: Store,
    /// Apps being deployed right now (shared with the API): left alone meanwhile.
    busy: RolloutLocks,
    live: broadcast::Sender<Event>,
    exited_since: HashMap<String, Instant>,
    restarts: HashMap<String, (u32, Instant)>,
}

impl std::fmt::Debug for Healer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Healer").finish_non_exhaustive()
    }
}

/// Whether a replica that exited with `code` should run again under the service's policy.
fn should_run(service: &Service, code: i64) -> bool {
    let policy = match service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
    {
        Some(p) => match p.condition.as_deref().unwrap_or("any") {
            "none" => "no".to_owned(),
            "on-failure" => "on-failure".to_owned(),
            _ => "always".to_owned(),
        },
        None => service.restart.clone().unwrap_or_else(|| "no".to_owned()),
    };
    match policy.split(':').next().unwrap_or_default() {
        "always" | "unless-stopped" => true,
        "on-failure" => code != 0,
        _ => false,
    }
}

impl Healer {
    pub fn new(
        deployer: Deployer,
        store: Store,
        busy: RolloutLocks,
        live: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            deployer,
            store,
            busy,
            live,
            exited_since: HashMap::new(),
            restarts: HashMap::new(),
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut wake = self.live.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PERIOD) => {}
                event = wake.recv() => {
                    let relevant = matches!(&event,
                        Ok(e) if self.deployer.target.is_replica_trouble(e));
                    if !relevant {
                        continue;
                    }
                    // let a burst of events (and the engine's own restart) pass first
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if let Err(err) = self.pass().await {
                warn!(error = %err, "self-healing pass failed; trying again later");
            }
        }
    }

    fn is_busy(&self, app: &str) -> bool {
        self.busy.is_held(app)
    }

    /// One look at every app.
    ///
    /// # Errors
    /// The ledger or the target could not be read; the next pass tries again.
    pub async fn pass(&mut self) -> Result<(), HealError> {
        let apps = self.store.apps().await?;
        // one look at the target for every app, as often as the pass runs
        let mut observed = self.deployer.target.observe_all().await?;
        for newest in apps {
            // an app taken down stays down; a deploy in progress is left to finish
            if newest.result == ReleaseResult::Down.as_str() || self.is_busy(&newest.app) {
                continue;
            }
            let Some(current) = self.store.current_release(newest.app.clone()).await? else {
                continue;
            };
            // an app on a cluster is kept running by the cluster's orchestrator
            if crate::target_of(&current).is_some() {
                continue;
            }
            let Ok(project) = serde_json::from_str::<Project>(&current.model) else {
                continue;
            };
            let app = newest.app.clone();
            let replicas = observed.remove(&app).unwrap_or_default();
            // what an operator stopped stays stopped (`capstan start` ends it)
            let stopped = self.store.stopped(app.clone()).await?;
            let mut req: Option<DeployRequest> = None;
            for (name, service) in &project.services {
                let want = replicas_of(service);
                let have: BTreeMap<u32, String> = replicas
                    .iter()
                    .filter(|r| &r.service == name)
                    .map(|r| (r.replica, r.id.clone()))
                    .collect();
                let mut broken = Vec::new();
                for r in 1..=want {
                    if stopped.iter().any(|s| s.covers(name, r)) {
                        continue;
                    }
                    let replica = have
                        .get(&r)
                        .and_then(|id| replicas.iter().find(|c| &c.id == id));
                    match replica {
                        None => broken.push((r, "missing".to_owned())),
                        Some(c) if matches!(c.state.as_str(), "exited" | "dead" | "created") => {
                            let code = c.exit_code;
                            if !should_run(service, code) {
                                continue;
                            }
                            let since = *self
                                .exited_since
                                .entry(c.id.clone())
                                .or_insert_with(Instant::now);
                            if since.elapsed() >= EXITED_GRACE {
                                broken.push((r, format!("exited with code {code}")));
                            }
                        }
                        Some(c) if c.health.as_deref() == Some("unhealthy") => {
                            self.restart_unhealthy(&app, name, r, &c.id, &c.name).await;
                        }
                        Some(c) => {
                            self.exited_since.remove(&c.id);
                        }
                    }
                }
                if broken.is_empty() {
                    continue;
                }
                if req.is_none() {
                    match self
                        .deployer
                        .stored_files_at(&project, &crate::ran_files(&current))
                        .await
                    {
                        Ok(files) => {
                            req = Some(DeployRequest {
                                project: project.clone(),
                                files,
                                source: serde_json::Value::Null,
                                pull: false,
                            });
                        }
                        Err(e) => {
                            warn!(app, error = %e, "cannot heal: the app's files are gone");
                            break;
                        }
                    }
                }
                let Some(request) = &req else { continue };
                // a deploy or down may have started since this pass began
                if self.is_busy(&app) {
                    break;
                }
                let numbers: Vec<u32> = broken.iter().map(|(r, _)| *r).collect();
                let result = self
                    .deployer
                    .repair(request, current.number, name, numbers, have.clone())
                    .await;
                for (r, reason) in broken {
                    let (action, detail) = match &result {
                        Ok(_) => (CapstanAction::Heal, reason.clone()),
                        Err(e) => (CapstanAction::HealFailed, format!("{reason}: {e}")),
                    };
                    info!(app, service = %name, replica = r, reason, action = %action, "self-healing");
                    self.record(&app, name, r, action, &detail).await;
                }
            }
        }
        Ok(())
    }

    /// Restarts an unhealthy replica, waiting longer each time; gives up after a few tries.
    async fn restart_unhealthy(
        &mut self,
        app: &str,
        service: &str,
        replica: u32,
        id: &str,
        name: &str,
    ) {
        let (attempts, next) = self
            .restarts
            .get(id)
            .copied()
            .unwrap_or((0, Instant::now()));
        if attempts >= MAX_RESTARTS || Instant::now() < next {
            return;
        }
        if attempts + 1 == MAX_RESTARTS {
            self.record(
                app,
                service,
                replica,
                CapstanAction::HealGaveUp,
                &format!("{name} stayed unhealthy after {MAX_RESTARTS} restarts"),
            )
            .await;
        }
        let restarted = self.deployer.target.restart(id, RESTART_GRACE).await;
        let backoff = FIRST_BACKOFF * 2_u32.pow(attempts);
        self.restarts
            .insert(id.to_owned(), (attempts + 1, Instant::now() + backoff));
        let detail = match restarted {
            Ok(()) => format!(
                "unhealthy: restart {} of {MAX_RESTARTS}, next no sooner than {}s",
                attempts + 1,
                backoff.as_secs()
            ),
            Err(e) => format!("unhealthy: restart failed: {e}"),
        };
        self.record(
            app,
            service,
            replica,
            CapstanAction::RestartUnhealthy,
            &detail,
        )
        .await;
    }

    /// Journals what the healer did as a `capstan` event (alert rules can use it).
    async fn record(
        &self,
        app: &str,
        service: &str,
        replica: u32,
        action: CapstanAction,
        detail: &str,
    ) {
        let attributes = BTreeMap::from([
            ("app".to_owned(), app.to_owned()),
            ("service".to_owned(), service.to_owned()),
            ("replica".to_owned(), replica.to_string()),
            ("detail".to_owned(), detail.to_owned()),
        ]);
        self.store
            .record(
                &self.live,
                action,
                format!("{app}/{service}/{replica}"),
                attributes,
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_decide() {
        let mut s = Service::default();
        assert!(!should_run(&s, 1), "compose's default is no");
        s.restart = Some("always".into());
        assert!(should_run(&s, 0));
        s.restart = Some("on-failure:3".into());
        assert!(should_run(&s, 2) && !should_run(&s, 0));
        s.deploy = Some(capstan_compose::model::Deploy {
            restart_policy: Some(capstan_compose::model::RestartPolicy {
                condition: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(!should_run(&s, 2), "deploy.restart_policy wins");
    }
}
