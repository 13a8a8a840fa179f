//! The `[[logs.sinks]]` entries of `capstan.toml`. Keys common to every sink sit beside
//! `type`; the rest belong to the kind, and a key the kind does not know is an error naming it.

use std::time::Duration;

use serde::Deserialize;

use capstan_model::ConfigError;
use capstan_outbound::TlsConfig;

use super::{clickhouse, elasticsearch, file, loki, webhook};

/// Lines read from the store per batch when the sink does not say.
const DEFAULT_BATCH_MAX_LINES: usize = 5_000;
/// ClickHouse wants large, rare inserts (10k–100k rows, about once a second).
const CLICKHOUSE_BATCH_MAX_LINES: usize = 20_000;
/// How long a sink waits for more lines after a short batch.
const DEFAULT_BATCH_TIMEOUT: &str = "1s";

/// One sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkConfig {
    /// Names the sink and its cursor; letters, digits, `-` and `_`.
    pub name: String,
    /// Only lines matching this log query; empty: every line.
    #[serde(default)]
    pub query: String,
    /// At most this many lines per request (default 5000; 20000 for ClickHouse).
    #[serde(default)]
    pub batch_max_lines: Option<usize>,
    /// After a batch shorter than `batch_max_lines`, wait this long for more lines (`1s`).
    #[serde(default)]
    pub batch_timeout: Option<String>,
    /// Certificates for an `https://` endpoint (network sinks only).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Where the lines go, with its own keys.
    #[serde(flatten)]
    pub kind: Kind,
}

/// The kinds of sink, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kind {
    /// An NDJSON file.
    File(file::Config),
    /// A ClickHouse table over HTTP (`JSONEachRow`).
    Clickhouse(clickhouse::Config),
    /// Elasticsearch or OpenSearch `_bulk` into daily indices.
    Elasticsearch(elasticsearch::Config),
    /// Loki's push API.
    Loki(loki::Config),
    /// Any HTTP endpoint that takes a JSON array (or NDJSON) of lines.
    Http(webhook::Config),
}

impl SinkConfig {
    /// Checks what serde cannot: the name, the query, durations, endpoints, files.
    ///
    /// # Errors
    /// The first problem, under the key it is about (`query`).
    pub fn check(&self) -> Result<(), ConfigError> {
        capstan_outbound::check_name(&self.name)?;
        crate::query::parse(&self.query).map_err(|e| ConfigError::new("query", e))?;
        if self.batch_max_lines == Some(0) {
            return Err(ConfigError::new("batch_max_lines", "must be at least 1"));
        }
        if let Some(t) = &self.batch_timeout {
            capstan_model::parse_duration_nanos(t)
                .map_err(|e| ConfigError::new("batch_timeout", e))?;
        }
        if let Some(tls) = &self.tls {
            if matches!(self.kind, Kind::File(_)) {
                return Err(ConfigError::new(
                    "tls",
                    "a file sink has no TLS; take the key out",
                ));
            }
            tls.load()?;
        }
        match &self.kind {
            Kind::File(c) => c.check(),
            Kind::Clickhouse(c) => c.check(),
            Kind::Elasticsearch(c) => c.check(),
            Kind::Loki(c) => c.check(),
            Kind::Http(c) => c.check(),
        }
    }

    /// The kind's name, as written after `type =`.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::File(_) => "file",
            Kind::Clickhouse(_) => "clickhouse",
            Kind::Elasticsearch(_) => "elasticsearch",
            Kind::Loki(_) => "loki",
            Kind::Http(_) => "http",
        }
    }

    pub(super) fn batch_max_lines(&self) -> usize {
        self.batch_max_lines.unwrap_or(match self.kind {
            Kind::Clickhouse(_) => CLICKHOUSE_BATCH_MAX_LINES,
            _ => DEFAULT_BATCH_MAX_LINES,
        })
    }

    pub(super) fn batch_timeout(&self) -> Duration {
        let text = self
            .batch_timeout
            .as_deref()
            .unwrap_or(DEFAULT_BATCH_TIMEOUT);
        let ns = capstan_model::parse_duration_nanos(text).unwrap_or(1_000_000_000);
        Duration::from_nanos(ns.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        sinks: Vec<SinkConfig>,
    }

    fn parse(text: &str) -> Result<SinkConfig, String> {
        let doc: Doc =
            serde_json::from_str(&format!("{{\"sinks\":[{text}]}}")).map_err(|e| e.to_string())?;
        let sink = doc.sinks.into_iter().next().ok_or("no sink")?;
        sink.check().map_err(|e| e.to_string())?;
        Ok(sink)
    }

    #[test]
    fn each_kind_reads_its_own_keys_and_refuses_others() {
        let s = parse(r#"{"name":"ch","type":"clickhouse","endpoint":"http://127.0.0.1:8123","query":"level:error"}"#).unwrap();
        assert_eq!(s.kind_name(), "clickhouse");
        assert_eq!(s.batch_max_lines(), CLICKHOUSE_BATCH_MAX_LINES);
        assert_eq!(s.batch_timeout(), Duration::from_secs(1));
        let s = parse(r#"{"name":"es","type":"elasticsearch","endpoint":"http://127.0.0.1:9200","batch_max_lines":100,"batch_timeout":"5s"}"#).unwrap();
        assert_eq!(s.batch_max_lines(), 100);
        assert_eq!(s.batch_timeout(), Duration::from_secs(5));
        for (bad, named) in [
            (
                r#"{"name":"x","type":"file","path":"/x","endpoint":"http://h"}"#,
                "endpoint",
            ),
            (r#"{"name":"x","type":"kafka"}"#, "kafka"),
            (r#"{"name":"x","type":"loki"}"#, "endpoint"),
            (r#"{"name":"x y","type":"file","path":"/x"}"#, "name"),
            (
                r#"{"name":"x","type":"file","path":"/x","query":"("}"#,
                "query",
            ),
            (
                r#"{"name":"x","type":"file","path":"/x","batch_timeout":"soon"}"#,
                "batch_timeout",
            ),
            (
                r#"{"name":"x","type":"file","path":"/x","batch_max_lines":0}"#,
                "batch_max_lines",
            ),
            (
                r#"{"name":"x","type":"loki","endpoint":"localhost:3100"}"#,
                "endpoint",
            ),
            (
                r#"{"name":"x","type":"loki","endpoint":"http://h:3100","labels":["raw"]}"#,
                "labels",
            ),
            (
                r#"{"name":"x","type":"clickhouse","endpoint":"http://h","table":"a;drop"}"#,
                "table",
            ),
            (
                r#"{"name":"x","type":"elasticsearch","endpoint":"http://h","index":"Logs-%Y"}"#,
                "index",
            ),
            (
                r#"{"name":"x","type":"http","url":"http://h","encoding":"xml"}"#,
                "xml",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = parse(r#"{"name":"es","type":"elasticsearch","endpoint":"http://h:9200","auth":{"user":"elastic","password":"hunter2"}}"#).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("elastic"));
    }
}
