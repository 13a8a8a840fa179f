//! The embedded state store: one SQLite file under the data dir (SQLite is compiled into the
//! binary), schema versions applied in order at open, WAL journaling, exactly one writer
//! connection and a small pool of readers.
//!
//! It owns the schema and the queries on it (events, images, containers). It must never talk to
//! the engine or decide what an event means; that belongs to the job crates. Every call runs
//! on tokio's blocking pool, never on the async threads.

pub mod containers;
mod error;
pub mod events;
pub mod images;
mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::OpenFlags;
pub use rusqlite::{Connection, Transaction};

pub use containers::ContainerRow;
pub use error::Error;
pub use events::{Cursor, EventFilter, NewEvent};
pub use images::{HistoryRow, ImageRow};

/// Handle on the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
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
        let mut writer = Connection::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        migrations::apply(&mut writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
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
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().map_err(|_| Error::Poisoned)?;
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
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
                None => open_reader(&inner.path)?,
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
        &self.inner.path
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
