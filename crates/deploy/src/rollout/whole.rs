//! A service's part of a release on a target whose orchestrator replaces replicas itself (a
//! Swarm service): the engine hands it the whole definition, gates on the replicas it then
//! shows (every one of the new definition, running and healthy, or running for `monitor`, and
//! none of the old), and decides what a failure becomes. The orchestrator never rolls back by
//! itself: a failed update is put back here, by applying the previous definition and gating on
//! it the same way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use capstan_compose::Project;
use capstan_model::{Action, Step};

use super::gate::Gate;
use super::service::{Rollout, update_setting};
use super::steps::{Failure, Steps};
use crate::plan::{desired_hash, replicas_of};
use crate::request::file_digests;

/// How often the gate looks at the orchestrator's replicas (a target shares one look among
/// the gates that ask at once: see `crate::Looks`).
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Time a cluster takes to schedule and pull, over a replica's own gate.
const SCHEDULING: Duration = Duration::from_mins(1);

impl Rollout<'_> {
    /// Applies `action` to service `name` through the orchestrator.
    pub(super) async fn apply_whole(
        &self,
        name: &str,
        action: &Action,
        steps: &mut Steps,
    ) -> Option<Failure> {
        let target = &self.deployer.target;
        let app = self.req.app();
        let project = &self.req.project;
        let (verb, replaces) = match action {
            Action::Unchanged | Action::Remove { .. } => return None,
            Action::Create { replicas } => (format!("creating {replicas} replica(s)"), false),
            Action::Recreate { reasons } => {
                (format!("rolling update: {}", reasons.join("; ")), true)
            }
            Action::Scale { from, to } => (format!("scaling from {from} to {to}"), true),
            Action::Repair { replicas, .. } => (
                format!("replacing replica(s) {}", super::steps::join(replicas)),
                true,
            ),
        };
        steps.push(Step::Rolling, verb);
        let before = self.failed_now(name).await;
        let unit = self.unit(project, name, 0, self.release, false);
        let applied = match target.apply_service(unit).await {
            Ok(()) => self.gate_whole(name, project, &before, steps).await,
            Err(e) => Err(e.to_string()),
        };
        let Err(why) = applied else {
            steps.push(Step::Ready, format!("{name} ready"));
            return None;
        };
        steps.push(Step::Failed, format!("{name} failed: {why}"));
        let message = format!("services.{name}: {why}");
        // what was there before: put back; a new service: taken out again
        let previous = self
            .previous
            .filter(|p| replaces && p.services.contains_key(name));
        let Some(previous) = previous else {
            if !replaces && let Err(e) = target.remove_service(&app, name).await {
                tracing::warn!(app, service = name, error = %e, "cannot remove a service that failed to start");
            }
            return Some(Failure {
                message,
                rolled_back: false,
            });
        };
        let before = self.failed_now(name).await;
        let back = self.unit(previous, name, 0, self.release, false);
        let restored = match target.apply_service(back).await {
            Ok(()) => self.gate_whole(name, previous, &before, steps).await,
            Err(e) => Err(e.to_string()),
        };
        match restored {
            Ok(()) => {
                steps.push(
                    Step::RolledBack,
                    format!("{name} is back on the previous release"),
                );
                Some(Failure {
                    message,
                    rolled_back: true,
                })
            }
            Err(e) => Some(Failure {
                message: format!("{message}; putting the previous release back failed too: {e}"),
                rolled_back: false,
            }),
        }
    }

    /// The replicas of `name` that have failed so far (a gate counts only new failures).
    async fn failed_now(&self, name: &str) -> BTreeSet<String> {
        self.deployer
            .target
            .service_progress(&self.req.app(), name)
            .await
            .map(|p| p.failed.into_iter().map(|(id, _, _)| id).collect())
            .unwrap_or_default()
    }

    /// Waits until service `name` runs `project`'s definition on every replica, passed its
    /// health gate; fails as soon as the orchestrator halts or a new replica fails.
    async fn gate_whole(
        &self,
        name: &str,
        project: &Project,
        failed_before: &BTreeSet<String>,
        steps: &mut Steps,
    ) -> Result<(), String> {
        let target = &self.deployer.target;
        let app = self.req.app();
        let Some(service) = project.services.get(name) else {
            return Ok(());
        };
        let hash = desired_hash(service, &file_digests(&self.req.files));
        let image = target
            .image_ids(project)
            .await
            .map_err(|e| e.to_string())?
            .remove(name);
        let gate = Gate::of(service);
        let want = (!service.is_global()).then(|| replicas_of(service));
        let parallelism = update_setting(service, |u| u.parallelism)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(1);
        let batches = want.unwrap_or(1).div_ceil(parallelism).max(1);
        let limit = gate
            .limit()
            .saturating_mul(batches)
            .saturating_add(SCHEDULING);
        let start = Instant::now();
        let mut waiting_said = false;
        loop {
            let progress = target
                .service_progress(&app, name)
                .await
                .map_err(|e| e.to_string())?;
            if let Some((id, _, why)) = progress
                .failed
                .iter()
                .find(|(id, h, _)| *h == hash && !failed_before.contains(id))
            {
                let logs = target.last_logs(id, 10).await;
                return Err(with_logs(why, &logs));
            }
            if let Some(why) = progress.halted {
                return Err(why);
            }
            let replicas: Vec<_> = target
                .observe(&app)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|r| r.service == name)
                .collect();
            let new: Vec<_> = replicas
                .iter()
                .filter(|r| r.spec_hash == hash && image.as_ref().is_none_or(|i| *i == r.image_id))
                .collect();
            let passed = new
                .iter()
                .filter(|r| {
                    r.state == "running"
                        && (r.health.as_deref() == Some("healthy")
                            || (!gate.has_healthcheck() && start.elapsed() >= gate.monitor()))
                })
                .count();
            let enough = want.map_or(!new.is_empty(), |w| passed == w as usize);
            if enough && passed == replicas.len() && !progress.updating {
                return Ok(());
            }
            if !waiting_said && !new.is_empty() {
                steps.push(
                    Step::Waiting,
                    format!(
                        "waiting for {} replica(s) of the new definition to pass their health gate",
                        want.map_or_else(|| "every node's".to_owned(), |w| w.to_string())
                    ),
                );
                waiting_said = true;
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "{passed} of {} replica(s) passed their health gate within {} s",
                    want.map_or_else(|| new.len().max(1).to_string(), |w| w.to_string()),
                    limit.as_secs()
                ));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}

fn with_logs(why: &str, logs: &str) -> String {
    if logs.trim().is_empty() {
        return why.to_owned();
    }
    format!("{why}; its last log lines:\n{logs}")
}
