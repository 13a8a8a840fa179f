//! One SQLite database as every capstan database is used (the state store, the metrics
//! history, the vulnerability database): opened and migrated by [`migrations::open`], one
//! connection that writes behind a lock, each write one transaction that commits only when it
//! succeeds. Calls block: async callers run them on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, Transaction};

use crate::{Error, migrations};

/// A database and its writing connection.
pub struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating) the database at `path` and applies the `migrations` it has not had.
    ///
    /// # Errors
    /// As [`migrations::open`].
    pub fn open(path: &Path, migrations: &[&str]) -> Result<Self, Error> {
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(migrations::open(path, migrations)?),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction: committed when `f` returns `Ok`, rolled back when it
    /// returns `Err` or panics, so a failed write changes nothing. A panic of an earlier
    /// writer left nothing half-done (its transaction rolled back), so the lock is taken over.
    ///
    /// # Errors
    /// What `f` returns, or SQLite's error when the transaction cannot begin or commit.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// As [`Db::write`], and on disk when it returns, even across a power cut: for what must
    /// never come back once done (a revoked token, a removed user, an ended session). Other
    /// writes are synced with the WAL's checkpoints, which a crash of capstan alone never loses.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_synced<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        write_with(&mut conn, ("synchronous", "FULL", "NORMAL"), f)
    }

    /// As [`Db::write`], for a change that removes what must not stay readable in the files (a
    /// secret an older capstan kept in plain text): the space the old values took is zeroed
    /// (`secure_delete`), and the write-ahead log is then checkpointed into the database and
    /// truncated, so the old text is in neither file. A reader still on the old pages holds
    /// the checkpoint back for up to the busy timeout; the next checkpoint finishes it then.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_scrubbed<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let out = write_with(&mut conn, ("secure_delete", "ON", "OFF"), f)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(out)
    }

    /// Runs `f` on the writing connection outside a transaction: a read that must see the
    /// writes before it, or a single statement.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }
}

/// One write transaction with pragma `name` set to `during` for it, and back to `after`.
fn write_with<T, E>(
    conn: &mut Connection,
    (name, during, after): (&str, &str, &str),
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<rusqlite::Error>,
{
    conn.pragma_update(None, name, during)?;
    let tx = conn.transaction()?;
    let out = f(&tx).and_then(|out| tx.commit().map(|()| out).map_err(E::from));
    conn.pragma_update(None, name, after)?;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[&str] = &["CREATE TABLE t (v INTEGER NOT NULL)"];

    fn count(db: &Db) -> i64 {
        db.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .unwrap()
    }

    #[test]
    fn a_failed_write_changes_nothing_and_a_good_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.db"), SCHEMA).unwrap();
        let failed: Result<(), Error> = db.write(|tx| {
            tx.execute("INSERT INTO t (v) VALUES (1)", [])?;
            tx.execute("INSERT INTO t (v) VALUES (NULL)", [])?;
            Ok(())
        });
        assert!(matches!(failed, Err(Error::Sqlite(_))), "{failed:?}");
        assert_eq!(count(&db), 0);
        let synced: Result<(), Error> = db.write_synced(|tx| {
            tx.execute("INSERT INTO t (v) VALUES (NULL)", [])?;
            Ok(())
        });
        assert!(synced.is_err());
        assert_eq!(count(&db), 0, "a failed synced write changes nothing");
        let mode: i64 = db
            .read(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, 1, "back to NORMAL after a synced write");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), Error> = db.write(|tx| {
                tx.execute("INSERT INTO t (v) VALUES (1)", [])?;
                panic!("a writer's bug");
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(count(&db), 0, "the panicking writer's row is rolled back");
        db.write(|tx| tx.execute("INSERT INTO t (v) VALUES (2)", []).map(drop))
            .unwrap();
        assert_eq!(count(&db), 1);
        drop(db);
        let again = Db::open(&dir.path().join("x.db"), SCHEMA).unwrap();
        assert_eq!(count(&again), 1, "committed to the file");
    }
}
