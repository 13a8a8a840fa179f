use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The object kinds the Docker engine reports events for.
pub type EventType = String;

/// One journaled engine event, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Journal sequence number (unique, increasing in insertion order).
    pub seq: i64,
    /// When the engine says the event happened, RFC 3339 UTC with nanoseconds.
    pub time: DateTime<Utc>,
    /// Nanoseconds since the Unix epoch (the engine's `timeNano`).
    pub time_nano: i64,
    /// `image`, `container`, `network`, `volume`, `daemon`, ...
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `pull`, `tag`, `start`, `die`, ...
    pub action: String,
    /// The engine's actor id: an image id, a reference (pull, push) or a container id.
    pub actor: String,
    /// The image id this event is about, resolved by capstan (also for pull and push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The engine's actor attributes (name, image, exitCode, ...).
    pub attributes: BTreeMap<String, String>,
    /// `local` or `swarm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// True when capstan did not see this event but inferred it from an inventory difference
    /// found after it could not watch the engine.
    pub inferred: bool,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
