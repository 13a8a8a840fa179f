use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the engine is reachable, `degraded` otherwise.
    pub status: String,
    /// capstan's own version.
    pub version: String,
    /// The Docker engine.
    pub engine: EngineHealth,
    /// The event journal.
    pub journal: JournalHealth,
}

/// Reachability of the Docker engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngineHealth {
    /// The engine address capstan uses (`unix:///var/run/docker.sock`, `tcp://...`).
    pub host: String,
    /// Whether `/_ping` answered just now.
    pub reachable: bool,
    /// Engine version, e.g. `20.10.24`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Negotiated API version, e.g. `1.41`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Why the engine is not reachable, with what to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// State of the event journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JournalHealth {
    /// Whether the event stream is connected now.
    pub connected: bool,
    /// Events stored so far.
    pub events: i64,
    /// Time of the newest stored engine event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event: Option<DateTime<Utc>>,
    /// How many times the stream was re-established since start.
    pub reconnects: u64,
}
