//! One service's part of a release: what its plan's action means, replica by replica.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use capstan_compose::Project;
use capstan_compose::model::{Service, UpdateConfig};
use capstan_model::{Action, ServiceReport, Step};

use super::Deployer;
use super::steps::{Failure, Steps};
use crate::DeployRequest;
use crate::target::{Replica, Unit};

/// The grace period of a service without `stop_grace_period` (Compose's default).
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// One release being applied: what every service's part shares.
pub(super) struct Rollout<'a> {
    pub(super) deployer: &'a Deployer,
    pub(super) req: &'a DeployRequest,
    /// The model now running, for rollbacks.
    pub(super) previous: Option<&'a Project>,
    pub(super) release: i64,
}

/// A setting of the service's `deploy.update_config`.
pub(super) fn update_setting<T>(
    service: &Service,
    f: impl Fn(&UpdateConfig) -> Option<T>,
) -> Option<T> {
    service.deploy.as_ref()?.update_config.as_ref().and_then(f)
}

/// `stop_grace_period`, in whole seconds as engines take it.
pub(crate) fn grace_of(service: &Service) -> Duration {
    service
        .stop_grace_period
        .as_deref()
        .and_then(|g| capstan_model::parse_duration_nanos(g).ok())
        .map_or(DEFAULT_GRACE, |ns| {
            Duration::from_secs(u64::try_from(ns / 1_000_000_000).unwrap_or(0))
        })
}

impl<'a> Rollout<'a> {
    /// The unit for replica `replica` of `service` in `project`'s definition.
    pub(super) fn unit(
        &self,
        project: &'a Project,
        service: &'a str,
        replica: u32,
        release: i64,
        beside: bool,
    ) -> Unit<'a> {
        Unit {
            request: self.req,
            project,
            service,
            replica,
            release,
            beside,
        }
    }

    /// Drains a replica and removes it.
    pub(super) async fn retire(&self, id: &str, grace: Duration) {
        self.deployer.target.retire(id, grace).await;
    }

    /// Drains a replica, moves it out of `unit`'s slot and stops it in the background; where
    /// it cannot be moved, it is stopped and removed here.
    pub(super) async fn set_aside(&self, id: &str, unit: Unit<'_>, grace: Duration) {
        let target = &self.deployer.target;
        target.drain_leaving(id, grace).await;
        match target.set_aside(id, unit).await {
            Ok(()) => {
                self.deployer.stop_in_background(
                    self.req.app(),
                    self.release,
                    id.to_owned(),
                    grace,
                );
            }
            Err(e) => {
                tracing::warn!(replica = id, error = %e, "cannot set a replica aside; stopping it first");
                if let Err(e) = target.remove(id, grace).await {
                    tracing::warn!(replica = id, error = %e, "cannot stop and remove a retired replica");
                }
            }
        }
    }

    /// Applies `action` to service `name`, whose replicas now are `have` (slot → id).
    pub(super) async fn apply_service(
        &self,
        name: &'a str,
        action: Action,
        have: BTreeMap<u32, String>,
    ) -> (ServiceReport, Option<Failure>) {
        let start = Instant::now();
        let project = &self.req.project;
        let mut steps = Steps::new(name, self.deployer.progress.clone());
        let Some(service) = project.services.get(name) else {
            return (
                ServiceReport {
                    service: name.into(),
                    action: "none".into(),
                    steps: steps.lines,
                    seconds: 0.0,
                },
                None,
            );
        };
        let grace = grace_of(service);
        let fresh: Vec<u32> = match &action {
            Action::Create { replicas } => (1..=*replicas).collect(),
            Action::Scale { from, to } if to > from => {
                (from + 1..=*to).filter(|r| !have.contains_key(r)).collect()
            }
            Action::Repair { replicas, .. } => replicas.clone(),
            _ => Vec::new(),
        };
        let mut failure = None;
        if self.deployer.target.orchestrates() {
            failure = self.apply_whole(name, &action, &mut steps).await;
        } else if let Action::Recreate { reasons } = &action {
            steps.push(
                Step::Rolling,
                format!("rolling update: {}", reasons.join("; ")),
            );
            failure = self
                .roll(name, service, &have, grace, &mut steps)
                .await
                .err();
        } else {
            if let Action::Scale { to, .. } = action {
                for (r, id) in have.iter().filter(|(r, _)| **r > to) {
                    let unit = self.unit(project, name, *r, self.release, false);
                    self.set_aside(id, unit, grace).await;
                    steps.push(Step::Removed, format!("removed replica {r}"));
                }
            }
            let launches = fresh.iter().map(|r| {
                let r = *r;
                let old = have.get(&r).cloned();
                async move {
                    if let Some(old) = old {
                        self.retire(&old, grace).await;
                    }
                    let unit = self.unit(project, name, r, self.release, false);
                    self.launch(unit, service).await.map(|_| r)
                }
            });
            for result in futures_util::future::join_all(launches).await {
                match result {
                    Ok(r) => steps.push(Step::Ready, format!("replica {r} ready")),
                    Err(e) => {
                        failure.get_or_insert(Failure {
                            message: format!("services.{name}: {e}"),
                            rolled_back: false,
                        });
                    }
                }
            }
        }
        (
            ServiceReport {
                service: name.into(),
                action: action.name().into(),
                steps: steps.lines,
                seconds: start.elapsed().as_secs_f64(),
            },
            failure,
        )
    }

    /// Retires every replica of a service the model no longer has.
    pub(super) async fn remove_service(&self, name: &str, running: &[Replica]) -> ServiceReport {
        let start = Instant::now();
        let mut steps = Steps::new(name, self.deployer.progress.clone());
        let target = &self.deployer.target;
        if target.orchestrates() {
            match target.remove_service(&self.req.app(), name).await {
                Ok(()) => steps.push(Step::Removed, format!("removed service {name}")),
                Err(e) => steps.push(Step::Failed, format!("cannot remove service {name}: {e}")),
            }
        }
        for r in running
            .iter()
            .filter(|r| r.service == name && !target.orchestrates())
        {
            let unit = self.unit(&self.req.project, name, r.replica, self.release, false);
            self.set_aside(&r.id, unit, DEFAULT_GRACE).await;
            steps.push(Step::Removed, format!("removed replica {}", r.replica));
        }
        ServiceReport {
            service: name.to_owned(),
            action: Action::Remove { replicas: 0 }.name().into(),
            steps: steps.lines,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}
