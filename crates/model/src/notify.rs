use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A notification channel and how its deliveries went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotifyChannel {
    pub name: String,
    /// `webhook`, `slack` or `email`.
    pub kind: String,
    /// The journal events it sends.
    pub events: Vec<String>,
    /// The sequence number of the last event delivered.
    pub cursor: u64,
    /// Messages delivered.
    pub sent: u64,
    /// Tries that failed (each retried).
    pub failed: u64,
    /// Messages the server refused for good (dropped, with a warning).
    pub rejected: u64,
    pub last_sent: Option<DateTime<Utc>>,
    /// The last failure, until a delivery succeeds.
    pub last_error: Option<String>,
}

/// `GET /api/v1/notify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotifyChannels {
    pub channels: Vec<NotifyChannel>,
}
