//! Replicas stopped on purpose (`capstan stop`): self-healing leaves them stopped until
//! `capstan start` or the app's next release starts them. Replica `0` stands for the whole
//! service.

use rusqlite::{Connection, Transaction, params};

use crate::{Error, Store};

/// One deliberate stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedRow {
    pub app: String,
    pub service: String,
    /// `0`: every replica of the service.
    pub replica: u32,
    /// Who stopped it.
    pub stopped_by: String,
    pub time_nano: i64,
}

impl StoppedRow {
    /// Whether this stop covers `replica` of `service`.
    pub fn covers(&self, service: &str, replica: u32) -> bool {
        self.service == service && (self.replica == 0 || self.replica == replica)
    }
}

/// `app`'s deliberate stops, by service then replica.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn stopped(conn: &Connection, app: &str) -> Result<Vec<StoppedRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, service, replica, stopped_by, time_nano FROM stopped
         WHERE app = ?1 ORDER BY service, replica",
    )?;
    let rows = stmt.query_map([app], |r| {
        Ok(StoppedRow {
            app: r.get(0)?,
            service: r.get(1)?,
            replica: r.get(2)?,
            stopped_by: r.get(3)?,
            time_nano: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a deliberate stop (a whole service's replaces its replicas' own).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn stop(tx: &Transaction<'_>, row: &StoppedRow) -> Result<(), Error> {
    if row.replica == 0 {
        tx.execute(
            "DELETE FROM stopped WHERE app = ?1 AND service = ?2",
            [&row.app, &row.service],
        )?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO stopped (app, service, replica, stopped_by, time_nano)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            row.app,
            row.service,
            row.replica,
            row.stopped_by,
            row.time_nano
        ],
    )?;
    Ok(())
}

/// Ends deliberate stops: of `app`'s `service` (every one of the app's with `None`), of its
/// `replica` only when given (a stop of the whole service stays: start the service instead).
/// How many ended.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn start(
    tx: &Transaction<'_>,
    app: &str,
    service: Option<&str>,
    replica: Option<u32>,
) -> Result<usize, Error> {
    Ok(tx.execute(
        "DELETE FROM stopped WHERE app = ?1 AND (?2 IS NULL OR service = ?2)
         AND (?3 IS NULL OR replica = ?3)",
        params![app, service, replica],
    )?)
}

impl Store {
    /// [`stopped`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn stopped(&self, app: String) -> Result<Vec<StoppedRow>, Error> {
        self.read(move |c| stopped(c, &app)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_cover_their_replicas_and_a_service_stop_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("s.db"), crate::migrations::MIGRATIONS).unwrap();
        let row = |service: &str, replica| StoppedRow {
            app: "shop".into(),
            service: service.into(),
            replica,
            stopped_by: "ops".into(),
            time_nano: 1,
        };
        db.write(|tx| {
            stop(tx, &row("web", 2))?;
            stop(tx, &row("worker", 1))
        })
        .unwrap();
        let kept = db.read(|c| stopped(c, "shop")).unwrap();
        assert_eq!(kept, vec![row("web", 2), row("worker", 1)]);
        assert!(kept[0].covers("web", 2) && !kept[0].covers("web", 1));
        // the whole service: one row that covers every replica
        db.write(|tx| stop(tx, &row("web", 0))).unwrap();
        let kept = db.read(|c| stopped(c, "shop")).unwrap();
        assert_eq!(kept, vec![row("web", 0), row("worker", 1)]);
        assert!(kept[0].covers("web", 7));
        // starting one replica of a stopped service leaves the service's stop
        assert_eq!(
            db.write(|tx| start(tx, "shop", Some("web"), Some(3)))
                .unwrap(),
            0
        );
        assert_eq!(
            db.write(|tx| start(tx, "shop", Some("worker"), None))
                .unwrap(),
            1
        );
        assert_eq!(db.write(|tx| start(tx, "shop", None, None)).unwrap(), 1);
        assert!(db.read(|c| stopped(c, "shop")).unwrap().is_empty());
        assert!(db.read(|c| stopped(c, "other")).unwrap().is_empty());
    }
}
