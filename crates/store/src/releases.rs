//! The release ledger: one row per deploy of an app.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{Error, Store};

/// A release as stored. JSON columns are kept as text: the deploy job owns their shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub app: String,
    pub number: i64,
    pub created_nano: i64,
    /// Who asked (the token's name).
    pub actor: String,
    /// Where the model came from (JSON: files, content hash, git commit).
    pub source: String,
    /// The resolved model (JSON; secret and config contents are never in it).
    pub model: String,
    /// Service → image id (JSON).
    pub images: String,
    /// `running`, `succeeded`, `failed`, `rolled_back`.
    pub result: String,
    /// Per-service timings and steps, the error (JSON).
    pub detail: String,
}

const COLUMNS: &str = "app, number, created_nano, actor, source, model, images, result, detail";

fn row(r: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
    Ok(ReleaseRow {
        app: r.get(0)?,
        number: r.get(1)?,
        created_nano: r.get(2)?,
        actor: r.get(3)?,
        source: r.get(4)?,
        model: r.get(5)?,
        images: r.get(6)?,
        result: r.get(7)?,
        detail: r.get(8)?,
    })
}

/// Records a new release with the next number for its app; returns the number.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn begin(tx: &Transaction<'_>, mut release: ReleaseRow) -> Result<i64, Error> {
    let next: i64 = tx.query_row(
        "SELECT coalesce(max(number), 0) + 1 FROM releases WHERE app = ?1",
        [&release.app],
        |r| r.get(0),
    )?;
    release.number = next;
    tx.execute(
        &format!("INSERT INTO releases ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            release.app,
            release.number,
            release.created_nano,
            release.actor,
            release.source,
            release.model,
            release.images,
            release.result,
            release.detail
        ],
    )?;
    Ok(next)
}

/// Sets a release's outcome.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn finish(
    tx: &Transaction<'_>,
    app: &str,
    number: i64,
    result: &str,
    images: &str,
    detail: &str,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE releases SET result = ?3, images = ?4, detail = ?5 WHERE app = ?1 AND number = ?2",
        params![app, number, result, images, detail],
    )?;
    Ok(())
}

/// Replaces what a release records of its model and source (sealing what an older capstan
/// kept in plain text in them).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn rewrite(
    tx: &Transaction<'_>,
    app: &str,
    number: i64,
    model: &str,
    source: &str,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE releases SET model = ?3, source = ?4 WHERE app = ?1 AND number = ?2",
        params![app, number, model, source],
    )?;
    Ok(())
}

/// An app's releases, newest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn list(conn: &Connection, app: &str) -> Result<Vec<ReleaseRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM releases WHERE app = ?1 ORDER BY number DESC"
    ))?;
    let rows = stmt.query_map([app], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One release.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn get(conn: &Connection, app: &str, number: i64) -> Result<Option<ReleaseRow>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM releases WHERE app = ?1 AND number = ?2"
        ))?
        .query_row(params![app, number], row)
        .optional()?)
}

/// The newest release that succeeded: what runs.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn current(conn: &Connection, app: &str) -> Result<Option<ReleaseRow>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM releases WHERE app = ?1 AND result = 'succeeded' ORDER BY number DESC LIMIT 1"
        ))?
        .query_row([app], row)
        .optional()?)
}

/// The newest release of `app`, however it ended.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn newest(conn: &Connection, app: &str) -> Result<Option<ReleaseRow>, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM releases WHERE app = ?1 ORDER BY number DESC LIMIT 1"
        ))?
        .query_row([app], row)
        .optional()?)
}

/// Every app with a release, with its newest release.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn apps(conn: &Connection) -> Result<Vec<ReleaseRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM releases r WHERE number = (SELECT max(number) FROM releases WHERE app = r.app) ORDER BY app"
    ))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many releases ended each way (`succeeded`, `rolled_back`, `failed`, `down`, `running`),
/// over every app.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn results(conn: &Connection) -> Result<Vec<(String, i64)>, Error> {
    let mut stmt = conn
        .prepare_cached("SELECT result, count(*) FROM releases GROUP BY result ORDER BY result")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// See [`results`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn release_results(&self) -> Result<Vec<(String, i64)>, Error> {
        self.read(results).await
    }

    /// See [`list`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn releases(&self, app: String) -> Result<Vec<ReleaseRow>, Error> {
        self.read(move |c| list(c, &app)).await
    }

    /// See [`current`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn current_release(&self, app: String) -> Result<Option<ReleaseRow>, Error> {
        self.read(move |c| current(c, &app)).await
    }

    /// See [`newest`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn newest_release(&self, app: String) -> Result<Option<ReleaseRow>, Error> {
        self.read(move |c| newest(c, &app)).await
    }

    /// See [`get`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn release(&self, app: String, number: i64) -> Result<Option<ReleaseRow>, Error> {
        self.read(move |c| get(c, &app, number)).await
    }

    /// See [`apps`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn apps(&self) -> Result<Vec<ReleaseRow>, Error> {
        self.read(apps).await
    }

    /// See [`begin`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn begin_release(&self, release: ReleaseRow) -> Result<i64, Error> {
        self.write(move |tx| begin(tx, release)).await
    }

    /// See [`rewrite`]; the old text is scrubbed from the files ([`Store::write_scrubbed`]).
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn rewrite_release(
        &self,
        app: String,
        number: i64,
        model: String,
        source: String,
    ) -> Result<(), Error> {
        self.write_scrubbed(move |tx| rewrite(tx, &app, number, &model, &source))
            .await
    }

    /// See [`finish`].
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn finish_release(
        &self,
        app: String,
        number: i64,
        result: String,
        images: String,
        detail: String,
    ) -> Result<(), Error> {
        self.write(move |tx| finish(tx, &app, number, &result, &images, &detail))
            .await
    }
}
