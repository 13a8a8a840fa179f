//! The deploy job's wire shapes: what a plan says, how a rollout reports its steps as they
//! happen (NDJSON progress) and when it ends, how a release ended in the ledger; and the per-app
//! rollout lock that deploys, rollbacks, automatic updates, self-healing and alert holds share.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// What to do with one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Nothing runs yet: create this many replicas.
    Create { replicas: u32 },
    /// Replace every replica (a rolling update), for these reasons.
    Recreate { reasons: Vec<String> },
    /// Same definition, another replica count.
    Scale { from: u32, to: u32 },
    /// Replace only these replicas (stopped, or changed by hand), for these reasons.
    Repair {
        replicas: Vec<u32>,
        reasons: Vec<String>,
    },
    /// Not in the Compose file any more (or never was): remove its containers.
    Remove { replicas: u32 },
    /// Up to date.
    Unchanged,
}

impl Action {
    /// The action's name as reports show it (`create`, `recreate`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Recreate { .. } => "recreate",
            Self::Scale { .. } => "scale",
            Self::Repair { .. } => "repair",
            Self::Remove { .. } => "remove",
            Self::Unchanged => "unchanged",
        }
    }
}

/// The plan for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServicePlan {
    pub service: String,
    #[serde(flatten)]
    pub action: Action,
    /// What the registry names for the service's tag, when it is not what the engine has (or
    /// the registry could not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryCheck>,
}

/// A service's tag in its registry against the engine's copy (`capstan plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryCheck {
    /// The image reference (`ghcr.io/acme/api:main`).
    pub image: String,
    /// The digest the engine's copy was pulled as; `None` when it has none from this
    /// repository (built here, or not on the engine).
    pub local_digest: Option<String>,
    /// The digest the registry names for the tag now.
    pub registry_digest: Option<String>,
    /// The deploy pulls it (`pull_policy: always`, an elapsed `every_<duration>`, `--pull`).
    pub pulled: bool,
    /// Why the registry could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One use of a host-level feature (a bind mount, `privileged`, a capability, ...) that the
/// deploy policy does not let this deploy make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    /// The Compose key (`services.web.privileged`).
    pub key: String,
    /// Where it is written (`compose.yaml:7:5`), when the file is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// What it does, for people.
    pub message: String,
    /// What an admin allows to permit it (`capstan policy allow APP FEATURE`); absent when
    /// nothing can (a bind source that does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<String>,
}

/// The plan for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    /// Per service, in name order.
    pub services: Vec<ServicePlan>,
    /// Services in start order: each level only depends on earlier levels; the services of a
    /// level proceed in parallel.
    pub levels: Vec<Vec<String>>,
    /// What the deploy policy would refuse, for whoever asked for the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// What the deploy does otherwise than one might expect, and why (`web: rolls
    /// stop-first: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Plan {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.services.iter().all(|s| s.action == Action::Unchanged)
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    RolledBack,
}

impl Outcome {
    /// The ledger's result for a release that ended this way.
    pub fn result(self) -> ReleaseResult {
        match self {
            Self::Succeeded => ReleaseResult::Succeeded,
            Self::Failed => ReleaseResult::Failed,
            Self::RolledBack => ReleaseResult::RolledBack,
        }
    }
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub app: String,
    pub release: i64,
    pub outcome: Outcome,
    pub services: Vec<ServiceReport>,
    /// What failed and why (the container's last log lines, exit code or health output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to one service.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceReport {
    pub service: String,
    /// The plan's action (`create`, `recreate`, `scale`, `repair`, `remove`, `unchanged`), or
    /// `none` for a service the model does not have.
    pub action: String,
    pub steps: Vec<String>,
    pub seconds: f64,
}

/// One step of a deploy, as it happens (a line of the NDJSON progress stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub service: String,
    /// What kind of step this is: clients decide from it, never from the message's words.
    #[serde(default)]
    pub step: Step,
    /// The step for a person to read.
    pub message: String,
}

/// The kinds of rollout steps.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A rolling update of the service begins (the message says why).
    Rolling,
    /// A replica started and its health gate is being waited on.
    Waiting,
    /// A new replica passed its health gate.
    Ready,
    /// A batch of a rolling update replaced its replicas.
    Replaced,
    /// A replica was taken out and removed.
    Removed,
    /// A replica this rollout had replaced was put back as it was.
    RolledBack,
    /// A batch failed; the message says what the rollout does next.
    Failed,
    /// A step older clients sent without a kind.
    #[default]
    #[serde(other)]
    Other,
}

impl Step {
    /// Whether the service's work is finished at this step (nothing more is awaited for it
    /// unless another step follows).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::Replaced | Self::Removed | Self::RolledBack
        )
    }
}

/// How a release ended, as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseResult {
    /// Being deployed now.
    Running,
    Succeeded,
    Failed,
    RolledBack,
    /// The app was taken down (`capstan down`): self-healing leaves it down.
    Down,
}

impl ReleaseResult {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Down => "down",
        }
    }

    /// The result a ledger row spells `s`; `None` for a spelling no version wrote.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::RolledBack,
            Self::Down,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for ReleaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The apps whose rollout (deploy, rollback, down, automatic update) runs now: one at a time per
/// app. Self-healing leaves a held app alone and alert rules hold their health alerts for it.
/// Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct RolloutLocks(Arc<Mutex<BTreeSet<String>>>);

/// One app's rollout lock, released when dropped.
#[derive(Debug)]
pub struct RolloutLock {
    locks: RolloutLocks,
    app: String,
}

impl RolloutLocks {
    /// Takes `app`'s lock; `None` while someone else holds it.
    pub fn hold(&self, app: &str) -> Option<RolloutLock> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(app.to_owned()).then(|| RolloutLock {
            locks: self.clone(),
            app: app.to_owned(),
        })
    }

    /// Whether `app`'s lock is held now.
    pub fn is_held(&self, app: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(app)
    }

    /// The apps held now.
    pub fn held(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RolloutLock {
    fn drop(&mut self) {
        self.locks
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_lock_is_taken_once_and_released_when_dropped() {
        let locks = RolloutLocks::default();
        let held = locks.hold("shop").unwrap();
        assert!(locks.hold("shop").is_none(), "one rollout per app");
        assert!(locks.clone().is_held("shop"), "clones share the set");
        assert!(locks.hold("blog").is_some(), "other apps are free");
        drop(held);
        assert!(!locks.is_held("shop"));
        assert!(locks.hold("shop").is_some());
    }

    #[test]
    fn progress_lines_carry_their_step_and_old_lines_still_decode() {
        let line = serde_json::to_string(&Progress {
            service: "web".into(),
            step: Step::RolledBack,
            message: "replica 1 rolled back".into(),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"service":"web","step":"rolled_back","message":"replica 1 rolled back"}"#
        );
        let old: Progress = serde_json::from_str(r#"{"service":"web","message":"x"}"#).unwrap();
        assert_eq!(old.step, Step::Other);
        let newer: Progress =
            serde_json::from_str(r#"{"service":"web","step":"teleported","message":"x"}"#).unwrap();
        assert_eq!(newer.step, Step::Other, "an unknown step is not an error");
        assert!(Step::Ready.is_done() && !Step::Waiting.is_done());
    }

    #[test]
    fn release_results_keep_the_ledgers_spelling() {
        for r in [
            ReleaseResult::Running,
            ReleaseResult::Succeeded,
            ReleaseResult::Failed,
            ReleaseResult::RolledBack,
            ReleaseResult::Down,
        ] {
            assert_eq!(ReleaseResult::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Outcome::RolledBack.result().as_str(), "rolled_back");
        assert_eq!(ReleaseResult::parse("exploded"), None);
    }
}

/// What `capstan stop`, `start` or `restart` did to an app's replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Operated {
    pub app: String,
    /// `stop`, `start` or `restart`.
    pub operation: String,
    /// Each replica it acted on, in the order it did.
    pub replicas: Vec<OperatedReplica>,
}

/// One replica `capstan stop`, `start` or `restart` acted on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OperatedReplica {
    pub service: String,
    pub replica: u32,
    /// Its container's name.
    pub name: String,
    /// What it is now: `running`, `exited`, ...
    pub state: String,
    /// What was done: `stopped`, `started`, `restarted`, or `already stopped` / `already
    /// running`.
    pub done: String,
}
