//! The log job: every line of every container, read from the engine's `json-file` logs (or
//! its logs API for other drivers and remote engines, or a Kubernetes node's CRI logs), stored exactly once in an embedded,
//! time-partitioned tantivy store, searchable with a small query language, followed live, and
//! shipped at-least-once by sinks with cursors of their own. It never saves a read position
//! before the lines it covers are durable, and never serves HTTP itself.

pub mod api;
mod collect;
pub mod config;
pub mod cri;
pub mod jsonfile;
pub mod multiline;
pub mod origin;
pub mod parse;
pub mod query;
mod reader;
pub mod rotations;
pub mod sinks;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod upkeep;

pub use collect::{
    Cluster, Collector, ContainerLoss, Options, PodLabels, RotatedAway, Rule, Stats, StatsSnapshot,
};
pub use config::{LogRule, LogsConfig};
pub use origin::Origin;
pub use query::LogQuery;
pub use store::{Checkpoint, Entry, PartitionMeta, Store};
pub use tail::{Format, Position, Tailer};
