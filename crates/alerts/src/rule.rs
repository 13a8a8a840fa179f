//! Rules: how `[[alerts.rules]]` (or a rule posted to the API) reads, is checked, and what it
//! becomes; and the built-in rules.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_metrics::Query;
use capstan_model::{ConfigError, Severity};
use serde::{Deserialize, Serialize};

/// One rule as written. Exactly one of `expr`, `logs` and `event` says what it watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule (and its alerts' `alertname`): letters, digits, `-` and `_`.
    pub name: String,
    /// A metric query: every series it returns is an alert (`... > 0.9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// A log query: holds when more than `above` lines match within `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    /// An event condition: `oom`, `restart_loop`, `unhealthy`, `update_failed`, `rolled_back`,
    /// `node_down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A host security condition: holds for each open finding of the host checks at or above
    /// this severity (`low`, `medium`, `high`, `critical`), one alert per check and object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<String>,
    /// The window a log count, a restart count or an event looks back over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Log rules: more than this many lines (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<u64>,
    /// `restart_loop`: this many unplanned exits within `window` (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// How long the condition must hold before the alert fires (default `0s`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long a firing alert stays firing after the condition stops holding (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Shorthand for the `severity` label (default `warning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, ...: `{{ $labels.name }}` and `{{ $value }}` are filled in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What an event rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The kernel killed a container's process for lack of memory.
    Oom,
    /// A service (or a container outside capstan) exited on its own `restarts` times in
    /// `window`: exits that no stop or kill asked for.
    RestartLoop { restarts: u32 },
    /// A container's health check says unhealthy (for `for`).
    Unhealthy,
    /// An automatic update failed and was rolled back.
    UpdateFailed,
    /// A deploy rolled back.
    RolledBack,
    /// A Swarm node its managers no longer hear from (for `for`), until it is ready again.
    NodeDown,
    /// An app's certificate the ACME server did not issue, until it does.
    CertificateFailed,
    /// An app whose latest backup failed, until one succeeds.
    BackupFailed,
}

impl EventKind {
    pub const NAMES: &str = "oom, restart_loop, unhealthy, update_failed, rolled_back, node_down, certificate_failed, backup_failed";

    fn parse(name: &str, restarts: Option<u32>) -> Option<Self> {
        Some(match name {
            "oom" => Self::Oom,
            "restart_loop" => Self::RestartLoop {
                restarts: restarts.unwrap_or(5),
            },
            "unhealthy" => Self::Unhealthy,
            "update_failed" => Self::UpdateFailed,
            "rolled_back" => Self::RolledBack,
            "node_down" => Self::NodeDown,
            "certificate_failed" => Self::CertificateFailed,
            "backup_failed" => Self::BackupFailed,
            _ => return None,
        })
    }

    /// A container's own health and restart alerts: held while its app rolls out.
    pub fn held_during_rollouts(self) -> bool {
        matches!(self, Self::Oom | Self::RestartLoop { .. } | Self::Unhealthy)
    }
}

/// What a rule watches, checked.
#[derive(Debug, Clone)]
pub enum Condition {
    Metric(Query),
    Logs {
        query: capstan_logs::LogQuery,
        text: String,
        above: u64,
    },
    Event(EventKind),
    /// Open host security findings at or above a severity.
    Security(Severity),
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Builtin,
    Config,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    pub window: Duration,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub source: Source,
    pub config: RuleConfig,
}

fn duration(
    path: &str,
    field: &str,
    text: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = text.unwrap_or(default);
    let ns = capstan_model::parse_duration_nanos(text)
        .map_err(|e| ConfigError::new(format!("{path}.{field}"), e))?;
    Ok(Duration::from_nanos(ns.max(0) as u64))
}

impl RuleConfig {
    /// Refuses a `window`, `above` or `restarts` on a rule that has no use for one, saying `why`.
    fn refuse_thresholds(&self, path: &str, why: &str) -> Result<(), ConfigError> {
        for (field, set) in [
            ("window", self.window.is_some()),
            ("above", self.above.is_some()),
            ("restarts", self.restarts.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(format!("{path}.{field}"), why));
            }
        }
        Ok(())
    }

    /// Checks the rule; `path` names it in errors (`alerts.rules[2]`).
    pub fn check(&self, path: &str, source: Source) -> Result<Rule, ConfigError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("{:?} must be letters, digits, `-` and `_`", self.name),
            ));
        }
        let given = [
            self.expr.is_some(),
            self.logs.is_some(),
            self.event.is_some(),
            self.security.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(ConfigError::new(
                path,
                format!(
                    "give exactly one of `expr` (a metric query), `logs` (a log query), `event` \
                     ({}) or `security` (a severity)",
                    EventKind::NAMES
                ),
            ));
        }
        let default_window = if self.logs.is_some() { "5m" } else { "10m" };
        let window = duration(path, "window", self.window.as_deref(), default_window)?;
        if window.is_zero() {
            return Err(ConfigError::new(
                format!("{path}.window"),
                "must be longer than 0s",
            ));
        }
        let condition = if let Some(expr) = &self.expr {
            self.refuse_thresholds(
                path,
                "only for log or event rules; put the threshold in `expr`",
            )?;
            Condition::Metric(
                Query::parse(expr).map_err(|e| ConfigError::new(format!("{path}.expr"), e))?,
            )
        } else if let Some(text) = &self.logs {
            if self.restarts.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.restarts"),
                    "only for `event = \"restart_loop\"`",
                ));
            }
            let query = capstan_logs::LogQuery::parse(text)
                .map_err(|e| ConfigError::new(format!("{path}.logs"), e))?;
            Condition::Logs {
                query,
                text: text.clone(),
                above: self.above.unwrap_or(0),
            }
        } else if let Some(word) = &self.security {
            self.refuse_thresholds(
                path,
                "not for security rules: each open finding is an alert",
            )?;
            let at_least = word
                .parse::<Severity>()
                .ok()
                .filter(|s| *s > Severity::Unknown)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.security"),
                        format!("{word:?} is not low, medium, high or critical"),
                    )
                })?;
            Condition::Security(at_least)
        } else {
            let name = self.event.as_deref().unwrap_or_default();
            let kind = EventKind::parse(name, self.restarts).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.event"),
                    format!("{name:?} is not one of {}", EventKind::NAMES),
                )
            })?;
            if self.above.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.above"),
                    "only for log rules",
                ));
            }
            if self.restarts.is_some() && !matches!(kind, EventKind::RestartLoop { .. }) {
                return Err(ConfigError::new(
                    format!("{path}.restarts"),
                    "only for `event = \"restart_loop\"`",
                ));
            }
            if self.restarts == Some(0) {
                return Err(ConfigError::new(format!("{path}.restarts"), "at least 1"));
            }
            Condition::Event(kind)
        };
        let for_ = duration(path, "for", self.for_.as_deref(), "0s")?;
        let keep_firing_for = duration(
            path,
            "keep_firing_for",
            self.keep_firing_for.as_deref(),
            "0s",
        )?;
        let mut labels = BTreeMap::new();
        for (k, v) in &self.labels {
            if !capstan_model::is_label_name(k) {
                return Err(ConfigError::new(
                    format!("{path}.labels.{k}"),
                    "a label name is letters, digits and `_`, not starting with a digit or `__`",
                ));
            }
            labels.insert(k.clone(), v.clone());
        }
        let severity = self.severity.clone().unwrap_or_else(|| "warning".into());
        if !matches!(severity.as_str(), "info" | "warning" | "critical") {
            return Err(ConfigError::new(
                format!("{path}.severity"),
                format!("{severity:?} is not info, warning or critical"),
            ));
        }
        labels.insert("severity".into(), severity);
        labels.insert("alertname".into(), self.name.clone());
        for (k, v) in &self.annotations {
            check_template(v)
                .map_err(|e| ConfigError::new(format!("{path}.annotations.{k}"), e))?;
        }
        Ok(Rule {
            name: self.name.clone(),
            condition,
            window,
            for_,
            keep_firing_for,
            labels,
            annotations: self.annotations.clone(),
            source,
            config: self.clone(),
        })
    }
}

impl Rule {
    /// `metric`, `logs` or `event`.
    pub fn kind(&self) -> &'static str {
        match self.condition {
            Condition::Metric(_) => "metric",
            Condition::Logs { .. } => "logs",
            Condition::Event(_) => "event",
            Condition::Security(_) => "security",
        }
    }

    /// The condition in words.
    pub fn describe(&self) -> String {
        let w = capstan_model::format_duration(self.window);
        match &self.condition {
            Condition::Metric(q) => q.to_string(),
            Condition::Logs { text, above, .. } => {
                format!("more than {above} lines matching `{text}` in {w}")
            }
            Condition::Event(EventKind::Oom) => {
                format!("a container killed for lack of memory (within {w})")
            }
            Condition::Event(EventKind::RestartLoop { restarts }) => {
                format!("{restarts} unplanned exits of one service or container in {w}")
            }
            Condition::Event(EventKind::Unhealthy) => "a container's health check fails".into(),
            Condition::Event(EventKind::UpdateFailed) => {
                format!("an automatic update failed (within {w})")
            }
            Condition::Event(EventKind::RolledBack) => format!("a deploy rolled back (within {w})"),
            Condition::Event(EventKind::NodeDown) => "a Swarm node is down".into(),
            Condition::Event(EventKind::CertificateFailed) => {
                "an app's certificate is not issued".into()
            }
            Condition::Event(EventKind::BackupFailed) => "an app's latest backup failed".into(),
            Condition::Security(at_least) => {
                format!("a host security check finds something {at_least} or worse")
            }
        }
    }

    /// Whether its alerts wait while their app rolls out.
    pub fn held_during_rollouts(&self) -> bool {
        matches!(&self.condition, Condition::Event(k) if k.held_during_rollouts())
    }
}

/// The rules capstan brings: on unless `[alerts] defaults = false`, each one off with
/// `disable = ["name"]`, and replaced by a configured rule of the same name.
pub fn builtin() -> Vec<RuleConfig> {
    let rule = |name: &str, severity: &str, summary: &str| RuleConfig {
        name: name.into(),
        severity: Some(severity.into()),
        annotations: BTreeMap::from([("summary".to_owned(), summary.to_owned())]),
        ..RuleConfig::default()
    };
    vec![
        RuleConfig {
            event: Some("oom".into()),
            window: Some("5m".into()),
            ..rule(
                "oom",
                "critical",
                "{{ $labels.name }} was killed for lack of memory",
            )
        },
        RuleConfig {
            event: Some("restart_loop".into()),
            restarts: Some(5),
            window: Some("10m".into()),
            ..rule(
                "restart_loop",
                "critical",
                "{{ $labels.name }} exited {{ $value }} times in 10m",
            )
        },
        RuleConfig {
            event: Some("unhealthy".into()),
            for_: Some("1m".into()),
            ..rule("unhealthy", "warning", "{{ $labels.name }} is unhealthy")
        },
        RuleConfig {
            event: Some("node_down".into()),
            ..rule(
                "node_down",
                "critical",
                "Swarm node {{ $labels.node }} is down: its tasks are moved to the others",
            )
        },
        RuleConfig {
            event: Some("certificate_failed".into()),
            ..rule(
                "certificate_failed",
                "warning",
                "{{ $labels.app }} has no certificate for {{ $labels.names }}: served over plain HTTP until the ACME server issues one",
            )
        },
        RuleConfig {
            event: Some("backup_failed".into()),
            ..rule(
                "backup_failed",
                "critical",
                "{{ $labels.app }}'s latest backup failed: its data is not protected until one succeeds",
            )
        },
        RuleConfig {
            expr: Some("node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1".into()),
            for_: Some("5m".into()),
            ..rule(
                "disk_almost_full",
                "warning",
                "{{ $labels.mountpoint }} has {{ $value }} of its space left",
            )
        },
    ]
}

/// `{{ $labels.x }}` / `{{ .Labels.x }}` and `{{ $value }}` / `{{ .Value }}` filled in.
pub fn render(template: &str, labels: &BTreeMap<String, String>, value: Option<f64>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        if let Some(l) = inner
            .strip_prefix("$labels.")
            .or_else(|| inner.strip_prefix(".Labels."))
        {
            out.push_str(labels.get(l).map_or("", String::as_str));
        } else if inner == "$value" || inner == ".Value" {
            out.push_str(&value.map(format_value).unwrap_or_default());
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            return Err("`{{` without its `}}`".into());
        };
        let inner = rest[start + 2..start + end].trim();
        let known = inner.starts_with("$labels.")
            || inner.starts_with(".Labels.")
            || inner == "$value"
            || inner == ".Value";
        if !known {
            return Err(format!(
                "`{{{{ {inner} }}}}` is not `$labels.NAME` or `$value`"
            ));
        }
        rest = &rest[start + end + 2..];
    }
    Ok(())
}

/// A figure as people read it: integers whole, others to three significant places.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule, or its error as the operator reads it.
    fn check(c: &RuleConfig) -> Result<Rule, String> {
        c.check("alerts.rules[0]", Source::Config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_builtin_rules_check() {
        for r in builtin() {
            check(&r).unwrap();
        }
    }

    #[test]
    fn bad_rules_name_the_field() {
        let base = RuleConfig {
            name: "x".into(),
            event: Some("oom".into()),
            ..RuleConfig::default()
        };
        for (bad, want) in [
            (
                RuleConfig {
                    for_: Some("5x".into()),
                    ..base.clone()
                },
                "alerts.rules[0].for:",
            ),
            (
                RuleConfig {
                    event: Some("boom".into()),
                    ..base.clone()
                },
                "alerts.rules[0].event: \"boom\" is not one of",
            ),
            (
                RuleConfig {
                    expr: Some("rate(x[5m]".into()),
                    event: None,
                    ..base.clone()
                },
                "alerts.rules[0].expr: expected `)`",
            ),
            (
                RuleConfig {
                    logs: Some("level:error".into()),
                    ..base.clone()
                },
                "alerts.rules[0]: give exactly one",
            ),
            (
                RuleConfig {
                    annotations: BTreeMap::from([("summary".into(), "{{ $oops }}".into())]),
                    ..base.clone()
                },
                "alerts.rules[0].annotations.summary:",
            ),
            (
                RuleConfig {
                    name: "no spaces".into(),
                    ..base.clone()
                },
                "alerts.rules[0].name:",
            ),
            (
                RuleConfig {
                    security: Some("severe".into()),
                    event: None,
                    ..base.clone()
                },
                "alerts.rules[0].security: \"severe\" is not low, medium, high or critical",
            ),
            (
                RuleConfig {
                    security: Some("high".into()),
                    event: None,
                    window: Some("5m".into()),
                    ..base.clone()
                },
                "alerts.rules[0].window: not for security rules",
            ),
            (
                RuleConfig {
                    security: Some("high".into()),
                    ..base.clone()
                },
                "alerts.rules[0]: give exactly one",
            ),
        ] {
            let err = check(&bad).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn templates_are_filled_in() {
        let labels = BTreeMap::from([("name".to_owned(), "web-1".to_owned())]);
        assert_eq!(
            render(
                "{{ $labels.name }} at {{ $value }}; {{.Labels.name}} {{ .Value }}",
                &labels,
                Some(0.5)
            ),
            "web-1 at 0.500; web-1 0.500"
        );
        assert_eq!(render("{{ $labels.none }}!", &labels, None), "!");
    }
}
