//! The fleet's hosts as the API and CLI show them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/hosts`: a host that joined the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetHost {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `connected` while its agent's connection is up, else `away`.
    pub state: String,
    /// The engine its agent reported (`docker 20.10.24, api 1.41`).
    pub engine: String,
    /// Where its connection comes (or last came) from.
    pub address: String,
    pub joined: DateTime<Utc>,
    pub last_contact: Option<DateTime<Utc>>,
    /// `sha256:<hex>` of its key's certificate: what the hub knows it by.
    pub fingerprint: String,
    /// Per stream (`events`, `logs`, `metrics`): how many seconds behind the hub was, as the
    /// agent's last hello said: the age of the oldest record the hub had not taken (0: caught
    /// up). Empty until the agent says hello after the hub started.
    #[serde(default)]
    pub lag: BTreeMap<String, f64>,
    /// Its 1-minute load average, as the metrics it shipped last say (none: it ships none,
    /// or none lately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    /// How many of its containers those metrics measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<u64>,
    /// The alert rules firing for it now (those whose labels name it as `host`).
    #[serde(default)]
    pub alerts: Vec<String>,
}

/// `POST /api/v1/hosts/join-tokens`: what the token is to carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJoinToken {
    /// The labels the host gets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How long it may be used (`10m`, `1h`; default `1h`, at most `7d`).
    #[serde(default)]
    pub ttl: Option<String>,
    /// How many hosts it lets in, each once (default 1; at most 1000): a Kubernetes
    /// DaemonSet's nodes join with one token from a Secret.
    #[serde(default)]
    pub uses: Option<u32>,
}

/// A join token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinTokenIssued {
    /// `capstan-join-1.<hub fingerprint>.<id>.<secret>`: give it to `capstan agent --token`.
    pub token: String,
    /// `sha256:<hex>` of the hub's certificate, which the token pins.
    pub hub_fingerprint: String,
    pub expires: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    /// How many hosts it lets in.
    pub uses: u32,
}
