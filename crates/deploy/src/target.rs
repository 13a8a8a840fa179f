//! The seam between the rollout engine and where replicas run.
//!
//! The engine ([`crate::Deployer`]) owns every decision of a release: the plan, the order of
//! services, the batches, the health gates, draining, rollback, the ledger and the progress
//! stream. A [`Target`] only realises what the engine decides: it prepares what an app needs
//! (files, networks, volumes, images, published ports), creates, starts, inspects, renames and
//! removes single replicas, and says what runs. The plain Docker engine is the first backend
//! ([`crate::docker::DockerTarget`]); a Swarm cluster, a Kubernetes namespace and a fleet host
//! are further ones. Nothing here names a Docker type: a backend keeps its engine's types to
//! itself and answers in these.
//!
//! How to add a backend is in `docs/ARCHITECTURE.md` (section "Adding a target").

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_compose::Project;
use capstan_model::{Event, Report};
use tokio::sync::{broadcast, mpsc};

use crate::DeployRequest;
use crate::error::TargetError;

/// A replica as the target shows it: which app, service and slot it fills, what it was made
/// from and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replica {
    /// The target's id for it (a container id on Docker).
    pub id: String,
    /// Its name, as messages show it.
    pub name: String,
    /// The service it belongs to.
    pub service: String,
    /// Its slot, from 1.
    pub replica: u32,
    /// The [`crate::desired_hash`] it was made from.
    pub spec_hash: String,
    /// The image id it runs.
    pub image_id: String,
    /// `running`, `exited`, `dead`, `created`, ...
    pub state: String,
    /// The exit code it stopped with (0 while it runs).
    pub exit_code: i64,
    /// `healthy`, `unhealthy` or `starting` when it has a healthcheck.
    pub health: Option<String>,
    /// The node it runs on, on a target of several (a Swarm's hostname).
    pub node: Option<String>,
    /// Where it answers on its node, on a target whose replicas publish their own ports:
    /// `10.0.0.12:30001->80/tcp`.
    pub endpoints: Vec<String>,
}

/// One replica to create: which release's definition of which service, in which slot.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// The rollout's request (its configs' and secrets' contents and digests).
    pub request: &'a DeployRequest,
    /// The model whose definition to use (a rollback uses the previous release's).
    pub project: &'a Project,
    /// The service.
    pub service: &'a str,
    /// The slot, from 1.
    pub replica: u32,
    /// The release it belongs to.
    pub release: i64,
    /// Created beside the replica it replaces (start-first) until [`Target::promote`] puts it
    /// in that replica's place.
    pub beside: bool,
}

impl Unit<'_> {
    /// Whether it puts the previous release's definition back (a rollback of a failed
    /// update: its model is not the request's).
    pub fn restoring(&self) -> bool {
        !std::ptr::eq(self.project, &raw const self.request.project)
    }
}

/// A replica a target created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The target's id for it.
    pub id: String,
    /// Its name, as messages show it.
    pub name: String,
}

/// A replica's state as its health gate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `running`, `exited`, `dead`, `created`, ...
    pub state: String,
    /// The exit code it stopped with.
    pub exit_code: i64,
    /// `healthy`, `unhealthy` or `starting` when it has a healthcheck.
    pub health: Option<String>,
    /// The last healthcheck's output.
    pub health_output: Option<String>,
}

/// How an orchestrating target's work on one service is going.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceProgress {
    /// Why the orchestrator stopped the service's update by itself (paused it, rolled it
    /// back), if it did.
    pub halted: Option<String>,
    /// Whether its update is still under way (replicas still to replace).
    pub updating: bool,
    /// Replicas that failed or were refused: id, the [`crate::desired_hash`] they were made
    /// from, and why (exit code, the orchestrator's error).
    pub failed: Vec<(String, String, String)>,
}

/// Refuses host names (`x-capstan.routes`) on a target whose replicas capstan's proxy does
/// not serve (a Swarm, a Kubernetes cluster), naming the target.
///
/// # Errors
/// [`TargetError::Refused`] when the app routes a host name.
pub fn refuse_routes(request: &DeployRequest, target: &str) -> Result<(), TargetError> {
    match request
        .project
        .capstan
        .as_ref()
        .and_then(|c| c.routes.first())
    {
        Some(r) => Err(TargetError::Refused(format!(
            "x-capstan.routes: {} is a host name for capstan's proxy, which serves the apps of its own engine and fleet hosts; {target} does not take them yet (publish a port there, or deploy the app to the local engine or a fleet host)",
            r.host
        ))),
        None => Ok(()),
    }
}

/// What a target that places and replaces whole services (an orchestrator: see
/// [`Target::orchestrates`]) answers when asked to handle one replica.
fn whole_services() -> TargetError {
    TargetError::Refused(
        "this target places and replaces whole services; it has no single replicas to handle"
            .into(),
    )
}

/// Where an app's replicas run. Every method is one step the engine asked for; none decides
/// what happens next. Methods that only clean up are best effort and say nothing. The
/// single-replica steps (`create`, `start`, `status`, `admit`, `promote`, `drain`, `remove`,
/// `discard`, `restart`) default to refusing: an orchestrating target is never asked them, and
/// a target that realises single replicas implements every one.
#[async_trait::async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// Checks what this target cannot run in `request`, before anything changes (a published
    /// port the target cannot serve, say); the message names the key.
    fn check(&self, request: &DeployRequest) -> Result<(), TargetError>;

    /// Makes ready everything a release of `request` needs before its replicas start: checks
    /// what this target cannot run, reserves published ports, delivers configs and secrets,
    /// makes networks and volumes, fetches images that are missing. Nothing has changed when it
    /// fails on what the model asks.
    async fn prepare(&self, request: &DeployRequest) -> Result<(), TargetError>;

    /// A release of `app` ended, however it ended: what [`Target::prepare`] reserved for it is
    /// released (from now on its replicas alone say what runs).
    async fn finish(&self, app: &str);

    /// The replicas of `app` as they are now.
    async fn observe(&self, app: &str) -> Result<Vec<Replica>, TargetError>;

    /// Every app's replicas as they are now, by app, in one look (self-healing's pass).
    async fn observe_all(&self) -> Result<BTreeMap<String, Vec<Replica>>, TargetError>;

    /// Service → the image id its reference resolves to on the target now; a service whose
    /// image is not there is left out.
    async fn image_ids(&self, project: &Project) -> Result<BTreeMap<String, String>, TargetError>;

    /// Why `service`'s rollouts on this target must stop an old replica before starting its
    /// replacement whatever `order` says (a host port held by one container), if they must.
    fn stops_first(&self, service: &capstan_compose::model::Service) -> Option<String> {
        let _ = service;
        None
    }

    /// Fetches `image` from its registry.
    async fn pull(&self, image: &str) -> Result<(), TargetError>;

    /// Creates (not starts) the replica `unit` describes.
    async fn create(&self, unit: Unit<'_>) -> Result<Created, TargetError> {
        let _ = unit;
        Err(whole_services())
    }

    /// Starts a created replica.
    async fn start(&self, id: &str) -> Result<(), TargetError> {
        let _ = id;
        Err(whole_services())
    }

    /// A replica's state; `None` when it is gone.
    async fn status(&self, id: &str) -> Result<Option<Status>, TargetError> {
        let _ = id;
        Err(whole_services())
    }

    /// A stream of the target's events (an [`Event`]'s `actor` is a replica id): health gates
    /// wake on them instead of polling. `None` when the target has none.
    fn subscribe(&self) -> Option<broadcast::Receiver<Event>> {
        None
    }

    /// Whether `event` may mean a replica of an app died, vanished or turned unhealthy
    /// (self-healing looks again).
    fn is_replica_trouble(&self, event: &Event) -> bool {
        let _ = event;
        false
    }

    /// The replica's last log lines, for a failure's message; empty when there are none.
    async fn last_logs(&self, id: &str, lines: usize) -> String;

    /// Puts a replica of `unit` that passed its health gate in rotation (where it serves
    /// published ports). A failure is logged: the target keeps trying by itself.
    async fn admit(&self, id: &str, unit: Unit<'_>) {
        let _ = (id, unit);
    }

    /// Puts a replica created [`Unit::beside`] in its slot's place (the replica it replaced is
    /// gone by now).
    async fn promote(&self, id: &str, unit: Unit<'_>) -> Result<(), TargetError> {
        let _ = (id, unit);
        Err(whole_services())
    }

    /// Takes a replica out of rotation and waits up to `grace` for its open requests; returns
    /// how many were still open.
    async fn drain(&self, id: &str, grace: Duration) -> usize {
        let _ = (id, grace);
        0
    }

    /// Stops a replica (with `grace` before it is killed) and removes it. One already gone is
    /// no failure.
    async fn remove(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        let _ = (id, grace);
        Err(whole_services())
    }

    /// Moves a drained replica out of `unit`'s slot, so that its successor takes the slot's
    /// name now while it stops in the background. A target without names has nothing to do.
    async fn set_aside(&self, id: &str, unit: Unit<'_>) -> Result<(), TargetError> {
        let _ = (id, unit);
        Ok(())
    }

    /// Removes a new replica that failed at once, without waiting.
    async fn discard(&self, id: &str) {
        let _ = id;
    }

    /// Whether this target's own orchestrator places and replaces a service's replicas (a
    /// Swarm service): the engine then hands it each service's whole definition
    /// ([`Target::apply_service`]) and gates on what [`Target::observe`] and
    /// [`Target::service_progress`] show, instead of creating, gating and retiring replicas one
    /// by one; it still decides what a failure becomes (its own rollback, by applying the
    /// previous definition). Targets that realise single replicas say `false`.
    fn orchestrates(&self) -> bool {
        false
    }

    /// Runs release `release` of `request` whole, elsewhere (a fleet host's agent runs its own
    /// rollout and answers with its report), sending its steps to `progress`; `None`: the
    /// rollout engine runs it here, through this target's other methods. The ledger stays
    /// where the release began.
    async fn run_release(
        &self,
        request: &DeployRequest,
        release: i64,
        progress: Option<mpsc::Sender<capstan_model::Progress>>,
    ) -> Option<Report> {
        let _ = (request, release, progress);
        None
    }

    /// Makes the target run `unit.service` as `unit.project` defines it in release
    /// `unit.release` (creating it, or updating it in place: its orchestrator replaces the
    /// replicas). Returns once the target accepted it; the engine gates on the replicas.
    async fn apply_service(&self, unit: Unit<'_>) -> Result<(), TargetError> {
        let _ = unit;
        Err(TargetError::Refused(
            "this target realises single replicas, not whole services".into(),
        ))
    }

    /// How the orchestrator's work on a service is going (see [`ServiceProgress`]).
    async fn service_progress(
        &self,
        app: &str,
        service: &str,
    ) -> Result<ServiceProgress, TargetError> {
        let _ = (app, service);
        Ok(ServiceProgress::default())
    }

    /// Removes a whole service and its replicas (an orchestrating target's part of removing a
    /// service the model no longer has, or a new one that failed).
    async fn remove_service(&self, app: &str, service: &str) -> Result<(), TargetError> {
        let _ = (app, service);
        Ok(())
    }

    /// Restarts a replica in place.
    async fn restart(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        let _ = (id, grace);
        Err(whole_services())
    }

    /// Stops a replica (with `grace` before it is killed) and keeps it, out of rotation.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        let _ = (id, grace);
        Err(whole_services())
    }

    /// Looks again at which replicas serve published ports (one started again by hand and
    /// past its checks goes back in rotation).
    async fn rotate(&self) {}

    /// Removes everything `app` made on the target (with `volumes`, its data too) and returns
    /// what was removed.
    async fn down(&self, app: &str, volumes: bool) -> Result<Vec<String>, TargetError>;

    /// Drains a replica that is leaving, saying when requests were still open after `grace`.
    async fn drain_leaving(&self, id: &str, grace: Duration) {
        let open = self.drain(id, grace).await;
        if open > 0 {
            tracing::warn!(
                replica = id,
                open,
                "stopping a replica with requests still open after its grace period"
            );
        }
    }

    /// Drains and removes a replica: what retiring one means on every target.
    async fn retire(&self, id: &str, grace: Duration) {
        self.drain_leaving(id, grace).await;
        if let Err(e) = self.remove(id, grace).await {
            tracing::warn!(replica = id, error = %e, "cannot stop and remove a retired replica");
        }
    }
}
