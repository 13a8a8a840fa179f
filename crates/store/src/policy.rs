//! The deploy policy's allowances: a host-level feature (`privileged`, `bind=/srv/www`, ...)
//! an admin allowed for one app. What a feature means is `capstan-deploy`'s; this keeps them.

use rusqlite::{Connection, Transaction, params};

use crate::{Error, Store};

/// One allowance as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowanceRow {
    pub app: String,
    pub feature: String,
    /// Who allowed it.
    pub allowed_by: String,
    pub time_nano: i64,
}

/// Every allowance, by app then feature; or `app`'s only.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn allowances(conn: &Connection, app: Option<&str>) -> Result<Vec<AllowanceRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT app, feature, allowed_by, time_nano FROM policy
         WHERE ?1 IS NULL OR app = ?1 ORDER BY app, feature",
    )?;
    let rows = stmt.query_map([app], |r| {
        Ok(AllowanceRow {
            app: r.get(0)?,
            feature: r.get(1)?,
            allowed_by: r.get(2)?,
            time_nano: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Allows a feature for an app; `Ok(false)` when it already was.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn allow(tx: &Transaction<'_>, row: &AllowanceRow) -> Result<bool, Error> {
    Ok(tx.execute(
        "INSERT OR IGNORE INTO policy (app, feature, allowed_by, time_nano) VALUES (?1, ?2, ?3, ?4)",
        params![row.app, row.feature, row.allowed_by, row.time_nano],
    )? == 1)
}

/// Takes an allowance back; `Ok(false)` when there was none.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn disallow(tx: &Transaction<'_>, app: &str, feature: &str) -> Result<bool, Error> {
    Ok(tx.execute(
        "DELETE FROM policy WHERE app = ?1 AND feature = ?2",
        [app, feature],
    )? == 1)
}

impl Store {
    /// [`allowances`] on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn allowances(&self, app: Option<String>) -> Result<Vec<AllowanceRow>, Error> {
        self.read(move |c| allowances(c, app.as_deref())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_are_kept_per_app_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(&dir.path().join("s.db"), crate::migrations::MIGRATIONS).unwrap();
        let row = |app: &str, feature: &str| AllowanceRow {
            app: app.into(),
            feature: feature.into(),
            allowed_by: "admin".into(),
            time_nano: 1,
        };
        db.write(|tx| {
            assert!(allow(tx, &row("shop", "privileged"))?);
            assert!(!allow(tx, &row("shop", "privileged"))?);
            assert!(allow(tx, &row("blog", "bind=/srv/www"))?);
            Ok::<_, Error>(())
        })
        .unwrap();
        let shop = db.read(|c| allowances(c, Some("shop"))).unwrap();
        assert_eq!(shop, [row("shop", "privileged")]);
        assert_eq!(db.read(|c| allowances(c, None)).unwrap().len(), 2);
        assert!(db.write(|tx| disallow(tx, "shop", "privileged")).unwrap());
        assert!(!db.write(|tx| disallow(tx, "shop", "privileged")).unwrap());
    }
}
