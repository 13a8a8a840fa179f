//! Container metrics, collected cheaply: each running container's cgroup files (v1 or v2,
//! cgroupfs or systemd driver) and its network namespace's `net/dev`, read directly every few
//! seconds (a few small files per container, not the engine's stats API), and exported in the
//! Prometheus text format under cAdvisor's names so that existing dashboards work; the host's
//! own figures under node_exporter's.

pub mod cgroup;
mod collector;
mod config;
pub mod history;
mod host;
pub mod query;
mod stats_api;

pub use capstan_model::{Exposition, Sample};
pub use collector::{CollectorConfig, ContainerSample, Metrics, Source, label_name};
pub use config::MetricsConfig;
pub use history::History;
pub use host::render_host;
pub use query::Query;
