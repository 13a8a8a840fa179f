//! Alerts: rules over metrics (the history's query language), logs (a count of lines matching
//! a log query) and events (OOM kills, restart loops, failing health checks, failed updates,
//! rolled-back deploys). Each alert goes pending → firing → resolved, every move journaled as a
//! `capstan` event that the notification channels send. A container's health and restart
//! alerts wait while its app rolls out and fire only if the condition outlives the rollout.

mod engine;
mod error;
mod rule;
mod seen;
mod transitions;

use std::time::Duration;

use capstan_model::ConfigError;
use serde::Deserialize;

pub use engine::{Alerts, Sources};
pub use error::Error;
pub use rule::{Condition, EventKind, Rule, RuleConfig, Source, builtin, render};

/// `[alerts]` in capstan.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The built-in rules (`oom`, `restart_loop`, `unhealthy`, `node_down`, `certificate_failed`,
    /// `disk_almost_full`); default
    /// true.
    #[serde(default)]
    pub defaults: Option<bool>,
    /// Built-in rules to leave out, by name.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Between evaluations (default `15s`).
    #[serde(default)]
    pub evaluate_every: Option<String>,
    /// `[[alerts.rules]]`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl AlertsConfig {
    /// The rules to run: built-ins (unless off or replaced by a configured rule of the same
    /// name), then the configured ones. An error names the field (`alerts.rules[2].for`).
    pub fn rules(&self) -> Result<Vec<Rule>, ConfigError> {
        let builtin_names: Vec<String> = builtin().into_iter().map(|r| r.name).collect();
        for (i, name) in self.disable.iter().enumerate() {
            if !builtin_names.contains(name) {
                return Err(ConfigError::new(
                    format!("alerts.disable[{i}]"),
                    format!(
                        "{name:?} is not a built-in rule ({})",
                        builtin_names.join(", ")
                    ),
                ));
            }
        }
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.rules.iter().enumerate() {
            let rule = c.check(&format!("alerts.rules[{i}]"), Source::Config)?;
            if !names.insert(rule.name.clone()) {
                return Err(ConfigError::new(
                    format!("alerts.rules[{i}].name"),
                    format!("{:?} is already the name of another rule", rule.name),
                ));
            }
            out.push(rule);
        }
        if self.defaults.unwrap_or(true) {
            for c in builtin() {
                if !self.disable.contains(&c.name) && !names.contains(&c.name) {
                    out.push(c.check("builtin", Source::Builtin)?);
                }
            }
        }
        Ok(out)
    }

    /// Between evaluations.
    pub fn evaluate_every(&self) -> Result<Duration, ConfigError> {
        let text = self.evaluate_every.as_deref().unwrap_or("15s");
        let d = capstan_model::parse_duration(text)
            .map_err(|e| ConfigError::new("alerts.evaluate_every", e))?;
        if d < Duration::from_secs(1) {
            return Err(ConfigError::new("alerts.evaluate_every", "at least 1s"));
        }
        Ok(d)
    }
}
