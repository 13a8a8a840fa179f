//! `type = "elasticsearch"`: Elasticsearch or OpenSearch `_bulk` into daily indices
//! (`capstan-logs-YYYY.MM.DD` by the line's time, UTC). Each document is a `create` with the
//! line's stable id as `_id`, so a batch sent again finds its lines already there (409, taken
//! as delivered) and data streams work too. When the answer says `errors: true`, only the
//! items that failed with 429 or 5xx are sent again; an item refused for good (a mapping
//! conflict, 400) is counted as rejected and named in capstan's log.

use capstan_model::{ConfigError, LogLine};
use serde::Deserialize;
use tracing::warn;

use super::http::{self, Auth, BasicAuth};
use super::{Delivery, Error, Secret};

/// `[[logs.sinks]]` with `type = "elasticsearch"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster, e.g. `http://127.0.0.1:9200`.
    pub endpoint: String,
    /// The index name; `%Y`, `%m` and `%d` are the line's UTC date
    /// (`capstan-logs-%Y.%m.%d`).
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic auth: `auth = { user = "...", password_file = "..." }`.
    #[serde(default)]
    pub auth: Option<BasicAuth>,
    /// An API key (sent as `Authorization: ApiKey ...`) instead of `auth`.
    #[serde(default)]
    pub api_key: Option<Secret>,
}

fn default_index() -> String {
    "capstan-logs-%Y.%m.%d".into()
}

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        http::endpoint(&self.endpoint).map_err(|e| ConfigError::new("endpoint", e))?;
        index_name(&self.index, 0).map_err(|e| ConfigError::new("index", e))?;
        if self.api_key.is_some() && self.auth.is_some() {
            return Err(ConfigError::new(
                "api_key",
                "give either an api_key or auth, not both",
            ));
        }
        Ok(())
    }
}

/// The index for a line at `time_nano`: the pattern with `%Y`, `%m`, `%d` (and `%%`)
/// replaced. Elasticsearch's rules apply to the result: lowercase, none of `\/*?"<>|,# :`,
/// not starting with `-`, `_` or `+`.
fn index_name(pattern: &str, time_nano: i64) -> Result<String, String> {
    let date = capstan_model::nanos_to_datetime(time_nano);
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&date.format("%Y").to_string()),
            Some('m') => out.push_str(&date.format("%m").to_string()),
            Some('d') => out.push_str(&date.format("%d").to_string()),
            Some('%') => out.push('%'),
            other => {
                return Err(format!(
                    "{pattern:?}: %{} is not one of %Y, %m, %d",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        }
    }
    if out.is_empty()
        || out.starts_with(['-', '_', '+'])
        || out.chars().any(|c| {
            c.is_ascii_uppercase()
                || matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':'
                )
        })
    {
        return Err(format!(
            "{pattern:?} is not a valid index name (lowercase; none of \\/*?\"<>|,#: or spaces; not starting with - _ +)"
        ));
    }
    Ok(out)
}

pub(super) struct Sink {
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    index: String,
}

/// The parts of a `_bulk` answer capstan reads.
#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl Sink {
    pub(super) fn new(config: &Config, tls: Option<&http::TlsConfig>) -> Result<Self, Error> {
        let auth = match &config.api_key {
            Some(key) => Auth::Header {
                name: "authorization".into(),
                value: Secret::from(format!("ApiKey {}", key.expose())),
            },
            None => Auth::basic(config.auth.as_ref())?,
        };
        Ok(Self {
            client: http::client(tls)?,
            url: http::join(&config.endpoint, "/_bulk")?,
            auth,
            index: config.index.clone(),
        })
    }

    pub(super) async fn deliver(&self, lines: &[LogLine]) -> Result<Delivery, Error> {
        let body = self.body(lines)?;
        let req = self.auth.apply(
            self.client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body),
        );
        let answer = http::send(req, &self.url, http::data_rejected).await?;
        let resp: BulkResponse = serde_json::from_slice(&answer).map_err(|e| Error::Response {
            url: self.url.to_string(),
            message: format!("not a _bulk answer: {e}"),
        })?;
        if !resp.errors {
            return Ok(Delivery::all());
        }
        if resp.items.len() != lines.len() {
            return Err(Error::Response {
                url: self.url.to_string(),
                message: format!("{} items for {} documents", resp.items.len(), lines.len()),
            });
        }
        let mut delivery = Delivery::all();
        for (i, item) in resp.items.iter().enumerate() {
            let Some(item) = item.values().next() else {
                continue;
            };
            match item.status {
                200..=299 | 409 => {}
                429 | 500..=599 => delivery.retry.push(i),
                status => {
                    delivery.rejected += 1;
                    if delivery.rejected <= 3 {
                        warn!(
                            id = %lines[i].id,
                            status,
                            error = %item.error.as_ref().map(ToString::to_string).unwrap_or_default(),
                            "elasticsearch refused a document; it is not sent again"
                        );
                    }
                }
            }
        }
        Ok(delivery)
    }

    fn body(&self, lines: &[LogLine]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(lines.len() * 512);
        for l in lines {
            let index = index_name(&self.index, l.time_nano).map_err(Error::Config)?;
            let action = serde_json::json!({"create": {"_index": index, "_id": l.id}});
            serde_json::to_writer(&mut out, &action)?;
            out.push(b'\n');
            let mut doc = serde_json::to_value(l)?;
            if let Some(map) = doc.as_object_mut() {
                map.insert(
                    "@timestamp".into(),
                    serde_json::Value::String(
                        l.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    ),
                );
            }
            serde_json::to_writer(&mut out, &doc)?;
            out.push(b'\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_index_names_follow_the_line_time_and_the_rules() {
        // 2026-12-02T16:57:13Z
        let t = 1_796_230_633_000_000_000;
        assert_eq!(
            index_name("capstan-logs-%Y.%m.%d", t).unwrap(),
            "capstan-logs-2026.12.02"
        );
        assert_eq!(index_name("logs-100%%", t).unwrap(), "logs-100%");
        for bad in ["Logs-%Y", "logs-%H", "_logs", "a b", "a,b", "", "x%"] {
            assert!(index_name(bad, t).is_err(), "{bad}");
        }
    }
}
