//! The image inventory and each image's lifecycle history.

use capstan_model::{HistoryEntry, Image, ImageDetail, Lifecycle, nanos_to_datetime};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{Error, Store};

/// An inventory row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Full id.
    pub id: String,
    /// References pointing at it now (as far as events explain; see the journal's settling).
    pub repo_tags: Vec<String>,
    /// The last non-empty set of references it had (what a deleted image was known as). Kept
    /// by [`upsert`] from the last non-empty `repo_tags`; a row written with no tags and these
    /// set (references made and removed before the row saw them) takes them instead.
    pub last_tags: Vec<String>,
    /// Registry digests.
    pub repo_digests: Vec<String>,
    /// Bytes.
    pub size: i64,
    /// Image creation time.
    pub created_nano: Option<i64>,
    /// Layer count.
    pub layers: i64,
    /// First time capstan saw it.
    pub first_seen: i64,
    /// Last time capstan saw it present.
    pub last_seen: i64,
    /// When it was deleted.
    pub deleted_nano: Option<i64>,
    /// Time of the newest event that changed this row; an inventory snapshot older than this
    /// must not override it.
    pub last_event_nano: i64,
}

/// A lifecycle entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image.
    pub image_id: String,
    /// When.
    pub time_nano: i64,
    /// What.
    pub action: Lifecycle,
    /// Which reference.
    pub reference: Option<String>,
    /// Inferred rather than seen.
    pub inferred: bool,
    /// The journal event behind it.
    pub event_seq: Option<i64>,
}

const COLUMNS: &str = "id, repo_tags, repo_digests, size, created_nano, layers, first_seen, \
                       last_seen, deleted_nano, last_event_nano, last_tags";

fn row_to_image(row: &Row<'_>) -> rusqlite::Result<(ImageRow, String, String, String)> {
    Ok((
        ImageRow {
            id: row.get(0)?,
            repo_tags: Vec::new(),
            last_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: row.get(3)?,
            created_nano: row.get(4)?,
            layers: row.get(5)?,
            first_seen: row.get(6)?,
            last_seen: row.get(7)?,
            deleted_nano: row.get(8)?,
            last_event_nano: row.get(9)?,
        },
        row.get(1)?,
        row.get(2)?,
        row.get(10)?,
    ))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<(ImageRow, String, String, String)>>,
) -> Result<Vec<ImageRow>, Error> {
    let mut out = Vec::new();
    for row in rows {
        let (mut image, tags, digests, last_tags) = row?;
        image.repo_tags = serde_json::from_str(&tags)?;
        image.last_tags = serde_json::from_str(&last_tags)?;
        image.repo_digests = serde_json::from_str(&digests)?;
        out.push(image);
    }
    Ok(out)
}

/// One inventory row by full id.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn get(conn: &Connection, id: &str) -> Result<Option<ImageRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE id = ?1"))?;
    Ok(collect(stmt.query_map([id], row_to_image)?)?.pop())
}

/// Every image not deleted.
///
/// # Errors
/// [`Error::Sqlite`], [`Error::Json`].
pub fn present(conn: &Connection) -> Result<Vec<ImageRow>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM images WHERE deleted_nano IS NULL"
    ))?;
    collect(stmt.query_map([], row_to_image)?)
}

/// Ids of present images that carry `tag`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn holders_of(conn: &Connection, tag: &str) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.image_id FROM image_tags t JOIN images i ON i.id = t.image_id
         WHERE t.tag = ?1 AND i.deleted_nano IS NULL",
    )?;
    let ids = stmt.query_map([tag], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Inserts or replaces an inventory row and its tag index.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn upsert(tx: &Transaction<'_>, image: &ImageRow) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO images (id, repo_tags, repo_digests, size, created_nano, layers, first_seen,
                             last_seen, deleted_nano, last_event_nano, last_tags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN ?2 = '[]' THEN ?11 ELSE ?2 END)
         ON CONFLICT (id) DO UPDATE SET
            repo_tags = excluded.repo_tags, repo_digests = excluded.repo_digests,
            last_tags = CASE WHEN excluded.repo_tags != '[]' THEN excluded.repo_tags
                             WHEN ?11 != '[]' THEN ?11 ELSE last_tags END,
            size = excluded.size, created_nano = excluded.created_nano, layers = excluded.layers,
            first_seen = min(first_seen, excluded.first_seen), last_seen = excluded.last_seen,
            deleted_nano = excluded.deleted_nano,
            last_event_nano = max(last_event_nano, excluded.last_event_nano)",
    )?
    .execute(params![
        image.id,
        serde_json::to_string(&image.repo_tags)?,
        serde_json::to_string(&image.repo_digests)?,
        image.size,
        image.created_nano,
        image.layers,
        image.first_seen,
        image.last_seen,
        image.deleted_nano,
        image.last_event_nano,
        serde_json::to_string(&image.last_tags)?,
    ])?;
    tx.prepare_cached("DELETE FROM image_tags WHERE image_id = ?1")?
        .execute([&image.id])?;
    let mut add =
        tx.prepare_cached("INSERT OR IGNORE INTO image_tags (tag, image_id) VALUES (?1, ?2)")?;
    for tag in &image.repo_tags {
        add.execute([tag, &image.id])?;
    }
    Ok(())
}

/// Records a lifecycle entry.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn add_history(tx: &Transaction<'_>, h: &HistoryRow) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO image_history (image_id, time_nano, action, reference, inferred, event_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        h.image_id,
        h.time_nano,
        h.action.as_str(),
        h.reference,
        h.inferred,
        h.event_seq
    ])?;
    Ok(())
}

/// Removes the entries of one kind for an image (a `built` guess overturned by an `import`).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn remove_history(
    tx: &Transaction<'_>,
    image_id: &str,
    action: Lifecycle,
) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM image_history WHERE image_id = ?1 AND action = ?2")?
        .execute([image_id, action.as_str()])?;
    Ok(())
}

/// Whether an image has any entry of these kinds.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn has_history(
    conn: &Connection,
    image_id: &str,
    actions: &[Lifecycle],
) -> Result<bool, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM image_history WHERE image_id = ?1 AND action = ?2 LIMIT 1",
    )?;
    for a in actions {
        if stmt.exists([image_id, a.as_str()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Names the reference of the newest untag entry that has none (the engine's untag events do
/// not say which reference went; a later event re-adding `reference` tells). Returns whether
/// there was one.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn claim_untag(tx: &Transaction<'_>, image_id: &str, reference: &str) -> Result<bool, Error> {
    let n = tx
        .prepare_cached(
            "UPDATE image_history SET reference = ?2 WHERE id = (
                SELECT id FROM image_history
                WHERE image_id = ?1 AND action = 'untagged' AND reference IS NULL AND inferred = 0
                ORDER BY time_nano DESC, id DESC LIMIT 1)",
        )?
        .execute([image_id, reference])?;
    Ok(n > 0)
}

/// Whether every entry of an image's history is one of `actions` (none at all counts).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn history_only(
    conn: &Connection,
    image_id: &str,
    actions: &[Lifecycle],
) -> Result<bool, Error> {
    let mut stmt = conn.prepare_cached("SELECT action FROM image_history WHERE image_id = ?1")?;
    let mut rows = stmt.query([image_id])?;
    while let Some(row) = rows.next()? {
        let action: String = row.get(0)?;
        if !Lifecycle::parse(&action).is_some_and(|a| actions.contains(&a)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn history(conn: &Connection, image_id: &str) -> Result<Vec<HistoryEntry>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT time_nano, action, reference, inferred, event_seq FROM image_history
         WHERE image_id = ?1 ORDER BY time_nano, id",
    )?;
    let rows = stmt.query_map([image_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (time, action, reference, inferred, event_seq) = row?;
        let Some(action) = Lifecycle::parse(&action) else {
            continue;
        };
        out.push(HistoryEntry {
            time: nanos_to_datetime(time),
            action,
            reference,
            inferred,
            event_seq,
        });
    }
    Ok(out)
}

fn to_model(conn: &Connection, row: ImageRow) -> Result<Image, Error> {
    let containers = conn
        .prepare_cached(
            "SELECT count(*) FROM containers WHERE image_id = ?1 AND removed_nano IS NULL",
        )?
        .query_row([&row.id], |r| r.get(0))?;
    // a deleted image is shown with the references it was last known by
    let repo_tags = if row.deleted_nano.is_some() && row.repo_tags.is_empty() {
        row.last_tags
    } else {
        row.repo_tags
    };
    Ok(Image {
        id: row.id,
        repo_tags,
        repo_digests: row.repo_digests,
        size: row.size,
        created: row.created_nano.map(nanos_to_datetime),
        layers: row.layers,
        containers,
        first_seen: nanos_to_datetime(row.first_seen),
        last_seen: nanos_to_datetime(row.last_seen),
        deleted: row.deleted_nano.map(nanos_to_datetime),
    })
}

/// Adds `:latest` to a reference without a tag (a registry port is not a tag).
pub fn normalize_reference(reference: &str) -> String {
    let name = reference.rsplit('/').next().unwrap_or(reference);
    if name.contains(':') || name.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// Finds an image by full id, id prefix (12+ hex characters, with or without `sha256:`), tag or
/// digest reference. Present images win over deleted ones, then the most recently seen.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn resolve(conn: &Connection, key: &str) -> Result<Option<String>, Error> {
    let order = "ORDER BY i.deleted_nano IS NOT NULL, i.last_seen DESC LIMIT 1";
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let found = conn
            .prepare_cached(&format!(
                "SELECT i.id FROM images i WHERE substr(i.id, 1, ?2) = ?1 {order}"
            ))?
            .query_row(
                params![format!("sha256:{hex}"), (7 + hex.len()) as i64],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if key.contains('@') {
        let pattern = format!("%\"{}\"%", key.replace('%', ""));
        return Ok(conn
            .prepare_cached(&format!(
                "SELECT i.id FROM images i WHERE i.repo_digests LIKE ?1 {order}"
            ))?
            .query_row([pattern], |r| r.get(0))
            .optional()?);
    }
    let tag = normalize_reference(key);
    if let Some(id) = conn
        .prepare_cached(&format!(
            "SELECT i.id FROM image_tags t JOIN images i ON i.id = t.image_id WHERE t.tag = ?1 {order}"
        ))?
        .query_row([&tag], |r| r.get(0))
        .optional()?
    {
        return Ok(Some(id));
    }
    // a deleted image's tags are gone from the index but kept in its history
    Ok(conn
        .prepare_cached(
            "SELECT image_id FROM image_history WHERE reference = ?1 ORDER BY time_nano DESC LIMIT 1",
        )?
        .query_row([&tag], |r| r.get(0))
        .optional()?)
}

impl Store {
    /// The inventory: present images, plus deleted ones when `include_deleted`; newest first.
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Json`].
    pub async fn images(&self, include_deleted: bool) -> Result<Vec<Image>, Error> {
        self.read(move |conn| {
            let filter = if include_deleted {
                ""
            } else {
                "WHERE deleted_nano IS NULL"
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM images {filter} ORDER BY first_seen DESC, id"
            ))?;
            let rows = collect(stmt.query_map([], row_to_image)?)?;
            rows.into_iter().map(|r| to_model(conn, r)).collect()
        })
        .await
    }

    /// One image with its history and the containers using it; `None` when unknown.
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Json`].
    pub async fn image_detail(&self, key: String) -> Result<Option<ImageDetail>, Error> {
        self.read(move |conn| {
            let Some(id) = resolve(conn, &key)? else {
                return Ok(None);
            };
            let Some(row) = get(conn, &id)? else {
                return Ok(None);
            };
            let container_ids = conn
                .prepare_cached(
                    "SELECT id FROM containers WHERE image_id = ?1 AND removed_nano IS NULL ORDER BY created_nano",
                )?
                .query_map([&id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(Some(ImageDetail {
                history: history(conn, &id)?,
                image: to_model(conn, row)?,
                container_ids,
            }))
        })
        .await
    }

    /// Resolves an image key (see [`resolve`]) to a full id.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub async fn resolve_image(&self, key: String) -> Result<Option<String>, Error> {
        self.read(move |conn| resolve(conn, &key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_reference;

    #[test]
    fn normalizes_references() {
        assert_eq!(normalize_reference("busybox"), "busybox:latest");
        assert_eq!(normalize_reference("busybox:1"), "busybox:1");
        assert_eq!(
            normalize_reference("127.0.0.1:5000/app"),
            "127.0.0.1:5000/app:latest"
        );
        assert_eq!(
            normalize_reference("127.0.0.1:5000/app:2"),
            "127.0.0.1:5000/app:2"
        );
    }
}
