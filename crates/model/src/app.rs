use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One app in `GET /api/v1/apps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppSummary {
    /// The app (Compose project) name.
    pub name: String,
    /// Its newest release number.
    pub release: i64,
    /// How that release ended: `running`, `succeeded`, `failed`, `rolled_back`.
    pub result: String,
    /// When it was deployed.
    pub time: DateTime<Utc>,
    /// Its containers (a cluster's tasks) now, and how many of them run.
    pub containers: usize,
    pub running: usize,
    /// Where it runs: `local` (the engine capstan runs beside) or a target's name.
    #[serde(default = "local")]
    pub target: String,
}

fn local() -> String {
    "local".to_owned()
}

/// One replica of an app as its target shows it (`GET /api/v1/apps/{app}/replicas`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppReplica {
    pub service: String,
    /// Its slot, from 1.
    pub replica: u32,
    /// The target's id for it (a container's or a Swarm task's).
    pub id: String,
    pub name: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
    /// `healthy`, `unhealthy` or `starting` when it has a healthcheck.
    pub health: Option<String>,
    /// The node it runs on, on a target of several.
    pub node: Option<String>,
    /// The image it runs: an image id on one engine, a digest on a cluster.
    pub image: String,
    /// Where it answers on its node (`10.0.0.12:30001->80/tcp`), on a target whose replicas
    /// publish their own ports.
    pub endpoints: Vec<String>,
}

/// One entry of the release ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    pub app: String,
    pub number: i64,
    pub time: DateTime<Utc>,
    /// Who deployed it.
    pub actor: String,
    /// `running`, `succeeded`, `failed`, `rolled_back`.
    pub result: String,
    /// Where the model came from (files, content hash, git commit).
    pub source: serde_json::Value,
    /// Service → image id each service ran.
    pub images: serde_json::Value,
    /// What the deploy did per service, and the error if any.
    pub detail: serde_json::Value,
    /// The resolved Compose model it ran (what `capstan releases diff` and the dashboard
    /// compare).
    #[serde(default)]
    pub model: serde_json::Value,
}

/// `POST /api/v1/apps/{app}/build/{service}`: the image a build made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BuiltImage {
    /// The reference it was tagged with.
    pub image: String,
    /// Its id (`sha256:...`).
    pub id: String,
}
