//! `[logs]` of capstan.toml: what is collected, how long it is kept, where it is shipped.
//! Durations and sizes are parsed when the file is read; [`LogsConfig::check`] refuses the
//! rest of what cannot work, naming the key.

use std::time::Duration;

use capstan_model::{ConfigDuration, ConfigError, ConfigSize};
use serde::Deserialize;

use crate::collect::{Options, Rule};

/// The least memory the pipeline needs.
const LEAST_MEMORY: u64 = 96 * 1024 * 1024;
/// How long lines are kept by default.
const DEFAULT_RETENTION: Duration = Duration::from_hours(7 * 24);
/// How much disk the store may use by default.
const DEFAULT_MAX_SIZE: u64 = 10 << 30;

/// `[logs]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Whether to collect at all (default true).
    #[serde(default)]
    pub collect: Option<bool>,
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every container.
    #[serde(default)]
    pub containers: Vec<String>,
    /// How long lines are kept (`7d` by default); whole hourly partitions are dropped.
    #[serde(default)]
    pub retention: Option<ConfigDuration>,
    /// How much disk the store may use (`10GiB` by default); the oldest partitions go first.
    #[serde(default)]
    pub max_size: Option<ConfigSize>,
    /// Container labels copied onto every line.
    #[serde(default)]
    pub labels: Vec<String>,
    /// What the log pipeline may hold in memory under a flood (`128MiB`, at least `96MiB`);
    /// beyond it, reading slows down and the engine's log file holds the rest.
    #[serde(default)]
    pub memory: Option<ConfigSize>,
    /// The longest line kept whole (`1MiB` by default, 16KiB to 64MiB): the first part of a
    /// longer one is stored marked `truncated` and the rest dropped. A multiline entry holds
    /// at most this much too.
    #[serde(default)]
    pub max_line: Option<ConfigSize>,
    /// The most lines a multiline entry joins (1,000 by default): a full entry ends there and
    /// the next line starts another.
    #[serde(default)]
    pub max_group_lines: Option<usize>,
    /// `auto` (the default: a container's json-file when capstan can open it, else the
    /// engine's logs API) or `api` (always the logs API).
    #[serde(default)]
    pub source: Option<String>,
    /// Parsers and multiline joiners for containers whose labels do not choose one; the first
    /// matching rule wins.
    #[serde(default)]
    pub rules: Vec<LogRule>,
    /// Where lines are shipped, each sink with its own cursor (`type` = file, clickhouse,
    /// elasticsearch, loki or http; see docs/logs.md).
    #[serde(default)]
    pub sinks: Vec<crate::sinks::SinkConfig>,
    /// A Kubernetes node's pod logs (`/var/log/pods` as the kubelet writes them): every
    /// container's CRI log under it is collected too (capstan as a DaemonSet sets it).
    #[serde(default)]
    pub pods: Option<std::path::PathBuf>,
    /// The Kubernetes target (a `[[targets]]` name) whose API says the pods' labels and
    /// annotations: the allowlisted labels (`labels`) go onto their lines, and
    /// `io.capstan.logs.parser` / `.multiline` annotations choose their parser.
    #[serde(default)]
    pub pod_labels_from: Option<String>,
}

/// `[[logs.rules]]`: which containers get which parser and multiline joiner.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogRule {
    /// The app (`io.capstan.app`) it applies to; a trailing `*` matches a prefix.
    #[serde(default)]
    pub app: Option<String>,
    /// The service.
    #[serde(default)]
    pub service: Option<String>,
    /// The container's name.
    #[serde(default)]
    pub container: Option<String>,
    /// The image reference.
    #[serde(default)]
    pub image: Option<String>,
    /// `json`, `logfmt`, `regex:...`, `grok:...` (see docs/logs.md).
    #[serde(default)]
    pub parser: Option<String>,
    /// `java`, `python`, `go`, or `start:REGEX`.
    #[serde(default)]
    pub multiline: Option<String>,
}

fn bad(key: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(key, message)
}

impl LogsConfig {
    /// How long lines are kept.
    pub fn retention(&self) -> Duration {
        self.retention.map_or(DEFAULT_RETENTION, |d| d.0)
    }

    /// How much disk the store may use, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_size.map_or(DEFAULT_MAX_SIZE, |s| s.0)
    }

    /// Refuses what cannot work: too little memory, an unknown source, a sink or rule that
    /// does not parse, two sinks of one name.
    ///
    /// # Errors
    /// The first [`ConfigError`], naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(m) = self.memory
            && m.0 < LEAST_MEMORY
        {
            return Err(bad(
                "logs.memory",
                format!(
                    "{}MiB is below the least the pipeline needs (96MiB)",
                    m.0 >> 20
                ),
            ));
        }
        if let Some(m) = self.max_line
            && !(16 * 1024..=64 * 1024 * 1024).contains(&m.0)
        {
            return Err(bad(
                "logs.max_line",
                "give 16KiB (one piece of the engine's) to 64MiB",
            ));
        }
        if self.max_group_lines == Some(0) {
            return Err(bad("logs.max_group_lines", "give at least 1"));
        }
        match self.source.as_deref() {
            None | Some("auto" | "api") => {}
            Some(other) => return Err(bad("logs.source", format!("{other:?} is not auto or api"))),
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.check()
                .map_err(|e| e.under(&format!("logs.sinks[{i}]")))?;
            if !names.insert(sink.name.clone()) {
                return Err(bad(
                    format!("logs.sinks[{i}].name"),
                    format!("{:?} is used twice", sink.name),
                ));
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(p) = &r.parser {
                crate::parse::Parser::from_spec(p)
                    .map_err(|e| bad(format!("logs.rules[{i}].parser"), e))?;
            }
            if let Some(m) = &r.multiline {
                crate::multiline::Multiline::from_spec(m)
                    .map_err(|e| bad(format!("logs.rules[{i}].multiline"), e))?;
            }
        }
        Ok(())
    }

    /// What the collector needs from this section.
    pub fn options(&self) -> Options {
        Options {
            containers: self.containers.clone(),
            labels: self.labels.clone(),
            api_only: self.source.as_deref() == Some("api"),
            memory: self
                .memory
                .map_or(0, |m| usize::try_from(m.0).unwrap_or(usize::MAX)),
            max_line: self
                .max_line
                .map_or(0, |m| usize::try_from(m.0).unwrap_or(usize::MAX)),
            max_group_lines: self.max_group_lines.unwrap_or(0),
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    app: r.app.clone(),
                    service: r.service.clone(),
                    container: r.container.clone(),
                    image: r.image.clone(),
                    parser: r.parser.clone(),
                    multiline: r.multiline.clone(),
                })
                .collect(),
        }
    }
}
