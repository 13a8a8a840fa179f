//! `[metrics]` of capstan.toml: whether and how often container metrics are read, from where,
//! and whether their history is kept. The interval is parsed when the file is read.

use std::time::Duration;

use capstan_model::{ConfigDuration, ConfigError};
use serde::Deserialize;

use crate::{CollectorConfig, Source};

/// The shortest interval between readings.
const SHORTEST_INTERVAL: Duration = Duration::from_secs(1);
/// The interval by default.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether to collect container metrics at all (default true).
    #[serde(default)]
    pub collect: Option<bool>,
    /// Between readings (`5s` by default, at least `1s`).
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    /// `auto` (default: cgroup files when the engine is on this host), `cgroups`, or `engine`
    /// (its stats API, for a remote engine).
    #[serde(default)]
    pub source: Option<String>,
    /// Keep recent history in `<data>/metrics.db` (default true): every reading for an hour,
    /// per-minute figures for a week.
    #[serde(default)]
    pub history: Option<bool>,
}

impl MetricsConfig {
    /// The collector's settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `metrics.interval` or `metrics.source`.
    pub fn collector(&self) -> Result<CollectorConfig, ConfigError> {
        let interval = self.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        if interval < SHORTEST_INTERVAL {
            return Err(ConfigError::new("metrics.interval", "at least 1s"));
        }
        let source = match self.source.as_deref().unwrap_or("auto") {
            "auto" => Source::Auto,
            "cgroups" => Source::Cgroups,
            "engine" => Source::Engine,
            other => {
                return Err(ConfigError::new(
                    "metrics.source",
                    format!("{other:?} is not auto, cgroups or engine"),
                ));
            }
        };
        Ok(CollectorConfig {
            source,
            interval,
            ..CollectorConfig::default()
        })
    }
}
