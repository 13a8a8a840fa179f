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
    /// How often to check during `start_period` (engine API 1.44 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
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
    /// `replicated` (the default) or `global`: one replica on every node of a cluster (on one
    /// engine, one replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where a cluster may place the replicas (one engine has one place: nothing to choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// `dnsrr` (what capstan runs: the name resolves to every replica) or `vip`, which needs
    /// the kernel's IPVS and is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
}

/// `deploy.placement:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// `node.role==worker`, `node.labels.zone!=east`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Spread over the values of a node attribute, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replicas_per_node: Option<i64>,
}

/// One placement preference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementPreference {
    /// `node.labels.zone`.
    pub spread: String,
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
    /// Reservations only: devices from the engine's drivers (GPUs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
}

/// A host device given to a container: `/dev/ttyUSB0`, `/dev/sda:/dev/xvda:r`, or the long
/// form with `source`, `target` and `permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Some of `r`, `w`, `m` (default `rwm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceLong {
    source: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    permissions: Option<String>,
}

by_kind!(Device {
    J::String(s) => {
        let mut parts = s.splitn(3, ':');
        let source = parts.next().unwrap_or_default().to_owned();
        Ok(Device {
            source,
            target: parts.next().map(str::to_owned),
            permissions: parts.next().map(str::to_owned),
        })
    },
    v @ J::Object(_) => long::<DeviceLong>(v).map(|d| Device {
        source: d.source,
        target: d.target,
        permissions: d.permissions,
    }),
    other => Err(format!("expected HOST[:CONTAINER[:PERMISSIONS]] or a mapping, found {other}")),
});

/// A device the engine's drivers give a container (`gpus`,
/// `deploy.resources.reservations.devices`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// A number of devices, or `all`.
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub count: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub device_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub capabilities: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
}

/// `gpus:`: `all`, or a list of requests (each for the `gpu` capability).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Gpus(pub Vec<DeviceRequest>);

by_kind!(Gpus {
    J::String(s) => if s == "all" {
        Ok(Gpus(vec![DeviceRequest {
            count: Some("all".into()),
            capabilities: vec!["gpu".into()],
            ..DeviceRequest::default()
        }]))
    } else {
        Err(format!("expected all or a list of device requests, found {s:?}"))
    },
    v @ J::Array(_) => long::<Vec<DeviceRequest>>(v).map(|list| {
        Gpus(
            list.into_iter()
                .map(|mut r| {
                    if r.capabilities.is_empty() {
                        r.capabilities = vec!["gpu".into()];
                    }
                    r
                })
                .collect(),
        )
    }),
    other => Err(format!("expected all or a list of device requests, found {other}")),
});

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

/// `blkio_config`: block IO weight and throttles, per device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blkio {
    /// 10 to 1000.
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<BlkioWeight>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<BlkioRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<BlkioRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<BlkioRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<BlkioRate>,
}

/// A device's relative block IO weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlkioWeight {
    pub path: String,
    #[serde(deserialize_with = "de::int")]
    pub weight: i64,
}

/// A device's throttle: bytes (a size, `12mb`) or operations per second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlkioRate {
    pub path: String,
    #[serde(deserialize_with = "de::text")]
    pub rate: String,
}

/// Microseconds, as `cpu_rt_period` and `cpu_rt_runtime` take them: an integer, or a
/// duration (`400ms`).
///
/// # Errors
/// Neither, said for the user.
pub fn micros(text: &str) -> Result<i64, String> {
    if let Ok(n) = text.trim().parse::<i64>() {
        return Ok(n);
    }
    capstan_model::parse_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|d| i64::try_from(d.as_micros()).map_err(|_| format!("{text:?} is out of range")))
}
