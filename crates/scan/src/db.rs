//! The local advisory database and the per-layer cache, in one SQLite file
//! (`<data>/vulndb.db`). An import is one transaction: a file that does not parse changes
//! nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use capstan_model::{Severity, VulnDbStatus};
use capstan_store::Db;
use rusqlite::{OptionalExtension, params};

use crate::layers::LayerFiles;
use crate::osv::{Advisory, Affected};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS advisories (
    id TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    summary TEXT NOT NULL,
    aliases TEXT NOT NULL,
    severity TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS affected (
    advisory TEXT NOT NULL,
    ecosystem TEXT NOT NULL,
    package TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS affected_package ON affected (package, ecosystem);
CREATE INDEX IF NOT EXISTS affected_advisory ON affected (advisory);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY,
    files TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// An advisory's entry for one package, with the advisory's own fields.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    pub id: String,
    pub summary: String,
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub affected: Affected,
}

/// The database. Calls block (SQLite): callers run them on the blocking pool.
#[derive(Debug, Clone)]
pub struct VulnDb {
    db: Arc<Db>,
}

/// Why the vulnerability database cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file cannot be opened, or is not capstan's.
    #[error("{} is not a capstan vulnerability database: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: capstan_store::Error,
    },
    /// A query failed.
    #[error("the vulnerability database failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// An advisory or a layer's files cannot be encoded for storing.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// A stored advisory does not parse (written by another version?).
    #[error("a stored advisory ({id}) does not parse: {source}")]
    Stored {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

fn sql(e: rusqlite::Error) -> DbError {
    DbError::Sql(e)
}

impl VulnDb {
    /// Opens (creating) the database at `path`.
    ///
    /// # Errors
    /// The file cannot be opened or is not capstan's.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(path, &[SCHEMA]).map_err(|source| DbError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Adds or replaces `advisories` (by id) in one transaction.
    ///
    /// # Errors
    /// The database cannot be written; nothing changed then.
    pub fn import(&self, advisories: &[Advisory]) -> Result<VulnDbStatus, DbError> {
        self.db.write(|tx| {
            for a in advisories {
                tx.execute("DELETE FROM affected WHERE advisory = ?1", params![a.id])
                    .map_err(sql)?;
                tx.execute(
                    "INSERT OR REPLACE INTO advisories (id, modified, summary, aliases, severity)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        a.id,
                        a.modified,
                        a.summary,
                        serde_json::to_string(&a.aliases).map_err(DbError::Encode)?,
                        a.severity.as_str()
                    ],
                )
                .map_err(sql)?;
                for affected in &a.affected {
                    tx.execute(
                        "INSERT INTO affected (advisory, ecosystem, package, body) VALUES (?1, ?2, ?3, ?4)",
                        params![
                            a.id,
                            affected.ecosystem,
                            affected.package,
                            serde_json::to_string(affected).map_err(DbError::Encode)?
                        ],
                    )
                    .map_err(sql)?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_import', ?1)",
                params![chrono::Utc::now().to_rfc3339()],
            )
            .map_err(sql)?;
            Ok::<_, DbError>(())
        })?;
        let mut status = self.status()?;
        status.imported = advisories.len() as u64;
        Ok(status)
    }

    /// What the database holds.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn status(&self) -> Result<VulnDbStatus, DbError> {
        self.db.read(|conn| {
            let advisories: i64 = conn
                .query_row("SELECT count(*) FROM advisories", [], |r| r.get(0))
                .map_err(sql)?;
            let mut stmt = conn
                .prepare(
                    "SELECT ecosystem, count(DISTINCT advisory) FROM affected GROUP BY ecosystem",
                )
                .map_err(sql)?;
            let ecosystems = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(sql)?
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map_err(sql)?;
            let last: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'last_import'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            Ok(VulnDbStatus {
                imported: 0,
                advisories: advisories as u64,
                ecosystems,
                last_import: last
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
            })
        })
    }

    /// Advisories for `ecosystems` that name one of `packages`.
    pub(crate) fn matches(
        &self,
        ecosystems: &[String],
        packages: &[&str],
    ) -> Result<Vec<Match>, DbError> {
        self.db.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT a.id, a.summary, a.aliases, a.severity, f.ecosystem, f.body
                     FROM affected f JOIN advisories a ON a.id = f.advisory
                     WHERE f.package = ?1",
                )
                .map_err(sql)?;
            let mut out = Vec::new();
            for package in packages {
                let rows = stmt
                    .query_map(params![package], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                        ))
                    })
                    .map_err(sql)?;
                for row in rows {
                    let (id, summary, aliases, severity, ecosystem, body) = row.map_err(sql)?;
                    if !ecosystems.contains(&ecosystem) {
                        continue;
                    }
                    let affected: Affected =
                        serde_json::from_str(&body).map_err(|source| DbError::Stored {
                            id: id.clone(),
                            source,
                        })?;
                    out.push(Match {
                        id,
                        summary,
                        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
                        severity: severity.parse().unwrap_or(Severity::Unknown),
                        affected,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Advisories held for `ecosystems`.
    pub(crate) fn count_for(&self, ecosystems: &[String]) -> Result<u64, DbError> {
        self.db.read(|conn| {
            let mut n = 0;
            for e in ecosystems {
                let c: i64 = conn
                    .query_row(
                        "SELECT count(DISTINCT advisory) FROM affected WHERE ecosystem = ?1",
                        params![e],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                n += c as u64;
            }
            Ok(n)
        })
    }

    /// The package-database files a layer holds, when it was read before.
    pub(crate) fn layer(&self, diff_id: &str) -> Result<Option<LayerFiles>, DbError> {
        self.db.read(|conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT files FROM layers WHERE diff_id = ?1",
                    params![diff_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
        })
    }

    pub(crate) fn keep_layer(&self, diff_id: &str, files: &LayerFiles) -> Result<(), DbError> {
        let text = serde_json::to_string(files).map_err(DbError::Encode)?;
        self.db.write(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO layers (diff_id, files) VALUES (?1, ?2)",
                params![diff_id, text],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    /// Forgets every cached layer (the next scans read their layers again).
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn forget_layers(&self) -> Result<(), DbError> {
        self.db.write(|conn| {
            conn.execute("DELETE FROM layers", [])
                .map(drop)
                .map_err(sql)
        })
    }
}
