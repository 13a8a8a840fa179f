//! A line as a tantivy document: the schema's fields, what a line stores besides its text
//! ([`StoredRef`], read back as [`StoredLine`]), and the conversions both ways.

use std::collections::BTreeMap;
use std::sync::Arc;

use capstan_model::LogLine;
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, Schema, TEXT,
    TextFieldIndexing, Value,
};
use tantivy::{DocAddress, TantivyDocument};

use super::{Error, Store};
use crate::origin::Origin;

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub seq: Field,
    pub time: Field,
    pub origin: Field,
    pub raw: Field,
    pub level: Field,
    pub parsed: Field,
    /// What is stored besides the text: [`StoredLine`] as JSON.
    pub line: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // fast fields only: a range query reads the column; indexing them would add a term per
    // line to the term dictionary
    let seq = b.add_u64_field("seq", FAST);
    let time = b.add_i64_field("time", FAST);
    let origin = b.add_u64_field("origin", INDEXED | FAST);
    let raw = b.add_text_field("raw", TEXT | STORED);
    let level = b.add_text_field("level", STRING);
    let parsed = b.add_json_field(
        "fields",
        JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let line = b.add_text_field("line", STORED);
    let schema = b.build();
    (
        schema,
        Fields {
            seq,
            time,
            origin,
            raw,
            level,
            parsed,
            line,
        },
    )
}

/// A line on its way into the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Where it comes from (share one `Arc` per container and stream: the store numbers it
    /// once).
    pub origin: Arc<Origin>,
    /// A stable id (see [`LogLine::id`]).
    pub id: String,
    /// The engine's time, ns since the epoch.
    pub time_nano: i64,
    pub raw: String,
    /// The message a parser found (empty: the raw line is the message).
    pub message: String,
    pub level: Option<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// `fields` is `raw`'s JSON object as it is: stored once, as the text.
    pub fields_are_raw: bool,
    pub parse_error: bool,
    /// `raw` is the first part of a longer line (see [`LogLine::truncated`]).
    pub truncated: bool,
}

impl From<LogLine> for Entry {
    fn from(line: LogLine) -> Self {
        Self {
            origin: Arc::new(line.origin),
            id: line.id,
            time_nano: line.time_nano,
            raw: line.raw,
            message: line.message,
            level: line.level,
            fields: line.fields.into_iter().collect(),
            fields_are_raw: false,
            parse_error: line.parse_error,
            truncated: line.truncated,
        }
    }
}

/// What a line stores besides its text.
#[derive(Serialize)]
struct StoredRef<'a> {
    seq: u64,
    time: i64,
    origin: u64,
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The fields are the text's own JSON object (half the stored bytes of a JSON line).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fields_in_text: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    parse_error: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// [`StoredRef`] read back.
#[derive(Deserialize)]
struct StoredLine {
    seq: u64,
    time: i64,
    origin: u64,
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    fields_in_text: bool,
    #[serde(default)]
    parse_error: bool,
    #[serde(default)]
    truncated: bool,
}

pub(super) fn to_doc(f: &Fields, seq: u64, origin: u64, line: Entry) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(f.seq, seq);
    doc.add_i64(f.time, line.time_nano);
    doc.add_u64(f.origin, origin);
    doc.add_text(f.raw, &line.raw);
    if let Some(level) = &line.level {
        doc.add_text(f.level, level);
    }
    let stored = serde_json::to_string(&StoredRef {
        seq,
        time: line.time_nano,
        origin,
        id: &line.id,
        message: &line.message,
        level: line.level.as_deref(),
        fields: (!line.fields.is_empty() && !line.fields_are_raw).then_some(&line.fields),
        fields_in_text: line.fields_are_raw && !line.fields.is_empty(),
        parse_error: line.parse_error,
        truncated: line.truncated,
    })
    .unwrap_or_default();
    doc.add_text(f.line, stored);
    if !line.fields.is_empty() {
        doc.add_field_value(f.parsed, &serde_json::Value::Object(line.fields));
    }
    doc
}

impl Store {
    /// Lines read by [`Store::line`], each with its origin, under the lock for a moment.
    pub(super) fn with_origins(&self, lines: Vec<(LogLine, u64)>) -> Vec<LogLine> {
        let inner = self.lock();
        lines
            .into_iter()
            .map(|(mut line, origin)| {
                if let Some(o) = inner.origins.get(origin) {
                    line.origin = Origin::clone(o);
                }
                line
            })
            .collect()
    }

    /// The line at `addr`, and the number of its origin (filled in by [`Store::with_origins`]:
    /// reading documents needs no lock, the origins do).
    pub(super) fn line(
        &self,
        searcher: &tantivy::Searcher,
        addr: DocAddress,
    ) -> Result<(LogLine, u64), Error> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.err(e))?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let stored: StoredLine = serde_json::from_str(&text(self.f.line)).map_err(|e| {
            self.err(tantivy::TantivyError::InternalError(format!(
                "a stored line cannot be read: {e}"
            )))
        })?;
        let raw = text(self.f.raw);
        let fields = if stored.fields_in_text {
            crate::parse::json(&raw)
                .map(|f| f.into_iter().collect())
                .unwrap_or_default()
        } else {
            stored.fields
        };
        let line = LogLine {
            seq: stored.seq,
            id: stored.id,
            time: capstan_model::nanos_to_datetime(stored.time),
            time_nano: stored.time,
            raw,
            message: stored.message,
            level: stored.level,
            fields,
            parse_error: stored.parse_error,
            truncated: stored.truncated,
            origin: Origin::default(),
        };
        Ok((line, stored.origin))
    }
}
