//! The container inventory (what the engine ran, kept after removal).

use capstan_model::Container;
use rusqlite::{Connection, Transaction, params};

use crate::Error;

/// An inventory row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// What the engine says.
    pub container: Container,
    /// First time capstan saw it.
    pub first_seen: i64,
    /// Last time capstan saw it.
    pub last_seen: i64,
    /// When it was removed.
    pub removed_nano: Option<i64>,
    /// Newest event that changed it (see `ImageRow::last_event_nano`).
    pub last_event_nano: i64,
}

/// Inserts or updates a container row.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn upsert(tx: &Transaction<'_>, row: &ContainerRow) -> Result<(), Error> {
    let c = &row.container;
    tx.prepare_cached(
        "INSERT INTO containers (id, name, image, image_id, state, status, created_nano, labels,
                                 first_seen, last_seen, removed_nano, last_event_nano)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, image = excluded.image, image_id = excluded.image_id,
            state = excluded.state, status = excluded.status, labels = excluded.labels,
            last_seen = excluded.last_seen, removed_nano = excluded.removed_nano,
            last_event_nano = max(last_event_nano, excluded.last_event_nano)",
    )?
    .execute(params![
        c.id,
        c.name,
        c.image,
        c.image_id,
        c.state,
        c.status,
        c.created.timestamp_nanos_opt().unwrap_or_default(),
        serde_json::to_string(&c.labels)?,
        row.first_seen,
        row.last_seen,
        row.removed_nano,
        row.last_event_nano,
    ])?;
    Ok(())
}

/// Marks a container removed.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn mark_removed(tx: &Transaction<'_>, id: &str, at: i64, event_nano: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE containers SET removed_nano = ?2, state = 'removed', status = 'removed',
                last_event_nano = max(last_event_nano, ?3)
         WHERE id = ?1 AND removed_nano IS NULL",
    )?
    .execute(params![id, at, event_nano])?;
    Ok(())
}

/// Containers not removed: `(id, state, last_event_nano)`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn present(conn: &Connection) -> Result<Vec<(String, String, i64)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, state, last_event_nano FROM containers WHERE removed_nano IS NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `(first_seen, last_event_nano)` of a known container.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn seen(conn: &Connection, id: &str) -> Result<Option<(i64, i64, Option<i64>)>, Error> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(
            "SELECT first_seen, last_event_nano, removed_nano FROM containers WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}
