//! `type = "loki"`: Loki's push API (`POST /loki/api/v1/push`, JSON). Lines are grouped into
//! streams by a small set of low-cardinality labels (host, app, service, project, stream by
//! default; never ids), each stream's values `[unix-ns string, raw line]` in time order.

use capstan_model::{ConfigError, LogLine};
use serde::Deserialize;
use std::collections::BTreeMap;

use super::http::{self, Auth, BasicAuth};
use super::{Delivery, Error};

/// The labels a Loki stream may carry: each takes few values on a host. Container ids, line
/// ids and parsed fields are not among them, for Loki's index would grow with each.
const ALLOWED_LABELS: &[&str] = &[
    "host",
    "app",
    "service",
    "project",
    "container",
    "image",
    "stream",
    "level",
];

/// `[[logs.sinks]]` with `type = "loki"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Loki's base URL, e.g. `http://127.0.0.1:3100`.
    pub endpoint: String,
    /// The stream labels, from host, app, service, project, container, image, stream, level
    /// (default: host, app, service, project, stream).
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// The tenant (`X-Scope-OrgID`), for a multi-tenant Loki.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Basic auth: `auth = { user = "...", password_file = "..." }`.
    #[serde(default)]
    pub auth: Option<BasicAuth>,
}

fn default_labels() -> Vec<String> {
    ["host", "app", "service", "project", "stream"]
        .map(String::from)
        .to_vec()
}

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        http::endpoint(&self.endpoint).map_err(|e| ConfigError::new("endpoint", e))?;
        for l in &self.labels {
            if !ALLOWED_LABELS.contains(&l.as_str()) {
                return Err(ConfigError::new(
                    "labels",
                    format!(
                        "{l:?} is not one of {} (Loki labels must take few values)",
                        ALLOWED_LABELS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub(super) struct Sink {
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    labels: Vec<String>,
    tenant: Option<String>,
}

impl Sink {
    pub(super) fn new(config: &Config, tls: Option<&http::TlsConfig>) -> Result<Self, Error> {
        Ok(Self {
            client: http::client(tls)?,
            url: http::join(&config.endpoint, "/loki/api/v1/push")?,
            auth: Auth::basic(config.auth.as_ref())?,
            labels: config.labels.clone(),
            tenant: config.tenant.clone(),
        })
    }

    pub(super) async fn deliver(&self, lines: &[LogLine]) -> Result<Delivery, Error> {
        let body = push_body(&self.labels, lines);
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = &self.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        http::send(self.auth.apply(req), &self.url, http::data_rejected).await?;
        Ok(Delivery::all())
    }
}

fn label<'a>(line: &'a LogLine, name: &str) -> &'a str {
    match name {
        "host" => &line.origin.host,
        "app" => &line.origin.app,
        "service" => &line.origin.service,
        "project" => &line.origin.project,
        "container" => &line.origin.container,
        "image" => &line.origin.image,
        "stream" => &line.origin.stream,
        "level" => line.level.as_deref().unwrap_or_default(),
        _ => "",
    }
}

/// The push body: one stream per label set (empty values left out; a line with none gets
/// `job="capstan"`, since Loki needs one label at least), values in time order.
fn push_body(labels: &[String], lines: &[LogLine]) -> Vec<u8> {
    let mut streams: BTreeMap<BTreeMap<&str, &str>, Vec<&LogLine>> = BTreeMap::new();
    for l in lines {
        let mut set: BTreeMap<&str, &str> = labels
            .iter()
            .map(|name| (name.as_str(), label(l, name)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if set.is_empty() {
            set.insert("job", "capstan");
        }
        streams.entry(set).or_default().push(l);
    }
    let streams: Vec<serde_json::Value> = streams
        .into_iter()
        .map(|(set, mut lines)| {
            lines.sort_by_key(|l| (l.time_nano, l.seq));
            serde_json::json!({
                "stream": set,
                "values": lines
                    .iter()
                    .map(|l| [l.time_nano.to_string(), l.raw.clone()])
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "streams": streams })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use capstan_model::Origin;

    use super::*;

    #[test]
    fn lines_are_grouped_by_label_set_in_time_order() {
        let l = |seq, t, service: &str, stream: &str| LogLine {
            seq,
            time_nano: t,
            raw: format!("line {seq}"),
            origin: Origin {
                service: service.into(),
                stream: stream.into(),
                ..Origin::default()
            },
            ..LogLine::default()
        };
        let body = push_body(
            &default_labels(),
            &[
                l(1, 30, "api", "stdout"),
                l(2, 10, "api", "stdout"),
                l(3, 20, "web", "stderr"),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let streams = v["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(
            streams[0]["stream"],
            serde_json::json!({"service": "api", "stream": "stdout"})
        );
        assert_eq!(
            streams[0]["values"],
            serde_json::json!([["10", "line 2"], ["30", "line 1"]])
        );
        let body = push_body(&["app".to_owned()], &[l(4, 1, "x", "stdout")]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["streams"][0]["stream"],
            serde_json::json!({"job": "capstan"})
        );
    }
}
