//! Backups of apps' volumes: the snapshots kept in the restic repository, and what a backup
//! or a restore did.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One snapshot of one of an app's volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// restic's id (`capstan restore --snapshot` takes it, or its first 8 characters).
    pub id: String,
    pub short_id: String,
    pub time: DateTime<Utc>,
    pub app: String,
    /// The app's volume (as its Compose file names it).
    pub volume: String,
}

/// What `capstan backup` took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupReport {
    pub app: String,
    /// One per volume.
    pub snapshots: Vec<Snapshot>,
    /// Snapshots the app's retention removed afterwards.
    pub forgotten: u64,
}

/// `POST /api/v1/apps/{app}/restore`: which snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A snapshot's id, or a prefix of it (at least 8 characters).
    pub snapshot: String,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreReport {
    pub app: String,
    pub snapshot: Snapshot,
    /// The services stopped around it (and started again).
    pub services: Vec<String>,
}
