//! Retention of the journal's events and of the audit log: rows older than what is kept are
//! removed in batches, each its own short write, so a large purge never holds the database
//! for long.

use std::time::Duration;

use rusqlite::{Transaction, params};

use crate::{Error, Store};

/// How long journal events are kept by default.
pub const DEFAULT_JOURNAL: Duration = Duration::from_hours(90 * 24);
/// How long the audit log is kept by default.
pub const DEFAULT_AUDIT: Duration = Duration::from_hours(365 * 24);
/// Rows removed per write.
const BATCH: i64 = 10_000;

/// A table with a retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The journal's events.
    Events,
    /// The audit log.
    Audit,
}

impl Kept {
    fn table(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Audit => "audit",
        }
    }
}

/// Removes up to [`BATCH`] rows of `kept` older than `before_nano`, oldest first; how many.
///
/// Only rows stored before the first one of the kept window go: an event's time is when it
/// happened, and the journal also stores events it infers after the fact with an old time (an
/// image made long ago, seen when capstan starts). Those are recent rows, and removing them
/// would only have the next start infer them again.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn prune_batch(tx: &Transaction<'_>, kept: Kept, before_nano: i64) -> Result<usize, Error> {
    let table = kept.table();
    Ok(tx.execute(
        &format!(
            "DELETE FROM {table} WHERE seq IN \
             (SELECT seq FROM {table} WHERE time_nano < ?1 \
                AND seq < (SELECT min(seq) FROM {table} WHERE time_nano >= ?1) \
              ORDER BY seq LIMIT ?2)"
        ),
        params![before_nano, BATCH],
    )?)
}

impl Store {
    /// Removes every row of `kept` older than `before_nano`, a batch per write; how many.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn prune(&self, kept: Kept, before_nano: i64) -> Result<usize, Error> {
        let mut removed = 0;
        loop {
            let n = self
                .write(move |tx| prune_batch(tx, kept, before_nano))
                .await?;
            removed += n;
            if n < BATCH as usize {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AuditRow, audit};
    use crate::events::{NewEvent, insert};

    #[tokio::test]
    async fn rows_older_than_kept_go_in_batches_and_newer_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        // 25,000 old events (three batches) and one new; an old and a new audit row
        store
            .write(|tx| {
                // then one in the kept window, then one stored later with an old time (inferred)
                for i in 0..25_002_i64 {
                    let time_nano = match i {
                        25_000 => 2_000_000,
                        25_001 => 5,
                        _ => i,
                    };
                    insert(
                        tx,
                        &NewEvent {
                            time_nano,
                            identity: i,
                            kind: "container".into(),
                            action: "start".into(),
                            actor: format!("c{i}"),
                            attributes: std::collections::BTreeMap::new(),
                            scope: None,
                            image_id: None,
                            inferred: false,
                        },
                    )?;
                }
                for time_nano in [10, 2_000_000] {
                    audit(
                        tx,
                        &AuditRow {
                            seq: 0,
                            time_nano,
                            who: "admin".into(),
                            role: "admin".into(),
                            method: "GET".into(),
                            path: "/".into(),
                            status: 200,
                            remote: "-".into(),
                        },
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.prune(Kept::Events, 1_000_000).await.unwrap(), 25_000);
        assert_eq!(store.prune(Kept::Audit, 1_000_000).await.unwrap(), 1);
        // the backdated one, stored after the window began, stays
        let left = store.read(crate::events::count).await.unwrap();
        assert_eq!(left, 2);
        let audit_left = store
            .read(|c| crate::access::audit_log(c, 0, 10))
            .await
            .unwrap();
        assert_eq!(audit_left.len(), 1);
        assert_eq!(audit_left[0].time_nano, 2_000_000);
        // nothing more to remove
        assert_eq!(store.prune(Kept::Events, 1_000_000).await.unwrap(), 0);
    }
}
