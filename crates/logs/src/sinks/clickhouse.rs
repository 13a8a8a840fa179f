//! `type = "clickhouse"`: inserts batches over ClickHouse's HTTP interface as `JSONEachRow`
//! into a table it creates when missing. The table is a `ReplacingMergeTree` ordered by the
//! line's time and stable id, so a batch sent twice (a crash before the cursor moved, an
//! answer lost in an outage) collapses to one row per line at merge time and in
//! `SELECT ... FINAL`.
//!
//! Works with ClickHouse 18.16 and later: no `DateTime64` (the ns time is its own column), no
//! `LowCardinality`, no `async_insert` (capstan batches itself, 20,000 rows by default).

use capstan_model::{ConfigError, LogLine};
use serde::{Deserialize, Serialize};

use super::http::{self, Auth, BasicAuth};
use super::{Delivery, Error};

/// `[[logs.sinks]]` with `type = "clickhouse"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub endpoint: String,
    /// The database (`default`); it must exist.
    #[serde(default = "default_database")]
    pub database: String,
    /// The table (`capstan_logs`), created when missing.
    #[serde(default = "default_table")]
    pub table: String,
    /// Basic auth: `auth = { user = "...", password_file = "..." }`.
    #[serde(default)]
    pub auth: Option<BasicAuth>,
}

fn default_database() -> String {
    "default".into()
}

fn default_table() -> String {
    "capstan_logs".into()
}

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        http::endpoint(&self.endpoint).map_err(|e| ConfigError::new("endpoint", e))?;
        for (key, value) in [("database", &self.database), ("table", &self.table)] {
            if !is_identifier(value) {
                return Err(ConfigError::new(
                    key,
                    format!("{value:?} must be letters, digits and _, not starting with a digit"),
                ));
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) struct Sink {
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    table: String,
    /// The table is known to exist (created or seen); forgotten when an insert says otherwise.
    ready: bool,
}

/// One row, as `JSONEachRow` reads it. `time` is unix seconds (a `DateTime('UTC')` column);
/// `fields` and `labels` are JSON text.
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    seq: u64,
    time: i64,
    time_nano: i64,
    host: &'a str,
    container_id: &'a str,
    container: &'a str,
    image: &'a str,
    image_id: &'a str,
    app: &'a str,
    service: &'a str,
    replica: u32,
    project: &'a str,
    stream: &'a str,
    level: &'a str,
    message: &'a str,
    raw: &'a str,
    parse_error: u8,
    fields: String,
    labels: String,
}

impl Sink {
    pub(super) fn new(config: &Config, tls: Option<&http::TlsConfig>) -> Result<Self, Error> {
        Ok(Self {
            client: http::client(tls)?,
            url: http::join(&config.endpoint, "/")?,
            auth: Auth::basic(config.auth.as_ref())?,
            table: format!("`{}`.`{}`", config.database, config.table),
            ready: false,
        })
    }

    fn create_statement(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             id String, seq UInt64, time DateTime('UTC'), time_nano Int64, \
             host String, container_id String, container String, image String, image_id String, \
             app String, service String, replica UInt32, project String, stream String, \
             level String, message String, raw String, parse_error UInt8, \
             fields String, labels String\
             ) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMMDD(time) ORDER BY (time, id)",
            self.table
        )
    }

    /// POSTs `body`, after `query` when one is given (an insert's rows follow its statement;
    /// a statement of its own is the whole body).
    async fn post(&self, query: Option<&str>, body: Vec<u8>) -> Result<(), Error> {
        let mut url = self.url.clone();
        if let Some(query) = query {
            url.query_pairs_mut()
                .append_pair("query", query)
                .append_pair("input_format_skip_unknown_fields", "1");
        }
        let req = self.auth.apply(self.client.post(url.clone()).body(body));
        // every ClickHouse error is worth another try: a missing table is created again, a
        // wrong schema or password is the operator's to fix, and nothing is lost meanwhile
        http::send(req, &url, |_| false).await.map(drop)
    }

    pub(super) async fn deliver(&mut self, lines: &[LogLine]) -> Result<Delivery, Error> {
        if !self.ready {
            self.post(None, self.create_statement().into_bytes())
                .await?;
            self.ready = true;
        }
        let body = rows(lines)?;
        let insert = format!("INSERT INTO {} FORMAT JSONEachRow", self.table);
        match self.post(Some(&insert), body).await {
            Ok(()) => Ok(Delivery::all()),
            Err(e) => {
                // code 60, "table doesn't exist": someone dropped it; make it again next try
                if matches!(&e, Error::Status { status: 404, .. })
                    || matches!(&e, Error::Status { body, .. } if body.starts_with("Code: 60,"))
                {
                    self.ready = false;
                }
                Err(e)
            }
        }
    }
}

fn rows(lines: &[LogLine]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(lines.len() * 400);
    for l in lines {
        let row = Row {
            id: &l.id,
            seq: l.seq,
            time: l.time_nano.div_euclid(1_000_000_000),
            time_nano: l.time_nano,
            host: &l.origin.host,
            container_id: &l.origin.container_id,
            container: &l.origin.container,
            image: &l.origin.image,
            image_id: &l.origin.image_id,
            app: &l.origin.app,
            service: &l.origin.service,
            replica: l.origin.replica.unwrap_or(0),
            project: &l.origin.project,
            stream: &l.origin.stream,
            level: l.level.as_deref().unwrap_or_default(),
            message: &l.message,
            raw: &l.raw,
            parse_error: u8::from(l.parse_error),
            fields: json_text(&l.fields)?,
            labels: json_text(&l.origin.labels)?,
        };
        serde_json::to_writer(&mut out, &row)?;
        out.push(b'\n');
    }
    Ok(out)
}

fn json_text(value: &impl Serialize) -> Result<String, Error> {
    Ok(serde_json::to_string(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_unix_seconds_and_json_text() {
        let line = LogLine {
            id: "c:1:2".into(),
            seq: 9,
            time_nano: 1_764_694_633_123_456_789,
            level: Some("error".into()),
            fields: [("status".to_owned(), serde_json::json!(500))].into(),
            ..LogLine::default()
        };
        let body = String::from_utf8(rows(&[line]).unwrap()).unwrap();
        let row: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(row["time"], 1_764_694_633);
        assert_eq!(row["time_nano"], 1_764_694_633_123_456_789_i64);
        assert_eq!(row["fields"], "{\"status\":500}");
        assert_eq!(row["replica"], 0);
        assert!(body.ends_with('\n'));
        assert!(is_identifier("capstan_logs") && !is_identifier("1x") && !is_identifier("a-b"));
    }
}
