use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One container's resource use over a recent window (`capstan top`,
/// `GET /api/v1/metrics/containers`). Rates are `None` until two readings exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    pub image: String,
    /// CPU used, in cores (1.0 is one core busy), over the window.
    pub cpu_cores: Option<f64>,
    /// Share of CFS periods that were throttled over the window (0 to 1).
    pub cpu_throttled: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub network_rx_bytes_per_second: Option<f64>,
    pub network_tx_bytes_per_second: Option<f64>,
    pub block_read_bytes_per_second: Option<f64>,
    pub block_write_bytes_per_second: Option<f64>,
    pub threads: Option<u64>,
    pub oom_events: Option<u64>,
    /// The readings the rates come from: the oldest within the window, and the newest.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// `GET /api/v1/metrics/query`: a query evaluated over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsResult {
    pub query: String,
    /// `raw` (every sweep, the last hour) or `minute` (per-minute figures, the last week).
    pub resolution: String,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub step_seconds: f64,
    pub series: Vec<MetricSeries>,
}

/// One series of a [`MetricsResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricSeries {
    pub labels: std::collections::BTreeMap<String, String>,
    /// `(time, value)`, oldest first.
    pub points: Vec<(chrono::DateTime<chrono::Utc>, f64)>,
}
