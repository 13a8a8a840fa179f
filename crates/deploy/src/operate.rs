//! Day-two operations on an app's replicas that make no release: `stop` (the replica stays
//! stopped: self-healing leaves it until `start` or the app's next release), `start`, and a
//! rolling `restart` (one replica at a time: out of rotation, its open requests drained,
//! stopped, started, and back in rotation once it passes its health gate; the next one waits
//! for that). The caller holds the app's rollout lock.

use capstan_compose::Project;
use capstan_model::{Operated, OperatedReplica};
use capstan_store::Store;
use capstan_store::stopped::StoppedRow;

use crate::Deployer;
use crate::error::{GateError, TargetError};
use crate::plan::replicas_of;
use crate::rollout::gate::Gate;
use crate::rollout::service::grace_of;
use crate::target::Replica;

/// What to do to the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Stop,
    Start,
    Restart,
}

impl Operation {
    /// Its name in the API, the CLI and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Restart => "restart",
        }
    }

    /// `stop`, `start` or `restart`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Stop, Self::Start, Self::Restart]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// Why an operation did not (all) happen.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// No such app, service or replica: nothing was done.
    #[error("{0}")]
    NotFound(String),
    /// Not on this app's target: nothing was done.
    #[error("{0}")]
    Refused(String),
    /// A restarted or started replica did not come back; what came before it is done, what
    /// comes after it was not touched.
    #[error(
        "{error}; {done} replica(s) before it were done, the rest were left as they were{logs}"
    )]
    NotBack {
        error: GateError,
        done: usize,
        /// Its last log lines, prefixed.
        logs: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
}

impl Deployer {
    /// Does `operation` to `app`'s replicas: every service's, `service`'s, or its replica
    /// `replica`'s only.
    ///
    /// # Errors
    /// An [`OperateError`]; a name or number the app does not have is refused before anything
    /// is done.
    pub async fn operate(
        &self,
        store: &Store,
        actor: &str,
        app: &str,
        operation: Operation,
        service: Option<&str>,
        replica: Option<u32>,
    ) -> Result<Operated, OperateError> {
        let project = match crate::running_model(store, app).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(OperateError::NotFound(format!(
                    "app {app:?} runs no release (capstan apps lists them)"
                )));
            }
            Err(e) => return Err(OperateError::NotFound(e.to_string())),
        };
        if let Some(place) = &self.place {
            return Err(OperateError::Refused(format!(
                "app {app} runs on target {place}: {} acts on the local engine's replicas; `capstan scale {app} SERVICE=0` (and back) stops and starts a service on any target",
                operation.as_str()
            )));
        }
        let chosen = chosen(&project, app, service, replica)?;
        let mut replicas: Vec<Replica> = self
            .target
            .observe(app)
            .await?
            .into_iter()
            .filter(|r| {
                chosen
                    .iter()
                    .any(|(s, n)| *s == r.service && *n == r.replica)
            })
            .collect();
        replicas.sort_by(|a, b| (&a.service, a.replica).cmp(&(&b.service, b.replica)));
        let mut done = Vec::new();
        match operation {
            Operation::Stop => {
                // recorded first: self-healing must not start what is being stopped
                let rows = stops(app, actor, service, replica, &chosen);
                store
                    .write(move |tx| {
                        for row in &rows {
                            capstan_store::stopped::stop(tx, row)?;
                        }
                        Ok(())
                    })
                    .await?;
                for r in &replicas {
                    let grace = grace_of(&project.services[&r.service]);
                    let outcome = if r.state == "running" {
                        self.target.drain(&r.id, grace).await;
                        self.target.stop(&r.id, grace).await?;
                        "stopped"
                    } else {
                        "already stopped"
                    };
                    done.push(self.now(r, outcome).await?);
                }
            }
            Operation::Start => {
                let (of_app, service, others) = (
                    app.to_owned(),
                    service.map(str::to_owned),
                    rest_of(&chosen, &project, replica),
                );
                store
                    .write(move |tx| {
                        match (service.as_deref(), replica) {
                            // one replica of a service stopped whole: the others stay stopped
                            (Some(s), Some(r)) => {
                                let whole = capstan_store::stopped::stopped(tx, &of_app)?
                                    .into_iter()
                                    .find(|row| row.service == s && row.replica == 0);
                                if let Some(whole) = whole {
                                    capstan_store::stopped::start(tx, &of_app, Some(s), None)?;
                                    for n in others.iter().filter(|n| **n != r) {
                                        capstan_store::stopped::stop(
                                            tx,
                                            &StoppedRow {
                                                replica: *n,
                                                ..whole.clone()
                                            },
                                        )?;
                                    }
                                } else {
                                    capstan_store::stopped::start(tx, &of_app, Some(s), Some(r))?;
                                }
                            }
                            (s, _) => {
                                capstan_store::stopped::start(tx, &of_app, s, None)?;
                            }
                        }
                        Ok(())
                    })
                    .await?;
                for (i, r) in replicas.iter().enumerate() {
                    if r.state == "running" {
                        done.push(self.now(r, "already running").await?);
                        continue;
                    }
                    self.target.start(&r.id).await?;
                    self.back(&project, r, i).await?;
                    done.push(self.now(r, "started").await?);
                }
            }
            Operation::Restart => {
                for (i, r) in replicas.iter().enumerate() {
                    let grace = grace_of(&project.services[&r.service]);
                    if r.state == "running" {
                        self.target.drain(&r.id, grace).await;
                        self.target.stop(&r.id, grace).await?;
                    }
                    self.target.start(&r.id).await?;
                    self.back(&project, r, i).await?;
                    done.push(self.now(r, "restarted").await?);
                }
            }
        }
        Ok(Operated {
            app: app.to_owned(),
            operation: operation.as_str().to_owned(),
            replicas: done,
        })
    }

    /// Waits for a started replica's health gate, then puts it back in rotation.
    async fn back(
        &self,
        project: &Project,
        r: &Replica,
        before: usize,
    ) -> Result<(), OperateError> {
        let gate = Gate::of(&project.services[&r.service]);
        if let Err(error) = gate.wait(self.target.as_ref(), &r.id, &r.name).await {
            let logs = self.target.last_logs(&r.id, 10).await;
            let logs = if logs.trim().is_empty() {
                String::new()
            } else {
                format!("; its last lines:\n{logs}")
            };
            return Err(OperateError::NotBack {
                error,
                done: before,
                logs,
            });
        }
        self.target.rotate().await;
        Ok(())
    }

    /// How replica `r` is now, with what was done to it.
    async fn now(&self, r: &Replica, done: &str) -> Result<OperatedReplica, OperateError> {
        let state = self
            .target
            .status(&r.id)
            .await?
            .map_or_else(|| "gone".to_owned(), |s| s.state);
        Ok(OperatedReplica {
            service: r.service.clone(),
            replica: r.replica,
            name: r.name.clone(),
            state,
            done: done.to_owned(),
        })
    }
}

/// The (service, replica) pairs an operation acts on; a service or replica the app does not
/// have is refused, naming what it has.
fn chosen(
    project: &Project,
    app: &str,
    service: Option<&str>,
    replica: Option<u32>,
) -> Result<Vec<(String, u32)>, OperateError> {
    let services: Vec<&String> = match service {
        Some(name) => {
            let Some((name, _)) = project.services.get_key_value(name) else {
                let have: Vec<&str> = project.services.keys().map(String::as_str).collect();
                return Err(OperateError::NotFound(format!(
                    "app {app} has no service {name:?} (it has: {})",
                    have.join(", ")
                )));
            };
            vec![name]
        }
        None => project.services.keys().collect(),
    };
    let mut out = Vec::new();
    for name in services {
        let want = replicas_of(&project.services[name]);
        match replica {
            Some(n) if n == 0 || n > want => {
                return Err(OperateError::NotFound(format!(
                    "service {name} of {app} has replicas 1 to {want}; there is no replica {n}"
                )));
            }
            Some(n) => out.push((name.clone(), n)),
            None => out.extend((1..=want).map(|n| (name.clone(), n))),
        }
    }
    Ok(out)
}

/// The stops to record: a whole service's as replica 0 (replicas added later by a scale stay
/// stopped too), a replica's as itself.
fn stops(
    app: &str,
    actor: &str,
    service: Option<&str>,
    replica: Option<u32>,
    chosen: &[(String, u32)],
) -> Vec<StoppedRow> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let row = |service: &str, replica| StoppedRow {
        app: app.to_owned(),
        service: service.to_owned(),
        replica,
        stopped_by: actor.to_owned(),
        time_nano: now,
    };
    match (service, replica) {
        (_, Some(_)) => chosen.iter().map(|(s, n)| row(s, *n)).collect(),
        (_, None) => {
            let services: std::collections::BTreeSet<&str> =
                chosen.iter().map(|(s, _)| s.as_str()).collect();
            services.iter().map(|s| row(s, 0)).collect()
        }
    }
}

/// The replica numbers of the one chosen service (for a start of one replica of a service
/// stopped whole).
fn rest_of(chosen: &[(String, u32)], project: &Project, replica: Option<u32>) -> Vec<u32> {
    match (chosen.first(), replica) {
        (Some((service, _)), Some(_)) => (1..=replicas_of(&project.services[service])).collect(),
        _ => Vec::new(),
    }
}
