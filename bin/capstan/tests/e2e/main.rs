//! End-to-end tests of the capstan binary against the run's real Docker engine and registry
//! (started by scripts/test). Tests whose names contain `own_engine` get an engine of their own
//! and run one at a time (see .config/nextest.toml).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod alerts;
mod api;
mod backups;
mod build;
mod dashboard;
mod day2;
mod deploy;
mod domains;
mod fleet;
mod hooks;
mod hostile;
mod image;
mod install;
mod journal;
mod kubernetes;
mod kubernetes_scenario;
mod logs;
mod logs_export;
mod metrics;
mod notify;
mod outage;
mod parity;
mod pipeline;
mod policy;
mod properties;
mod proxy;
mod pulls;
mod registries;
mod rollouts;
mod scan;
mod secrets;
mod security;
mod sinks;
mod swarm;
mod targets;
mod updates;

use std::path::Path;

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_capstan"))
}
