//! The host security checks' open findings: one row per check and object, kept until the
//! check no longer finds it, so that a restart neither forgets when it was first found nor
//! journals it again.

use capstan_model::SecurityFinding;
use rusqlite::{Connection, Transaction, params};

use crate::{Error, Store};

/// Every open finding, oldest first.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn open_findings(conn: &Connection) -> Result<Vec<SecurityFinding>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT finding FROM security_findings ORDER BY since_nano, check_id, object",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|text| Ok(serde_json::from_str(&text?)?)).collect()
}

/// Makes `current` the open findings: each kept (a known one with its first time), the rest
/// removed.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn replace_findings(tx: &Transaction<'_>, current: &[SecurityFinding]) -> Result<(), Error> {
    tx.execute("DELETE FROM security_findings", [])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO security_findings (check_id, object, since_nano, finding)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for f in current {
        let since = f.since.timestamp_nanos_opt().unwrap_or_default();
        insert.execute(params![
            f.check,
            f.object.key(),
            since,
            serde_json::to_string(f)?
        ])?;
    }
    Ok(())
}

impl Store {
    /// [`open_findings`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Json`].
    pub async fn security_findings(&self) -> Result<Vec<SecurityFinding>, Error> {
        self.read(open_findings).await
    }

    /// [`replace_findings`] in one transaction.
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Json`].
    pub async fn set_security_findings(&self, current: Vec<SecurityFinding>) -> Result<(), Error> {
        self.write(move |tx| replace_findings(tx, &current)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::{ObjectKind, SecurityObject, Severity};

    fn finding(check: &str, object: &str, since: i64) -> SecurityFinding {
        SecurityFinding {
            check: check.into(),
            title: "t".into(),
            severity: Severity::High,
            object: SecurityObject {
                kind: ObjectKind::Container,
                id: object.into(),
                name: object.into(),
            },
            detail: "d".into(),
            fix: "f".into(),
            since: capstan_model::nanos_to_datetime(since * 1_000_000_000),
        }
    }

    #[test]
    fn the_open_findings_are_replaced_whole_and_read_back_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("s.db"), crate::migrations::MIGRATIONS).unwrap();
        db.write(|tx| replace_findings(tx, &[finding("5.4", "b", 20), finding("5.3", "a", 10)]))
            .unwrap();
        let open = db.read(open_findings).unwrap();
        assert_eq!(
            open.iter().map(|f| f.check.as_str()).collect::<Vec<_>>(),
            ["5.3", "5.4"]
        );
        db.write(|tx| replace_findings(tx, &[finding("5.4", "b", 20)]))
            .unwrap();
        assert_eq!(
            db.read(open_findings).unwrap(),
            vec![finding("5.4", "b", 20)]
        );
    }
}
