//! Rolling updates: a service's replicas replaced in batches of `parallelism`, `delay` apart,
//! start-first unless `order: stop-first`; when a batch fails, `failure_action` says what
//! happens (rollback by default: the replicas already replaced get the previous release's
//! definition again).

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_compose::Project;
use capstan_compose::model::Service;
use capstan_model::Step;

use super::service::{Rollout, update_setting};
use super::steps::{Failure, Steps, join};
use crate::error::LaunchError;
use crate::plan::replicas_of;

/// What a rollout does when a batch fails (`update_config.failure_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureAction {
    /// Put back what the rollout replaced (the default).
    Rollback,
    /// Stop where it is.
    Pause,
    /// Go on with the next batch.
    Continue,
}

/// How a service rolls (`deploy.update_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    parallelism: usize,
    stop_first: bool,
    delay: Duration,
    on_failure: FailureAction,
}

impl Policy {
    fn of(service: &Service) -> Self {
        Self {
            parallelism: update_setting(service, |u| u.parallelism)
                .unwrap_or(1)
                .max(1) as usize,
            stop_first: update_setting(service, |u| u.order.clone()).as_deref()
                == Some("stop-first"),
            delay: update_setting(service, |u| u.delay.clone())
                .and_then(|d| capstan_model::parse_duration_nanos(&d).ok())
                .map_or(Duration::ZERO, |ns| {
                    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
                }),
            on_failure: match update_setting(service, |u| u.failure_action.clone()).as_deref() {
                Some("continue") => FailureAction::Continue,
                Some("pause") => FailureAction::Pause,
                _ => FailureAction::Rollback,
            },
        }
    }
}

impl<'a> Rollout<'a> {
    /// Rolls service `name` to the request's definition.
    pub(super) async fn roll(
        &self,
        name: &'a str,
        service: &'a Service,
        have: &BTreeMap<u32, String>,
        grace: Duration,
        steps: &mut Steps,
    ) -> Result<(), Failure> {
        let mut policy = Policy::of(service);
        policy.stop_first |= self.deployer.target.stops_first(service).is_some();
        let want = replicas_of(service);
        let replicas: Vec<u32> = (1..=want).collect();
        let mut done: Vec<u32> = Vec::new();
        for batch in replicas.chunks(policy.parallelism) {
            let result = self
                .replace_batch(
                    &self.req.project,
                    self.release,
                    name,
                    service,
                    batch,
                    have,
                    grace,
                    policy.stop_first,
                )
                .await;
            match result {
                Ok(()) => {
                    steps.push(
                        Step::Replaced,
                        format!(
                            "replica{} {} replaced",
                            if batch.len() == 1 { "" } else { "s" },
                            join(batch)
                        ),
                    );
                    done.extend_from_slice(batch);
                }
                Err(message) if policy.on_failure == FailureAction::Continue => {
                    steps.push(
                        Step::Failed,
                        format!(
                            "replicas {} failed, continuing as asked: {message}",
                            join(batch)
                        ),
                    );
                }
                Err(message) => {
                    steps.push(
                        Step::Failed,
                        format!("replicas {} failed: {message}", join(batch)),
                    );
                    if policy.on_failure == FailureAction::Pause {
                        return Err(Failure {
                            message: format!("services.{name}: rollout paused: {message}"),
                            rolled_back: false,
                        });
                    }
                    return Err(self.roll_back(name, &done, grace, message, steps).await);
                }
            }
            if !policy.delay.is_zero() {
                tokio::time::sleep(policy.delay).await;
            }
        }
        for (r, id) in have.iter().filter(|(r, _)| **r > want) {
            let unit = self.unit(&self.req.project, name, *r, self.release, false);
            self.set_aside(id, unit, grace).await;
            steps.push(Step::Removed, format!("removed replica {r}"));
        }
        Ok(())
    }

    /// Puts back the replicas in `done` with the previous release's definition, after a batch
    /// failed with `message`.
    async fn roll_back(
        &self,
        name: &'a str,
        done: &[u32],
        grace: Duration,
        message: LaunchError,
        steps: &mut Steps,
    ) -> Failure {
        let Some(prev) = self.previous.filter(|p| p.services.contains_key(name)) else {
            return Failure {
                message: format!("services.{name}: {message} (no earlier release to roll back to)"),
                rolled_back: false,
            };
        };
        let prev_service = &prev.services[name];
        let app = self.req.app();
        for r in done {
            let current: BTreeMap<u32, String> = self
                .deployer
                .target
                .observe(&app)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x.service == name)
                .map(|x| (x.replica, x.id))
                .collect();
            if let Err(e) = self
                .replace_batch(
                    prev,
                    self.release - 1,
                    name,
                    prev_service,
                    &[*r],
                    &current,
                    grace,
                    false,
                )
                .await
            {
                return Failure {
                    message: format!(
                        "services.{name}: {message}; and rolling replica {r} back failed too: {e}"
                    ),
                    rolled_back: false,
                };
            }
            steps.push(Step::RolledBack, format!("replica {r} rolled back"));
        }
        Failure {
            message: format!("services.{name}: {message}"),
            rolled_back: true,
        }
    }

    /// Replaces the replicas of one batch with replicas of `project`'s definition.
    #[allow(clippy::too_many_arguments)]
    async fn replace_batch(
        &self,
        project: &'a Project,
        release: i64,
        name: &'a str,
        service: &'a Service,
        batch: &[u32],
        have: &BTreeMap<u32, String>,
        grace: Duration,
        stop_first: bool,
    ) -> Result<(), LaunchError> {
        let target = &*self.deployer.target;
        let runs = batch.iter().map(|r| async move {
            let r = *r;
            let old = have.get(&r).cloned();
            if stop_first {
                if let Some(old) = &old {
                    self.retire(old, grace).await;
                }
                let unit = self.unit(project, name, r, release, false);
                return self.launch(unit, service).await.map(drop);
            }
            // start-first: the new replica runs beside the old one until it is ready; then the
            // old one leaves rotation and its slot, and stops in the background while the new
            // one takes its name and the next batch starts
            let unit = self.unit(project, name, r, release, true);
            let id = self.launch(unit, service).await?;
            if let Some(old) = &old {
                self.set_aside(old, unit, grace).await;
            }
            target
                .promote(&id, unit)
                .await
                .map_err(LaunchError::Promote)
        });
        let results = futures_util::future::join_all(runs).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, LaunchError>>()
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollout_policy_reads_update_config() {
        let plain: Service = serde_json::from_str(r#"{"image": "x"}"#).unwrap();
        assert_eq!(
            Policy::of(&plain),
            Policy {
                parallelism: 1,
                stop_first: false,
                delay: Duration::ZERO,
                on_failure: FailureAction::Rollback,
            }
        );
        let set: Service = serde_json::from_str(
            r#"{"image": "x", "deploy": {"update_config": {"parallelism": 3, "order": "stop-first", "delay": "2s", "failure_action": "pause"}}}"#,
        )
        .unwrap();
        assert_eq!(
            Policy::of(&set),
            Policy {
                parallelism: 3,
                stop_first: true,
                delay: Duration::from_secs(2),
                on_failure: FailureAction::Pause,
            }
        );
    }
}
