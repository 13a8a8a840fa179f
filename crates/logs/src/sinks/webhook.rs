//! `type = "http"`: POSTs each batch to a URL as a JSON array of lines (or NDJSON), with the
//! headers and bearer token configured. 2xx is delivered; 400 and 422 reject the batch; any
//! other answer is tried again.

use std::collections::BTreeMap;

use capstan_model::{ConfigError, LogLine};
use serde::Deserialize;

use super::http::{self, Auth};
use super::{Delivery, Error, Secret};

/// `[[logs.sinks]]` with `type = "http"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to POST.
    pub url: String,
    /// `json` (an array of lines, the default) or `ndjson` (one line per row).
    #[serde(default)]
    pub encoding: Encoding,
    /// Extra headers; their values are kept out of capstan's own output.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The body's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Json,
    Ndjson,
}

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        http::endpoint(&self.url).map_err(|e| ConfigError::new("url", e))?;
        http::check_headers(&self.headers)
    }
}

pub(super) struct Sink {
    client: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    headers: BTreeMap<String, Secret>,
    encoding: Encoding,
}

impl Sink {
    pub(super) fn new(config: &Config, tls: Option<&http::TlsConfig>) -> Result<Self, Error> {
        Ok(Self {
            client: http::client(tls)?,
            url: http::endpoint(&config.url)?,
            auth: config.token.clone().map_or(Auth::None, Auth::Bearer),
            headers: config.headers.clone(),
            encoding: config.encoding,
        })
    }

    pub(super) async fn deliver(&self, lines: &[LogLine]) -> Result<Delivery, Error> {
        let (content_type, body) = match self.encoding {
            Encoding::Json => ("application/json", serde_json::to_vec(lines)),
            Encoding::Ndjson => ("application/x-ndjson", ndjson(lines)),
        };
        let body = body.map_err(|e| Error::Config(format!("cannot encode a line as JSON: {e}")))?;
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.expose());
        }
        http::send(self.auth.apply(req), &self.url, http::data_rejected).await?;
        Ok(Delivery::all())
    }
}

fn ndjson(lines: &[LogLine]) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(lines.len() * 400);
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.push(b'\n');
    }
    Ok(out)
}
