//! Log lines as the API serves them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One stored log line with where it came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// `stdout` or `stderr`.
    pub stream: String,
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
    pub host: String,
    pub container_id: String,
    pub container: String,
    pub image: String,
    pub image_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// Allowed labels of the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `GET /api/v1/logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    /// Matching lines, newest first.
    pub lines: Vec<LogLine>,
    /// How many lines matched in all (within the time range).
    pub total: u64,
}
