//! How a service's containers run and roll: `healthcheck:`, `deploy:` (replicas, update and rollback settings, resources, restart policy), `ulimits:`, `logging:`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::long;
use crate::de;

/// `healthcheck:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; a string means CMD-SHELL.
    #[serde(
        default,
        deserialize_with = "health_test",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable: Option<bool>,
}

fn health_test<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::String(s) => Ok(vec!["CMD-SHELL".into(), s]),
        other => Vec::<String>::deserialize(other).map_err(serde::de::Error::custom),
    }
}

/// `deploy:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// `update_config:` / `rollback_config:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub parallelism: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// `rollback`, `pause` or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    /// `start-first` or `stop-first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// `resources:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceSet>,
}

/// Limits or reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSet {
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<i64>,
}

/// `restart_policy:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// An ulimit: one number for both, or soft and hard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UlimitInput")]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

enum UlimitInput {
    Single(i64),
    Pair(UlimitPair),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UlimitPair {
    soft: i64,
    hard: i64,
}

by_kind!(UlimitInput {
    J::Number(n) => n.as_i64().map(UlimitInput::Single).ok_or_else(|| format!("{n} is not an integer")),
    v @ J::Object(_) => long(v).map(UlimitInput::Pair),
    other => Err(format!("expected a number or soft/hard, found {other}")),
});

impl TryFrom<UlimitInput> for Ulimit {
    type Error = String;
    fn try_from(u: UlimitInput) -> Result<Self, String> {
        Ok(match u {
            UlimitInput::Single(n) => Ulimit { soft: n, hard: n },
            UlimitInput::Pair(UlimitPair { soft, hard }) => Ulimit { soft, hard },
        })
    }
}

/// `logging:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
}
