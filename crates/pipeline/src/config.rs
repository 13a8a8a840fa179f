//! `[pipeline]` of capstan.toml: how builds run on this host.

use capstan_model::{ConfigDuration, ConfigSize};
use serde::Deserialize;

use crate::builder::{BuildOptions, BuilderChoice};

/// `[pipeline]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Builds at once on this host (1 by default: a build takes a small host's memory).
    #[serde(default)]
    pub builds: Option<usize>,
    /// `auto` (BuildKit where the engine has it, else the classic builder), `buildkit` or
    /// `classic`.
    #[serde(default)]
    pub builder: BuilderChoice,
    /// The longest a build may take, its deploy included (`30m` by default).
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// The memory each build step may use (`2GiB` by default).
    #[serde(default)]
    pub memory: Option<ConfigSize>,
}

impl PipelineConfig {
    /// Checks the section: bad input names its key.
    ///
    /// # Errors
    /// The first bad key.
    pub fn check(&self) -> Result<(), String> {
        if self.builds == Some(0) {
            return Err("pipeline.builds: at least 1".into());
        }
        if self
            .timeout
            .is_some_and(|t| t.0 < std::time::Duration::from_secs(10))
        {
            return Err("pipeline.timeout: at least 10s".into());
        }
        if self.memory.is_some_and(|m| m.0 < 6 << 20) {
            return Err("pipeline.memory: at least 6MiB (the engine's least)".into());
        }
        Ok(())
    }

    /// How builds run.
    pub fn options(&self) -> BuildOptions {
        let default = BuildOptions::default();
        BuildOptions {
            concurrency: self.builds.unwrap_or(default.concurrency),
            builder: self.builder,
            timeout: self.timeout.map_or(default.timeout, |t| t.0),
            memory: self.memory.map(|m| m.0 as i64).or(default.memory),
        }
    }
}
