//! Health gates: a new replica counts only once it is healthy (with a healthcheck) or has run
//! steadily for `update_config.monitor` (without one). Waits wake on the target's events, with
//! a timer as the fallback.

use std::time::{Duration, Instant};

use capstan_compose::model::Service;
use capstan_model::{Event, Step};
use tokio::sync::broadcast;

use super::service::{Rollout, update_setting};
use super::steps;
use crate::error::{GateError, LaunchError};
use crate::target::{Target, Unit};

/// How long a replica without a healthcheck must run to count as started, by default.
const DEFAULT_MONITOR: Duration = Duration::from_secs(2);
/// The longest a health gate waits, whatever the healthcheck's timings.
const LONGEST_GATE: Duration = Duration::from_mins(5);
/// The longest `update_config.monitor` honoured: a replica that ran a day is running.
const LONGEST_MONITOR: Duration = Duration::from_hours(24);

/// A service's health gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    /// Whether the service has a healthcheck the gate waits on.
    healthcheck: bool,
    /// How long a replica without one must run.
    monitor: Duration,
    /// How long the gate waits at most.
    limit: Duration,
}

impl Gate {
    /// The gate of `service`: its healthcheck's timings (interval + timeout per retry, after
    /// the start period) or `update_config.monitor`.
    pub(crate) fn of(service: &Service) -> Self {
        let monitor = update_setting(service, |u| u.monitor.clone())
            .and_then(|m| capstan_model::parse_duration_nanos(&m).ok())
            .map_or(DEFAULT_MONITOR, nanos)
            .min(LONGEST_MONITOR);
        let check = service.healthcheck.as_ref().filter(|h| {
            h.disable != Some(true) && h.test.first().map(String::as_str) != Some("NONE")
        });
        let Some(h) = check else {
            return Self {
                healthcheck: false,
                monitor,
                limit: monitor + Duration::from_secs(30),
            };
        };
        let timing = |v: &Option<String>, default: Duration| {
            v.as_deref()
                .and_then(|d| capstan_model::parse_duration_nanos(d).ok())
                .map_or(default, nanos)
        };
        // saturating: `retries` and the timings are the Compose file's word, any size
        let round = timing(&h.interval, Duration::from_secs(30))
            .saturating_add(timing(&h.timeout, Duration::from_secs(30)));
        let tries = u32::try_from(h.retries.unwrap_or(3).max(1)).unwrap_or(u32::MAX);
        let limit = timing(&h.start_period, Duration::ZERO)
            .saturating_add(round.saturating_mul(tries.saturating_add(1)))
            .saturating_add(Duration::from_secs(10))
            .min(LONGEST_GATE);
        Self {
            healthcheck: true,
            monitor,
            limit,
        }
    }

    /// How long the gate waits at most for one replica.
    pub(super) fn limit(&self) -> Duration {
        self.limit
    }

    /// How long a replica without a healthcheck must run.
    pub(super) fn monitor(&self) -> Duration {
        self.monitor
    }

    /// Whether the gate waits on a healthcheck.
    pub(super) fn has_healthcheck(&self) -> bool {
        self.healthcheck
    }

    /// Waits until replica `id` (called `name` in messages) passes.
    ///
    /// # Errors
    /// Why it did not: it exited, turned unhealthy, vanished or took too long.
    pub(crate) async fn wait(
        &self,
        target: &dyn Target,
        id: &str,
        name: &str,
    ) -> Result<(), GateError> {
        let deadline = Instant::now() + self.limit;
        let mut running_since: Option<Instant> = None;
        // subscribed before the first look, so no event between the two is missed
        let mut events = target.subscribe();
        loop {
            let status = target
                .status(id)
                .await?
                .ok_or_else(|| GateError::Vanished {
                    name: name.to_owned(),
                })?;
            match status.state.as_str() {
                "exited" | "dead" => {
                    return Err(GateError::Exited {
                        name: name.to_owned(),
                        code: status.exit_code,
                    });
                }
                "running" => {
                    let since = *running_since.get_or_insert_with(Instant::now);
                    match (self.healthcheck, status.health.as_deref()) {
                        (true, Some("healthy")) => return Ok(()),
                        (true, Some("unhealthy")) => {
                            return Err(GateError::Unhealthy {
                                name: name.to_owned(),
                                output: status
                                    .health_output
                                    .unwrap_or_else(|| "no healthcheck output".into()),
                            });
                        }
                        (false, _) if since.elapsed() >= self.monitor => return Ok(()),
                        _ => {}
                    }
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let name = name.to_owned();
                return Err(match status.health_output {
                    Some(output) => GateError::NotHealthyInTime { name, output },
                    None => GateError::NotReadyInTime { name },
                });
            }
            let mut pause = if events.is_some() {
                // a fallback only: the replica's events wake us
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            if !self.healthcheck
                && let Some(since) = running_since
            {
                pause = pause.min(self.monitor.saturating_sub(since.elapsed()));
            }
            next_event(events.as_mut(), id, pause).await;
        }
    }
}

fn nanos(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

impl Rollout<'_> {
    /// Creates and starts one replica, waits for its gate and puts it in rotation; returns its
    /// id. A replica that fails is removed, and the error carries its last log lines.
    pub(super) async fn launch(
        &self,
        unit: Unit<'_>,
        service: &Service,
    ) -> Result<String, LaunchError> {
        let target = &*self.deployer.target;
        let created = target.create(unit).await.map_err(LaunchError::Create)?;
        let (id, name) = (&created.id, &created.name);
        if let Err(source) = target.start(id).await {
            let logs = target.last_logs(id, 20).await;
            target.discard(id).await;
            return Err(LaunchError::Start {
                name: name.clone(),
                source,
                logs,
            });
        }
        let gate = Gate::of(service);
        steps::send(
            self.deployer.progress.as_ref(),
            unit.service,
            Step::Waiting,
            &format!(
                "{name} started, waiting until it is {}",
                if gate.healthcheck {
                    "healthy"
                } else {
                    "running steadily"
                }
            ),
        );
        if let Err(source) = gate.wait(target, id, name).await {
            let logs = target.last_logs(id, 20).await;
            target.discard(id).await;
            return Err(LaunchError::Gate {
                name: name.clone(),
                source,
                logs,
            });
        }
        target.admit(id, unit).await;
        Ok(created.id)
    }
}

/// Waits up to `pause` for an event of replica `id` (without a subscription, just waits).
async fn next_event(events: Option<&mut broadcast::Receiver<Event>>, id: &str, pause: Duration) {
    let Some(rx) = events else {
        tokio::time::sleep(pause).await;
        return;
    };
    let deadline = tokio::time::Instant::now() + pause;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if e.actor == id => return,
            Ok(Ok(_)) => {}
            // lagged: look now; closed: the daemon is stopping, fall back to the timer
            Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => return,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: &str) -> Service {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_gate_waits_on_the_healthcheck_or_on_monitor() {
        let plain = Gate::of(&service(r#"{"image": "x"}"#));
        assert!(!plain.healthcheck);
        assert_eq!(plain.monitor, DEFAULT_MONITOR);
        assert_eq!(plain.limit, DEFAULT_MONITOR + Duration::from_secs(30));

        let monitored = Gate::of(&service(
            r#"{"image": "x", "deploy": {"update_config": {"monitor": "5s"}}}"#,
        ));
        assert_eq!(monitored.monitor, Duration::from_secs(5));

        let checked = Gate::of(&service(
            r#"{"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "timeout": "2s", "retries": 2, "start_period": "4s"}}"#,
        ));
        assert!(checked.healthcheck);
        // start period + (interval + timeout) per try, one more try, and ten seconds of slack
        assert_eq!(checked.limit, Duration::from_secs(4 + 3 * 3 + 10));

        let disabled = Gate::of(&service(
            r#"{"image": "x", "healthcheck": {"disable": true}}"#,
        ));
        assert!(!disabled.healthcheck, "a disabled healthcheck is no gate");
        let none = Gate::of(&service(
            r#"{"image": "x", "healthcheck": {"test": ["NONE"]}}"#,
        ));
        assert!(!none.healthcheck);

        let slow = Gate::of(&service(
            r#"{"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "10m"}}"#,
        ));
        assert_eq!(slow.limit, LONGEST_GATE);

        // timings and retries of any size: bounded, not an overflow (which once left a release
        // `running` for good)
        let huge = Gate::of(&service(
            r#"{"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "100000d", "timeout": "100000d", "start_period": "100000d", "retries": 9223372036854775807}, "deploy": {"update_config": {"monitor": "100000d"}}}"#,
        ));
        assert_eq!(huge.limit, LONGEST_GATE);
        assert_eq!(huge.monitor, LONGEST_MONITOR);
    }
}
