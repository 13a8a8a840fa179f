//! A fleet host as a target of the hub's deploys (`deploy --target NAME`): the hub keeps the
//! ledger; the host's agent runs the release with its own rollout engine and answers with its
//! report ([`crate::commands`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use capstan_compose::Project;
use capstan_deploy::{DeployRequest, Replica, Target, TargetError};
use capstan_model::{Outcome, Progress, Report};
use tokio::sync::mpsc;

use crate::commands::{Command, Op};
use crate::hub::Hub;

/// A joined host, as the hub's rollout engine sees it.
#[derive(Debug)]
pub struct HostTarget {
    hub: Hub,
    name: String,
    key: String,
    /// App → service → the image id it ran, from the host's last report.
    images: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// The engine of a host without an agent (its agent runs on the hub's machine): what
    /// needs capstan on the host is refused here, before anything is recorded.
    agentless: Option<String>,
}

impl HostTarget {
    pub(crate) fn new(hub: Hub, name: String, key: String) -> Self {
        Self {
            hub,
            name,
            key,
            images: Mutex::new(BTreeMap::new()),
            agentless: None,
        }
    }

    /// This host has no agent of its own: its engine, at `engine`, is reached from the hub's
    /// machine.
    #[must_use]
    pub fn without_agent(mut self, engine: &str) -> Self {
        self.agentless = Some(engine.to_owned());
        self
    }

    /// Whether the host's agent is connected now.
    pub fn connected(&self) -> bool {
        self.hub.connected(&self.key)
    }

    /// The host's name in the fleet.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A command id: unique on this hub.
fn command_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[async_trait::async_trait]
impl Target for HostTarget {
    fn check(&self, request: &DeployRequest) -> Result<(), TargetError> {
        // the host's agent checks the model against its own engine when it runs the release;
        // what a host without one cannot have is refused now
        match &self.agentless {
            Some(engine) => capstan_deploy::needs_no_agent(request, engine),
            None => Ok(()),
        }
    }

    async fn prepare(&self, _request: &DeployRequest) -> Result<(), TargetError> {
        Ok(())
    }

    async fn finish(&self, _app: &str) {}

    async fn observe(&self, app: &str) -> Result<Vec<Replica>, TargetError> {
        let context = Some(format!("listing {app}'s replicas on host {}", self.name));
        if !self.connected() {
            return Err(TargetError::Unreachable {
                context,
                source:
                    "its agent is not connected to the hub (capstan hosts shows its last contact)"
                        .into(),
            });
        }
        let command = Command {
            id: command_id(),
            release: 0,
            op: Op::Observe {
                app: app.to_owned(),
            },
        };
        let Some(done) = self.hub.ask_now(&self.key, command, OBSERVE_WAIT).await else {
            return Err(TargetError::Unreachable {
                context,
                source: format!("its agent did not answer within {OBSERVE_WAIT:?}").into(),
            });
        };
        match done.report.outcome {
            Outcome::Succeeded => Ok(done.replicas),
            _ => Err(TargetError::Failed {
                context,
                source: done.report.error.unwrap_or_default().into(),
            }),
        }
    }

    async fn observe_all(&self) -> Result<BTreeMap<String, Vec<Replica>>, TargetError> {
        Ok(BTreeMap::new())
    }

    async fn image_ids(&self, project: &Project) -> Result<BTreeMap<String, String>, TargetError> {
        let app = project.name.clone().unwrap_or_default();
        // what runs there now, else what its last release reported
        if let Ok(mut replicas) = self.observe(&app).await
            && !replicas.is_empty()
        {
            replicas.sort_by_key(|r| std::cmp::Reverse(r.replica));
            return Ok(replicas
                .into_iter()
                .map(|r| (r.service, r.image_id))
                .collect());
        }
        Ok(self
            .images
            .lock()
            .ok()
            .and_then(|m| m.get(&app).cloned())
            .unwrap_or_default())
    }

    async fn pull(&self, _image: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn last_logs(&self, _id: &str, _lines: usize) -> String {
        String::new()
    }

    async fn down(&self, app: &str, volumes: bool) -> Result<Vec<String>, TargetError> {
        let op = Op::Down {
            app: app.to_owned(),
            volumes,
        };
        let failed = |source: String| TargetError::Failed {
            context: Some(format!("taking {app} down on host {}", self.name)),
            source: source.into(),
        };
        let done = self.ask(op, 0, None).await.map_err(failed)?;
        match done.report.error {
            Some(e) if done.report.outcome != Outcome::Succeeded => Err(failed(e)),
            _ => Ok(done.removed),
        }
    }

    async fn run_release(
        &self,
        request: &DeployRequest,
        release: i64,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Option<Report> {
        let app = request.app();
        let op = Op::Deploy {
            request: Box::new(request.clone()),
            pull: request.pull,
        };
        Some(match self.ask(op, release, progress).await {
            Ok(done) => {
                if let Ok(mut images) = self.images.lock() {
                    images.insert(app, done.images);
                }
                done.report
            }
            Err(e) => Report {
                app,
                release,
                outcome: Outcome::Failed,
                services: Vec::new(),
                error: Some(format!(
                    "{e}; the host's report is recorded when it arrives"
                )),
            },
        })
    }
}

impl HostTarget {
    /// Queues `op` for the host and waits for its end, however long the host is away: it
    /// finishes by itself and reports when it is back (a hub restarted meanwhile records a
    /// release's end without this caller). An error when the hub stopped waiting.
    async fn ask(
        &self,
        op: Op,
        release: i64,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<crate::commands::Done, String> {
        let command = Command {
            id: command_id(),
            release,
            op,
        };
        let id = command.id.clone();
        let done = self
            .hub
            .enqueue(&self.key, command, progress)
            .await
            .map_err(|e| format!("cannot keep the command for host {}: {e}", self.name))?;
        let answer = done.await;
        self.hub.stop_waiting(&id);
        answer.map_err(|_| {
            format!(
                "host {} was removed from the fleet, or the hub is stopping, before it reported the end",
                self.name
            )
        })
    }
}

/// How long a connected host may take to say what runs there.
const OBSERVE_WAIT: Duration = Duration::from_secs(15);

/// How long a connected host may take to pick a command up (it polls at once when idle).
pub(crate) const POLL_WAIT: Duration = Duration::from_secs(20);

/// The target of a joined host, if `name` is one.
pub async fn host_target(
    hub: &Hub,
    name: &str,
) -> Result<Option<HostTarget>, capstan_store::Error> {
    Ok(hub
        .host_key(name)
        .await?
        .map(|key| HostTarget::new(hub.clone(), name.to_owned(), key)))
}
