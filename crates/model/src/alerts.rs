//! Alerts: rules over metrics, logs and events, and the alerts they raise.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A label name Prometheus and Alertmanager accept (`[a-zA-Z_][a-zA-Z0-9_]*`), not one of the
/// reserved `__` names.
pub fn is_label_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Where an alert is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// The condition has held for `for`: notified.
    Firing,
    /// It stopped holding (for `keep_firing_for`).
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's condition holding for one set of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub rule: String,
    pub state: AlertState,
    /// The rule's labels and the instance's (container `name`, `app`, `service`, ...).
    pub labels: BTreeMap<String, String>,
    /// The rule's annotations, filled in.
    pub annotations: BTreeMap<String, String>,
    /// The figure that made it hold (a metric's value, a count of lines or restarts).
    pub value: Option<f64>,
    /// Since when the condition holds.
    pub active_since: DateTime<Utc>,
    /// When it started firing.
    pub fired_at: Option<DateTime<Utc>>,
    /// Held back while its app rolls out: it fires only if the condition outlives the rollout.
    pub held: bool,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}

/// A rule as the API and `capstan alerts rules` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRuleInfo {
    pub name: String,
    /// `metric`, `logs` or `event`.
    pub kind: String,
    /// The condition in words (`rate(...) > 0.9`, `level:error > 10 in 5m`, `oom`).
    pub condition: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub keep_firing_for: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `builtin`, `config` or `api`.
    pub source: String,
    /// Alerts of this rule firing now.
    pub firing: usize,
}

/// `GET /api/v1/alerts/rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRules {
    pub rules: Vec<AlertRuleInfo>,
}

/// `POST /api/v1/alerts/rules/{name}/test`: the rule evaluated now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleTest {
    pub rule: String,
    /// The condition holds now for at least one set of labels.
    pub holds: bool,
    /// Whether an alert would be firing (the condition held for `for`, nothing holds it back).
    pub would_fire: bool,
    /// Why, in words.
    pub reason: String,
    /// The sets of labels it holds for, with their figures.
    pub instances: Vec<RuleTestInstance>,
}

/// One set of labels a tested rule holds for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleTestInstance {
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    /// What the alert for these labels is now (`none` when it is not yet tracked).
    pub state: String,
}
