//! One notification: the events of one batch, put in words for people (a subject and a line per
//! event) and kept whole for programs (the webhook's `events`).

use std::collections::BTreeMap;

use capstan_model::{CapstanAction, Event, is_label_name};
use serde::Serialize;

/// A notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Always `capstan`: lets a receiver shared with other tools tell the payloads apart.
    pub source: &'static str,
    /// The host capstan runs on.
    pub host: String,
    /// One line that says it all (`2 image updates available on web-1`).
    pub subject: String,
    /// One line per event.
    pub lines: Vec<String>,
    /// The events themselves, as the API lists them.
    pub events: Vec<Event>,
}

impl Message {
    /// The message for `events` (journal order), sent from `host`.
    pub fn new(host: &str, events: Vec<Event>) -> Self {
        Self {
            source: "capstan",
            host: host.to_owned(),
            subject: subject(host, &events),
            lines: events.iter().map(line).collect(),
            events,
        }
    }

    /// The plain-text body: the lines, then where they come from.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str("- ");
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("\n-- \ncapstan on ");
        out.push_str(&self.host);
        out.push('\n');
        out
    }

    /// Slack's incoming-webhook payload: `text` in its markup, `&`, `<` and `>` escaped.
    pub fn slack(&self) -> serde_json::Value {
        let mut text = format!("*{}*", slack_escape(&self.subject));
        for l in &self.lines {
            text.push_str("\n• ");
            text.push_str(&slack_escape(l));
        }
        serde_json::json!({ "text": text })
    }
}

impl Message {
    /// Alertmanager's v2 alerts, one per event: `alertname` is the event's action, its
    /// attributes are labels (those whose names Prometheus allows), the line is the summary;
    /// the alert starts when the event happened and ends `active_for` later.
    pub fn alerts(&self, active_for: chrono::Duration) -> serde_json::Value {
        let alerts: Vec<serde_json::Value> = self
            .events
            .iter()
            .zip(&self.lines)
            .map(|(e, line)| {
                if CapstanAction::parse(&e.action).is_some_and(CapstanAction::is_alert) {
                    return alert(e, line, &self.host, active_for);
                }
                let mut labels = serde_json::Map::new();
                for (k, v) in &e.attributes {
                    if is_label_name(k) && k != "reason" {
                        labels.insert(k.clone(), v.clone().into());
                    }
                }
                labels.insert("alertname".into(), e.action.clone().into());
                labels.insert("source".into(), "capstan".into());
                labels.insert("host".into(), self.host.clone().into());
                labels.insert("actor".into(), e.actor.clone().into());
                serde_json::json!({
                    "labels": labels,
                    "annotations": {"summary": line, "description": self.subject},
                    "startsAt": e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "endsAt": (e.time + active_for).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
            })
            .collect();
        serde_json::Value::Array(alerts)
    }
}

/// Attributes of an alert's event that are no labels.
const ALERT_FIELDS: &[&str] = &["rule", "state", "fingerprint", "active_since", "value"];

/// An alert of capstan's rules as Alertmanager takes it: its labels (`alertname` is the
/// rule's name), its annotations, when it became active, and its end: resolved now, or
/// `active_for` from now while it fires (it is sent again before then).
fn alert(e: &Event, line: &str, host: &str, active_for: chrono::Duration) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    let mut annotations = serde_json::Map::new();
    for (k, v) in &e.attributes {
        if let Some(a) = k.strip_prefix("annotation.") {
            annotations.insert(a.to_owned(), v.clone().into());
        } else if !ALERT_FIELDS.contains(&k.as_str()) && is_label_name(k) {
            labels.insert(k.clone(), v.clone().into());
        }
    }
    labels.insert("source".into(), "capstan".into());
    labels.insert("host".into(), host.to_owned().into());
    annotations
        .entry("summary")
        .or_insert_with(|| line.to_owned().into());
    let starts = e
        .attributes
        .get("active_since")
        .cloned()
        .unwrap_or_else(|| e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let ends = if CapstanAction::parse(&e.action) == Some(CapstanAction::AlertResolved) {
        e.time
    } else {
        chrono::Utc::now() + active_for
    };
    serde_json::json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts,
        "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

fn subject(host: &str, events: &[Event]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        *counts.entry(e.action.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(action, n)| {
            let (one, many, what) = match CapstanAction::parse(action) {
                Some(CapstanAction::UpdateAvailable) => {
                    ("image update", "image updates", "available")
                }
                Some(CapstanAction::UpdateApplied) => ("image update", "image updates", "applied"),
                Some(CapstanAction::UpdateFailed) => ("image update", "image updates", "failed"),
                Some(CapstanAction::AlertFiring) => ("alert", "alerts", "firing"),
                Some(CapstanAction::AlertResolved) => ("alert", "alerts", "resolved"),
                Some(CapstanAction::AlertFlapping) => ("alert", "alerts", "flapping"),
                _ => return format!("{n} × {action}"),
            };
            format!("{n} {} {what}", if *n == 1 { one } else { many })
        })
        .collect();
    format!("{} on {host}", parts.join(", "))
}

/// The first 12 hex digits of a digest, as `docker images` shows ids.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn line(e: &Event) -> String {
    let a = |key: &str| e.attributes.get(key).map(String::as_str);
    let reference = a("reference").unwrap_or(&e.actor);
    let why = match (a("policy"), a("reason")) {
        (Some(p), Some(r)) => format!(" (policy {p}: {r})"),
        (None, Some(r)) => format!(" ({r})"),
        _ => String::new(),
    };
    let what = match (a("tag"), a("digest")) {
        (Some(tag), Some(d)) => format!("{tag} ({})", short(d)),
        (Some(tag), None) => tag.to_owned(),
        (None, Some(d)) => format!("new content ({})", short(d)),
        (None, None) => String::new(),
    };
    let state = match CapstanAction::parse(&e.action) {
        Some(CapstanAction::UpdateAvailable) => {
            return format!("{reference}: {what} is available{why}");
        }
        Some(CapstanAction::UpdateApplied) => {
            return format!("{reference}: updated to {what}{why}");
        }
        Some(CapstanAction::UpdateFailed) => {
            return format!("{reference}: the update to {what} failed{why}");
        }
        Some(CapstanAction::AlertFiring) => Some("FIRING"),
        Some(CapstanAction::AlertResolved) => Some("RESOLVED"),
        Some(CapstanAction::AlertFlapping) => {
            Some("FLAPPING (further changes not sent until it settles)")
        }
        _ => None,
    };
    match state {
        Some(state) => {
            let summary = a("annotation.summary").unwrap_or_default();
            let who: Vec<String> = e
                .attributes
                .iter()
                .filter(|(k, _)| {
                    ["name", "app", "service", "mountpoint", "reference"].contains(&k.as_str())
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let who = if who.is_empty() {
                String::new()
            } else {
                format!(" [{}]", who.join(" "))
            };
            format!("{state} {}: {summary}{who}", e.actor)
        }
        _ => {
            let attrs: Vec<String> = e
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {}: {}", e.action, e.actor, attrs.join(" "))
        }
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            time: chrono::DateTime::UNIX_EPOCH,
            time_nano: 0,
            kind: "capstan".into(),
            action: action.into(),
            actor: "reg.example/app:v1.0.0".into(),
            image_id: None,
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            scope: None,
            inferred: true,
        }
    }

    #[test]
    fn a_batch_reads_as_one_message() {
        let m = Message::new(
            "web-1",
            vec![
                event(
                    "update_available",
                    &[
                        ("reference", "reg.example/app:v1.0.0"),
                        ("policy", "minor"),
                        ("reason", "v1.1.0 is the newest tag above v1.0.0"),
                        ("tag", "v1.1.0"),
                        ("digest", "sha256:0123456789abcdef0123"),
                    ],
                ),
                event(
                    "update_available",
                    &[
                        ("reference", "reg.example/db:16"),
                        ("policy", "digest"),
                        ("digest", "sha256:fedcba9876543210"),
                    ],
                ),
            ],
        );
        assert_eq!(m.subject, "2 image updates available on web-1");
        assert_eq!(
            m.lines,
            [
                "reg.example/app:v1.0.0: v1.1.0 (0123456789ab) is available (policy minor: v1.1.0 \
                 is the newest tag above v1.0.0)",
                "reg.example/db:16: new content (fedcba987654) is available"
            ]
        );
        assert!(m.text().ends_with("\n-- \ncapstan on web-1\n"));
        let slack = m.slack();
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("*2 image updates available on web-1*\n• reg.example/app"));
        let alerts = m.alerts(chrono::Duration::hours(1));
        assert_eq!(alerts[0]["labels"]["alertname"], "update_available");
        assert_eq!(alerts[0]["labels"]["tag"], "v1.1.0");
        assert_eq!(alerts[0]["labels"]["host"], "web-1");
        assert!(
            alerts[0]["labels"].get("reason").is_none(),
            "free text is no label"
        );
        assert_eq!(alerts[0]["annotations"]["summary"], m.lines[0]);
        assert_eq!(alerts[0]["startsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(alerts[0]["endsAt"], "1970-01-01T01:00:00.000Z");
        let odd = Message::new("h", vec![event("alert<x>", &[("a", "b&c")])]);
        assert_eq!(odd.subject, "1 × alert<x> on h");
        assert_eq!(
            odd.slack()["text"],
            "*1 × alert&lt;x&gt; on h*\n• alert&lt;x&gt; reg.example/app:v1.0.0: a=b&amp;c"
        );
    }
}
