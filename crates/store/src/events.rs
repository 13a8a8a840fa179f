//! The event journal table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use capstan_model::{Event, nanos_to_datetime};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{Error, Store};

/// An event to journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Engine time in nanoseconds (capstan's view of the engine clock for inferred events).
    pub time_nano: i64,
    /// Dedup identity (see `capstan_engine::RawEvent::identity`); ignored for inferred events.
    pub identity: i64,
    /// Event type.
    pub kind: String,
    /// Action.
    pub action: String,
    /// Actor id.
    pub actor: String,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Scope.
    pub scope: Option<String>,
    /// Resolved image id.
    pub image_id: Option<String>,
    /// Inferred from an inventory difference rather than seen.
    pub inferred: bool,
}

impl NewEvent {
    /// An event of capstan's own doing (type `capstan`, now, not seen on the engine), which
    /// alert rules can match like any other.
    pub fn capstan(
        action: capstan_model::CapstanAction,
        actor: String,
        attributes: BTreeMap<String, String>,
    ) -> Self {
        Self {
            time_nano: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            identity: 0,
            kind: "capstan".into(),
            action: action.as_str().into(),
            actor,
            attributes,
            scope: Some("local".into()),
            image_id: None,
            inferred: true,
        }
    }
}

/// Position in the newest-first order: `(time_nano, seq)` of the last event returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Time of the last event of the previous page.
    pub time_nano: i64,
    /// Its sequence number.
    pub seq: i64,
}

impl Cursor {
    /// Opaque text form handed to clients.
    pub fn encode(self) -> String {
        format!("{:x}.{:x}", self.time_nano, self.seq)
    }

    /// Parses what [`Cursor::encode`] produced; `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let (t, s) = s.split_once('.')?;
        Some(Self {
            time_nano: i64::from_str_radix(t, 16).ok()?,
            seq: i64::from_str_radix(s, 16).ok()?,
        })
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these types (empty: all).
    pub kinds: Vec<String>,
    /// Any of these actions (empty: all).
    pub actions: Vec<String>,
    /// Events about this image id (resolved) or with this actor.
    pub image_ids: Vec<String>,
    /// Events with this actor id (or prefix of 12+ characters).
    pub actor: Option<String>,
    /// From this time on, inclusive.
    pub since_nano: Option<i64>,
    /// Up to this time, inclusive.
    pub until_nano: Option<i64>,
    /// Only events after this sequence number (live streams).
    pub after_seq: Option<i64>,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
    /// Inferred ones only (`Some(true)`), seen ones only (`Some(false)`).
    pub inferred: Option<bool>,
    /// The fleet host they happened on (their `host` attribute); `local`: this capstan's own.
    pub host: Option<String>,
}

/// An event's fleet host: its `host` attribute, `local` without one.
fn host_of(e: &Event) -> &str {
    e.attributes.get("host").map_or("local", String::as_str)
}

impl EventFilter {
    /// Whether an event passes the filter (for live streams, mirrors the SQL below).
    pub fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.actions.is_empty() || self.actions.contains(&e.action))
            && (self.image_ids.is_empty()
                || self
                    .image_ids
                    .iter()
                    .any(|i| e.image_id.as_deref() == Some(i.as_str()) || e.actor == *i))
            && self
                .actor
                .as_ref()
                .is_none_or(|a| e.actor.starts_with(a.as_str()))
            && self.since_nano.is_none_or(|s| e.time_nano >= s)
            && self.until_nano.is_none_or(|u| e.time_nano <= u)
            && self.after_seq.is_none_or(|s| e.seq > s)
            && self.inferred.is_none_or(|i| e.inferred == i)
            && self.host.as_deref().is_none_or(|h| host_of(e) == h)
    }
}

const COLUMNS: &str = "seq, time_nano, type, action, actor, attributes, scope, image_id, inferred";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<(Event, String)> {
    let time_nano: i64 = row.get(1)?;
    Ok((
        Event {
            seq: row.get(0)?,
            time: nanos_to_datetime(time_nano),
            time_nano,
            kind: row.get(2)?,
            action: row.get(3)?,
            actor: row.get(4)?,
            attributes: BTreeMap::new(),
            scope: row.get(6)?,
            image_id: row.get(7)?,
            inferred: row.get(8)?,
        },
        row.get(5)?,
    ))
}

/// Runs an events `SELECT {COLUMNS}` with its arguments.
fn query(conn: &Connection, sql: &str, args: Vec<Value>) -> Result<Vec<Event>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), event_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (mut event, attributes) = row?;
        event.attributes = serde_json::from_str(&attributes)?;
        out.push(event);
    }
    Ok(out)
}

/// Inserts an event; `Ok(None)` when it is already journaled (same time and identity).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn insert(tx: &Transaction<'_>, e: &NewEvent) -> Result<Option<Event>, Error> {
    let attributes = serde_json::to_string(&e.attributes)?;
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events
                (time_nano, identity, type, action, actor, attributes, scope, image_id, inferred)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            e.time_nano,
            if e.inferred { 0 } else { e.identity },
            e.kind,
            e.action,
            e.actor,
            attributes,
            e.scope,
            e.image_id,
            e.inferred
        ])?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Event {
        seq: tx.last_insert_rowid(),
        time: nanos_to_datetime(e.time_nano),
        time_nano: e.time_nano,
        kind: e.kind.clone(),
        action: e.action.clone(),
        actor: e.actor.clone(),
        image_id: e.image_id.clone(),
        attributes: e.attributes.clone(),
        scope: e.scope.clone(),
        inferred: e.inferred,
    }))
}

/// Time of the newest event seen on the engine (inferred ones excluded): where to resume.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn last_seen_nanos(conn: &Connection) -> Result<Option<i64>, Error> {
    Ok(conn
        .query_row(
            // a cluster's events come from its managers, a fleet host's from its agent, on
            // their clocks: they say nothing of where the local engine's stream stopped
            "SELECT time_nano FROM events
             WHERE inferred = 0 AND (scope IS NULL OR scope NOT IN ('swarm', 'host'))
             ORDER BY time_nano DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// Lists events matching `filter`, newest first, at most `limit`.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn list(conn: &Connection, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, Error> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut any_of = |sql: &mut String, column: &str, values: &[String]| {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(", ");
        let _ = write!(sql, " AND {column} IN ({marks})");
        args.extend(values.iter().cloned().map(Value::Text));
    };
    any_of(&mut sql, "type", &filter.kinds);
    any_of(&mut sql, "action", &filter.actions);
    if !filter.image_ids.is_empty() {
        let marks = vec!["?"; filter.image_ids.len()].join(", ");
        let _ = write!(sql, " AND (image_id IN ({marks}) OR actor IN ({marks}))");
        args.extend(filter.image_ids.iter().cloned().map(Value::Text));
        args.extend(filter.image_ids.iter().cloned().map(Value::Text));
    }
    if let Some(actor) = &filter.actor {
        sql.push_str(" AND substr(actor, 1, length(?)) = ?");
        args.push(Value::Text(actor.clone()));
        args.push(Value::Text(actor.clone()));
    }
    if let Some(s) = filter.since_nano {
        sql.push_str(" AND time_nano >= ?");
        args.push(Value::Integer(s));
    }
    if let Some(u) = filter.until_nano {
        sql.push_str(" AND time_nano <= ?");
        args.push(Value::Integer(u));
    }
    if let Some(s) = filter.after_seq {
        sql.push_str(" AND seq > ?");
        args.push(Value::Integer(s));
    }
    if let Some(i) = filter.inferred {
        sql.push_str(" AND inferred = ?");
        args.push(Value::Integer(i64::from(i)));
    }
    if let Some(h) = &filter.host {
        sql.push_str(" AND coalesce(json_extract(attributes, '$.host'), 'local') = ?");
        args.push(Value::Text(h.clone()));
    }
    if let Some(c) = filter.cursor {
        sql.push_str(" AND (time_nano < ? OR (time_nano = ? AND seq < ?))");
        args.extend([c.time_nano, c.time_nano, c.seq].map(Value::Integer));
    }
    sql.push_str(" ORDER BY time_nano DESC, seq DESC LIMIT ?");
    args.push(Value::Integer(limit as i64));
    query(conn, &sql, args)
}

/// The image id a reference (`repo:tag`, normalised) was last given at or before `before`: by a
/// `tag` event naming it, or a resolved `pull`/`push` of it.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn last_assignment(
    conn: &Connection,
    reference: &str,
    before: i64,
) -> Result<Option<String>, Error> {
    // references are stored as the engine wrote them; the `:latest` default is added here
    let bare = reference.strip_suffix(":latest").unwrap_or(reference);
    Ok(conn
        .prepare_cached(
            "SELECT image_id FROM events
             WHERE type = 'image' AND image_id IS NOT NULL AND inferred = 0 AND time_nano <= ?1
               AND (scope IS NULL OR scope != 'host')
               AND ((action = 'tag' AND json_extract(attributes, '$.name') IN (?2, ?3))
                 OR (action IN ('pull', 'push') AND actor IN (?2, ?3)))
             ORDER BY time_nano DESC, seq DESC LIMIT 1",
        )?
        .query_row(params![before, reference, bare], |r| r.get(0))
        .optional()?)
}

/// Events of `kind` with one of `actions` after sequence number `seq`, in journal order (oldest
/// first), at most `limit`: what a consumer with its own cursor reads next.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn after_seq(
    conn: &Connection,
    seq: i64,
    kind: &str,
    actions: &[String],
    limit: usize,
) -> Result<Vec<Event>, Error> {
    let marks = vec!["?"; actions.len().max(1)].join(", ");
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE seq > ? AND type = ? AND action IN ({marks})
         ORDER BY seq LIMIT ?"
    );
    let mut args = vec![Value::Integer(seq), Value::Text(kind.to_owned())];
    if actions.is_empty() {
        args.push(Value::Null);
    }
    args.extend(actions.iter().cloned().map(Value::Text));
    args.push(Value::Integer(limit as i64));
    query(conn, &sql, args)
}

/// This journal's own events (not those fleet hosts sent) after `seq`, oldest first, at most
/// `limit`: what an agent ships to its hub next.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn own_after(conn: &Connection, seq: i64, limit: usize) -> Result<Vec<Event>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE seq > ? AND (scope IS NULL OR scope != 'host')
         ORDER BY seq LIMIT ?"
    );
    query(
        conn,
        &sql,
        vec![Value::Integer(seq), Value::Integer(limit as i64)],
    )
}

/// The newest sequence number (0 for an empty journal).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn max_seq(conn: &Connection) -> Result<i64, Error> {
    Ok(conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?)
}

/// Number of journaled events.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn count(conn: &Connection) -> Result<i64, Error> {
    Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?)
}

impl Store {
    /// Journals an event of capstan's own doing ([`NewEvent::capstan`]): what the healer, the
    /// update watcher, the auto-updater and the scanner did; and hands it to `live`
    /// subscribers; returns it. A failure is logged (the caller's work is done either way).
    pub async fn record(
        &self,
        live: &tokio::sync::broadcast::Sender<Event>,
        action: capstan_model::CapstanAction,
        actor: String,
        attributes: BTreeMap<String, String>,
    ) -> Option<Event> {
        let event = NewEvent::capstan(action, actor, attributes);
        match self.write(move |tx| insert(tx, &event)).await {
            Ok(Some(e)) => {
                let _ = live.send(e.clone());
                Some(e)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(action = action.as_str(), error = %e, "cannot journal an event of capstan's");
                None
            }
        }
    }

    /// See [`list`].
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Json`].
    pub async fn events(&self, filter: EventFilter, limit: usize) -> Result<Vec<Event>, Error> {
        self.read(move |c| list(c, &filter, limit)).await
    }

    /// See [`last_seen_nanos`] and [`count`]: `(newest seen event time, total events)`.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn journal_position(&self) -> Result<(Option<i64>, i64), Error> {
        self.read(|c| Ok((last_seen_nanos(c)?, count(c)?))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            time_nano: 1_700_000_000_123_456_789,
            seq: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "abc", "x.y", "1.", ".1", "1.2.3"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
