//! The pipeline's records: each app's git source, the webhook deliveries it received, and its
//! builds. The pipeline crate owns what they mean; this keeps them.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{Error, Store};

/// Deliveries kept per app (the oldest go first).
pub const DELIVERIES_KEPT: i64 = 200;

/// One webhook delivery as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryRow {
    pub seq: i64,
    pub app: String,
    /// The provider's delivery id; empty when it sent none (or when refused, never read).
    pub delivery: String,
    pub provider: String,
    pub event: String,
    pub received_nano: i64,
    /// `accepted`, `skipped`, `refused`, `failed`.
    pub outcome: String,
    pub reason: String,
    pub commit: String,
    pub build: Option<i64>,
}

/// How a delivery was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Recorded, with its sequence number.
    New(i64),
    /// Its id was taken before: a replay.
    Replay,
}

/// Records a delivery, unless its id was recorded for the app before (a refusal does not
/// take the id); keeps the app's last [`DELIVERIES_KEPT`].
///
/// # Errors
/// [`Error::Sqlite`].
pub fn record_delivery(tx: &Transaction<'_>, d: &DeliveryRow) -> Result<Taken, Error> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO hook_deliveries
           (app, delivery, provider, event, received_nano, outcome, reason, commit_sha, build)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            d.app,
            d.delivery,
            d.provider,
            d.event,
            d.received_nano,
            d.outcome,
            d.reason,
            d.commit,
            d.build
        ],
    )?;
    if inserted == 0 {
        return Ok(Taken::Replay);
    }
    let seq = tx.last_insert_rowid();
    tx.execute(
        "DELETE FROM hook_deliveries WHERE app = ?1 AND seq <= (
           SELECT seq FROM hook_deliveries WHERE app = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![d.app, DELIVERIES_KEPT],
    )?;
    Ok(Taken::New(seq))
}

/// Says how a recorded delivery ended (`outcome`, `reason`, the build it queued).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn settle_delivery(
    tx: &Transaction<'_>,
    seq: i64,
    outcome: &str,
    reason: &str,
    build: Option<i64>,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE hook_deliveries SET outcome = ?2, reason = ?3, build = ?4 WHERE seq = ?1",
        params![seq, outcome, reason, build],
    )?;
    Ok(())
}

/// The app's last `limit` deliveries, newest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn deliveries(conn: &Connection, app: &str, limit: i64) -> Result<Vec<DeliveryRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, app, delivery, provider, event, received_nano, outcome, reason, commit_sha, build
         FROM hook_deliveries WHERE app = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![app, limit], |r| {
        Ok(DeliveryRow {
            seq: r.get(0)?,
            app: r.get(1)?,
            delivery: r.get(2)?,
            provider: r.get(3)?,
            event: r.get(4)?,
            received_nano: r.get(5)?,
            outcome: r.get(6)?,
            reason: r.get(7)?,
            commit: r.get(8)?,
            build: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets (or with `None`, forgets) the app's source (JSON).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn set_source(
    tx: &Transaction<'_>,
    app: &str,
    source: Option<&str>,
    now_nano: i64,
) -> Result<(), Error> {
    match source {
        Some(s) => tx.execute(
            "INSERT INTO app_sources (app, source, updated_nano) VALUES (?1, ?2, ?3)
             ON CONFLICT (app) DO UPDATE SET source = ?2, updated_nano = ?3",
            params![app, s, now_nano],
        )?,
        None => tx.execute("DELETE FROM app_sources WHERE app = ?1", [app])?,
    };
    Ok(())
}

/// The app's source (JSON), if it has one.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn source(conn: &Connection, app: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .query_row(
            "SELECT source FROM app_sources WHERE app = ?1",
            [app],
            |r| r.get(0),
        )
        .optional()?)
}

/// One build as kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildRow {
    pub id: i64,
    pub app: String,
    pub service: String,
    pub branch: String,
    pub commit: String,
    pub author: String,
    pub message: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `superseded`.
    pub status: String,
    /// `buildkit` or `classic`, once it ran.
    pub builder: String,
    pub queued_nano: i64,
    pub started_nano: Option<i64>,
    pub finished_nano: Option<i64>,
    /// The image reference built (`repo:tag`) and, once pushed, its digest.
    pub image: String,
    pub digest: String,
    /// The release it became.
    pub release: Option<i64>,
    pub error: String,
    /// Steps, scan findings, preview (JSON; the pipeline's shape).
    pub detail: String,
}

const BUILD_COLUMNS: &str = "id, app, service, branch, commit_sha, author, message, status, builder, \
     queued_nano, started_nano, finished_nano, image, digest, release, error, detail";

fn build_row(r: &Row<'_>) -> rusqlite::Result<BuildRow> {
    Ok(BuildRow {
        id: r.get(0)?,
        app: r.get(1)?,
        service: r.get(2)?,
        branch: r.get(3)?,
        commit: r.get(4)?,
        author: r.get(5)?,
        message: r.get(6)?,
        status: r.get(7)?,
        builder: r.get(8)?,
        queued_nano: r.get(9)?,
        started_nano: r.get(10)?,
        finished_nano: r.get(11)?,
        image: r.get(12)?,
        digest: r.get(13)?,
        release: r.get(14)?,
        error: r.get(15)?,
        detail: r.get(16)?,
    })
}

/// Queues a build; returns its id.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn queue_build(tx: &Transaction<'_>, b: &BuildRow) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO builds (app, service, branch, commit_sha, author, message, status, queued_nano, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8)",
        params![
            b.app,
            b.service,
            b.branch,
            b.commit,
            b.author,
            b.message,
            b.queued_nano,
            b.detail
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Writes a build's changing columns back.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn update_build(tx: &Transaction<'_>, b: &BuildRow) -> Result<(), Error> {
    tx.execute(
        "UPDATE builds SET status = ?2, builder = ?3, started_nano = ?4, finished_nano = ?5,
           image = ?6, digest = ?7, release = ?8, error = ?9, detail = ?10, service = ?11
         WHERE id = ?1",
        params![
            b.id,
            b.status,
            b.builder,
            b.started_nano,
            b.finished_nano,
            b.image,
            b.digest,
            b.release,
            b.error,
            b.detail,
            b.service
        ],
    )?;
    Ok(())
}

/// A build by id.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn build(conn: &Connection, id: i64) -> Result<Option<BuildRow>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1"),
            [id],
            build_row,
        )
        .optional()?)
}

/// The last `limit` builds (of `app`, or of every app), newest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn builds(conn: &Connection, app: Option<&str>, limit: i64) -> Result<Vec<BuildRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {BUILD_COLUMNS} FROM builds WHERE ?1 IS NULL OR app = ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![app, limit], build_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The queued builds, oldest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn queued_builds(conn: &Connection) -> Result<Vec<BuildRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {BUILD_COLUMNS} FROM builds WHERE status = 'queued' ORDER BY id"
    ))?;
    let rows = stmt.query_map([], build_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks every queued build of `app` older than `newest` superseded; returns their ids.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn supersede_queued(
    tx: &Transaction<'_>,
    app: &str,
    newest: i64,
    now_nano: i64,
) -> Result<Vec<i64>, Error> {
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM builds WHERE app = ?1 AND status = 'queued' AND id < ?2",
        )?;
        let rows = stmt.query_map(params![app, newest], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    tx.execute(
        "UPDATE builds SET status = 'superseded', finished_nano = ?3,
               error = 'a newer push of the app came (build ' || ?2 || ')'
             WHERE app = ?1 AND status = 'queued' AND id < ?2",
        params![app, newest, now_nano],
    )?;
    Ok(ids)
}

/// Marks the builds a stopped capstan left running as failed; returns how many.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn fail_interrupted(tx: &Transaction<'_>, now_nano: i64) -> Result<usize, Error> {
    Ok(tx.execute(
        "UPDATE builds SET status = 'failed', finished_nano = ?1,
           error = 'capstan stopped while it ran; push again to build it'
         WHERE status = 'running'",
        [now_nano],
    )?)
}

/// A preview app: its parent, branch and when it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreviewRow {
    pub app: String,
    pub parent: String,
    pub branch: String,
    pub expires_nano: i64,
}

/// Records (or extends) a preview.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn set_preview(tx: &Transaction<'_>, p: &PreviewRow) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO previews (app, parent, branch, expires_nano) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app) DO UPDATE SET expires_nano = ?4",
        params![p.app, p.parent, p.branch, p.expires_nano],
    )?;
    Ok(())
}

/// Makes a preview due now (its branch is gone, its pull request closed).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn expire_preview(tx: &Transaction<'_>, app: &str, now_nano: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE previews SET expires_nano = min(expires_nano, ?2) WHERE app = ?1",
        params![app, now_nano],
    )?;
    Ok(())
}

/// Forgets a preview (it was removed).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn forget_preview(tx: &Transaction<'_>, app: &str) -> Result<(), Error> {
    tx.execute("DELETE FROM previews WHERE app = ?1", [app])?;
    Ok(())
}

/// The previews due at `now_nano`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn due_previews(conn: &Connection, now_nano: i64) -> Result<Vec<PreviewRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, parent, branch, expires_nano FROM previews WHERE expires_nano <= ?1",
    )?;
    let rows = stmt.query_map([now_nano], |r| {
        Ok(PreviewRow {
            app: r.get(0)?,
            parent: r.get(1)?,
            branch: r.get(2)?,
            expires_nano: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// [`due_previews`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn due_previews(&self, now_nano: i64) -> Result<Vec<PreviewRow>, Error> {
        self.read(move |c| due_previews(c, now_nano)).await
    }

    /// [`queued_builds`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn queued_builds(&self) -> Result<Vec<BuildRow>, Error> {
        self.read(queued_builds).await
    }

    /// [`deliveries`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn deliveries(&self, app: String, limit: i64) -> Result<Vec<DeliveryRow>, Error> {
        self.read(move |c| deliveries(c, &app, limit)).await
    }

    /// [`source`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn source(&self, app: String) -> Result<Option<String>, Error> {
        self.read(move |c| source(c, &app)).await
    }

    /// [`build`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn build(&self, id: i64) -> Result<Option<BuildRow>, Error> {
        self.read(move |c| build(c, id)).await
    }

    /// [`builds`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn builds(&self, app: Option<String>, limit: i64) -> Result<Vec<BuildRow>, Error> {
        self.read(move |c| builds(c, app.as_deref(), limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_is_taken_once_per_app_and_refusals_take_none() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("s.db"), crate::migrations::MIGRATIONS).unwrap();
        let d = |app: &str, id: &str, outcome: &str| DeliveryRow {
            app: app.into(),
            delivery: id.into(),
            provider: "github".into(),
            event: "push".into(),
            outcome: outcome.into(),
            ..DeliveryRow::default()
        };
        let take = |row: DeliveryRow| db.write(|tx| record_delivery(tx, &row)).unwrap();
        assert!(matches!(take(d("a", "x", "refused")), Taken::New(_)));
        assert!(matches!(take(d("a", "x", "accepted")), Taken::New(_)));
        assert_eq!(take(d("a", "x", "accepted")), Taken::Replay);
        assert!(matches!(take(d("b", "x", "accepted")), Taken::New(_)));
        // no id: nothing to deduplicate on
        assert!(matches!(take(d("a", "", "accepted")), Taken::New(_)));
        assert!(matches!(take(d("a", "", "accepted")), Taken::New(_)));
        for i in 0..DELIVERIES_KEPT + 5 {
            take(d("c", &i.to_string(), "skipped"));
        }
        let kept = db.read(|c| deliveries(c, "c", 1000)).unwrap();
        assert_eq!(kept.len() as i64, DELIVERIES_KEPT);
        assert_eq!(kept[0].delivery, (DELIVERIES_KEPT + 4).to_string());
    }
}
