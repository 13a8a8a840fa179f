//! Sinks: each ships the stored lines that match its query, in store order, with a cursor of
//! its own (`<data>/logs/sinks/<name>.cursor`, the last sequence number delivered). The cursor
//! moves only after a whole batch is delivered, so delivery is at-least-once across restarts
//! and outages: a crash between the two sends the batch again, never loses it, and every line
//! carries a stable id so that the remote store can collapse the repeat (ClickHouse's
//! `ReplacingMergeTree`, Elasticsearch's `_id`). A failed delivery is retried with exponential
//! backoff and jitter (up to 30 s, longer when the server's `Retry-After` says so) and never
//! holds back other sinks or collection.
//!
//! Each kind lives in its own module, split the same way: its `Config` (the `[[logs.sinks]]`
//! keys) and its `Sink` (one batch in, a [`Delivery`] or an [`Error`] out).

mod clickhouse;
mod config;
mod elasticsearch;
mod file;
mod loki;
mod runner;
mod webhook;

pub use capstan_outbound::{BasicAuth, Error, Secret, TlsConfig};
pub use config::{Kind, SinkConfig};

/// What every delivery over HTTP shares, under the name the sinks use for it.
use capstan_outbound as http;
pub use runner::{Delivery, SinkSnapshot, SinkStats, run};
