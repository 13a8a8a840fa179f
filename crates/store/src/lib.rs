//! The embedded state store: one SQLite file under the data dir (SQLite is compiled into the
//! binary), schema versions applied in order at open, WAL journaling, exactly one writer
//! connection and a small pool of readers.
//!
//! It owns the schema and the queries on it (events, images, containers). It must never talk to
//! the engine or decide what an event means; that belongs to the job crates. Every call runs
//! on tokio's blocking pool, never on the async threads.

pub mod access;
pub mod containers;
mod db;
mod error;
pub mod events;
pub mod files;
pub mod fleet;
pub mod images;
pub mod migrations;
pub mod pipeline;
pub mod policy;
pub mod releases;
pub mod retention;
pub mod security;
pub mod stopped;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::OpenFlags;
pub use rusqlite::{Connection, Transaction};

pub use access::{AuditRow, SessionRow, TokenRow, UserRow};
pub use containers::ContainerRow;
pub use db::Db;
pub use error::Error;
pub use events::{Cursor, EventFilter, NewEvent};
pub use images::{HistoryRow, ImageRow};
pub use releases::ReleaseRow;

/// Handle on the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Db,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.writer.path())
            .finish()
    }
}

/// Readers kept open for reuse; more are opened under load and closed after.
const IDLE_READERS: usize = 4;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`Error::Open`] when the file cannot be opened, [`Error::Migration`] when the schema is
    /// newer than this binary or a migration fails.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Db::open(path, migrations::MIGRATIONS)?,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` in one write transaction on the single writer connection; commits when `f`
    /// returns `Ok`, rolls back otherwise.
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Sqlite`] when the commit fails.
    pub async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.writer.write(f))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// As [`Store::write`], synced to disk before it returns ([`Db::write_synced`]).
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Sqlite`] when the commit fails.
    pub async fn write_synced<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.writer.write_synced(f))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// As [`Store::write`], the old values scrubbed from the files ([`Db::write_scrubbed`]).
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Sqlite`] when the commit fails.
    pub async fn write_scrubbed<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.writer.write_scrubbed(f))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Runs `f` on a read-only connection (WAL readers never block the writer).
    ///
    /// # Errors
    /// What `f` returns, or [`Error::Open`] when no reader can be opened.
    pub async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().map_err(|_| Error::Poisoned)?.pop() {
                Some(conn) => conn,
                None => open_reader(inner.writer.path())?,
            };
            let out = f(&conn);
            let mut idle = inner.readers.lock().map_err(|_| Error::Poisoned)?;
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        self.inner.writer.path()
    }
}

fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventFilter, NewEvent};

    fn event(time_nano: i64, action: &str) -> NewEvent {
        NewEvent {
            time_nano,
            identity: 7,
            kind: "image".into(),
            action: action.into(),
            actor: "sha256:aa".into(),
            attributes: [("name".to_owned(), "x:1".to_owned())].into(),
            scope: Some("local".into()),
            image_id: Some("sha256:aa".into()),
            inferred: false,
        }
    }

    #[tokio::test]
    async fn the_newest_release_is_the_last_begun_however_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        assert!(store.newest_release("shop".into()).await.unwrap().is_none());
        let release = |result: &str| ReleaseRow {
            app: "shop".into(),
            number: 0,
            created_nano: 1,
            actor: "admin".into(),
            source: "{}".into(),
            model: "{}".into(),
            images: "{}".into(),
            result: result.into(),
            detail: "{}".into(),
        };
        store.begin_release(release("succeeded")).await.unwrap();
        let second = store.begin_release(release("rolled_back")).await.unwrap();
        let newest = store.newest_release("shop".into()).await.unwrap().unwrap();
        assert_eq!(
            (newest.number, newest.result.as_str()),
            (second, "rolled_back")
        );
        // what runs is the one that succeeded
        let current = store.current_release("shop".into()).await.unwrap().unwrap();
        assert_eq!(current.number, second - 1);
    }

    #[tokio::test]
    async fn an_event_is_stored_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let first = store
            .write(|tx| events::insert(tx, &event(10, "tag")))
            .await
            .unwrap();
        assert!(first.is_some());
        // the same delivery again (a replay) is ignored
        let again = store
            .write(|tx| events::insert(tx, &event(10, "tag")))
            .await
            .unwrap();
        assert_eq!(again, None);
        // inferred events are never deduplicated
        for _ in 0..2 {
            let mut e = event(10, "tag");
            e.inferred = true;
            assert!(
                store
                    .write(move |tx| events::insert(tx, &e))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        let (last, count) = store.journal_position().await.unwrap();
        assert_eq!((last, count), (Some(10), 3));
        let seen = store
            .events(
                EventFilter {
                    inferred: Some(false),
                    ..EventFilter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].attributes.get("name").map(String::as_str),
            Some("x:1")
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let result = store
            .write(|tx| {
                events::insert(tx, &event(1, "tag"))?;
                Err::<(), _>(Error::Migration("boom".into()))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(store.journal_position().await.unwrap(), (None, 0));
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store
            .write(|tx| {
                for t in 1..=5 {
                    events::insert(tx, &event(t, "tag"))?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let page = store.events(EventFilter::default(), 2).await.unwrap();
        assert_eq!(page.iter().map(|e| e.time_nano).collect::<Vec<_>>(), [5, 4]);
        let cursor = Cursor {
            time_nano: 4,
            seq: page[1].seq,
        };
        let next = store
            .events(
                EventFilter {
                    cursor: Some(cursor),
                    ..EventFilter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|e| e.time_nano).collect::<Vec<_>>(),
            [3, 2, 1]
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer capstan"), "{err}");
    }
}
