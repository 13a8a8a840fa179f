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
    /// Its containers now, and how many of them run.
    pub containers: usize,
    pub running: usize,
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
