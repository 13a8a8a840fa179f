//! Log lines as the API serves them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One stored log line with where it came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Position in capstan's store: increases with every line stored (sinks and tails resume
    /// from it).
    pub seq: u64,
    /// A stable id (container, file and offset): the same line always gets the same id.
    pub id: String,
    /// The engine's time of the line.
    pub time: DateTime<Utc>,
    /// The same, in ns since the epoch.
    pub time_nano: i64,
    /// The line as the container wrote it (pieces of a long line joined).
    pub raw: String,
    /// The message: the raw line, or the message field a parser found.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The level a parser found (`error`, `warn`, `info`, ...), lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Fields a parser found.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// The parser configured for the line could not read it (the raw text is kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parse_error: bool,
    /// The line (or a line of a multiline entry) was longer than `[logs] max_line`: `raw` holds
    /// its first part, the rest was dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Where it came from (its keys sit beside the line's own in JSON).
    #[serde(flatten)]
    pub origin: Origin,
}

/// The fields a query can match on an origin (besides `label.NAME`).
pub const ORIGIN_FIELDS: [&str; 15] = [
    "stream",
    "container_id",
    "container",
    "image",
    "image_id",
    "app",
    "service",
    "project",
    "host",
    "replica",
    "node",
    "task",
    "build",
    "namespace",
    "pod",
];

/// Where a line comes from: host, container, image, Compose and capstan labels, the allowed
/// labels and the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// A Swarm task's node (its hostname); empty for a container of the local engine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// A Swarm task's id; empty for a container of the local engine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// The build whose log this is (the pipeline's); empty for a container's line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build: String,
    /// A Kubernetes pod's namespace (a line read from a node's CRI logs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// A Kubernetes pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
}

impl Origin {
    /// The same origin for another stream.
    #[must_use]
    pub fn with_stream(&self, stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            ..self.clone()
        }
    }

    /// The value a query field names (one of [`ORIGIN_FIELDS`] or `label.NAME`); `None` when
    /// the name is not an origin field.
    pub fn field(&self, name: &str) -> Option<String> {
        let v = match name {
            "stream" => &self.stream,
            "container_id" => &self.container_id,
            "container" => &self.container,
            "image" => &self.image,
            "image_id" => &self.image_id,
            "app" => &self.app,
            "service" => &self.service,
            "project" => &self.project,
            "host" => &self.host,
            "node" => &self.node,
            "task" => &self.task,
            "build" => &self.build,
            "namespace" => &self.namespace,
            "pod" => &self.pod,
            "replica" => return Some(self.replica.map(|r| r.to_string()).unwrap_or_default()),
            _ => {
                let label = name.strip_prefix("label.")?;
                return Some(self.labels.get(label).cloned().unwrap_or_default());
            }
        };
        Some(v.clone())
    }

    /// Whether `name` is a field of origins.
    pub fn is_field(name: &str) -> bool {
        ORIGIN_FIELDS.contains(&name) || name.starts_with("label.")
    }
}

/// `GET /api/v1/logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    /// Matching lines, newest first (oldest first when asked with `after`).
    pub lines: Vec<LogLine>,
    /// How many lines matched in all (within the time range, wherever the page starts).
    pub total: u64,
    /// The next page's cursor when there are more lines: pass it as `before` (or as `after`,
    /// when this page was asked with `after`). Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /api/v1/logs/histogram`: matching lines counted per time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogHistogram {
    /// How long each bucket is.
    pub width_seconds: f64,
    /// Oldest first.
    pub buckets: Vec<HistogramBucket>,
}

/// One bucket of a [`LogHistogram`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistogramBucket {
    /// Where the bucket begins.
    pub time: chrono::DateTime<chrono::Utc>,
    pub count: u64,
}

/// One partition of the log store, as `GET /api/v1/logs/stats` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPartition {
    pub name: String,
    pub lines: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub oldest: chrono::DateTime<chrono::Utc>,
    pub newest: chrono::DateTime<chrono::Utc>,
    /// Its size on disk.
    pub bytes: u64,
}
