//! The fleet's hosts (a name, the fingerprint of the key it proves at every connection, its
//! labels, when it last spoke) and the one-time join tokens that let a host in (only the
//! SHA-256 of each token's secret is kept).

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::Error;

/// A joined host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub name: String,
    /// `sha256:<hex>` of the host's certificate.
    pub fingerprint: String,
    /// JSON object of its labels.
    pub labels: String,
    pub joined_nano: i64,
    pub last_contact_nano: Option<i64>,
    /// The engine it reported (`docker 20.10.24, api 1.41`).
    pub engine: String,
    /// Where its last connection came from.
    pub address: String,
}

const HOST_COLUMNS: &str =
    "name, fingerprint, labels, joined_nano, last_contact_nano, engine, address";

fn host(r: &Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        name: r.get(0)?,
        fingerprint: r.get(1)?,
        labels: r.get(2)?,
        joined_nano: r.get(3)?,
        last_contact_nano: r.get(4)?,
        engine: r.get(5)?,
        address: r.get(6)?,
    })
}

/// Every host, by name.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn hosts(conn: &Connection) -> Result<Vec<HostRow>, Error> {
    let mut stmt = conn.prepare(&format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY name"))?;
    let rows = stmt.query_map([], host)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The host whose key has `fingerprint`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn host_by_fingerprint(conn: &Connection, fingerprint: &str) -> Result<Option<HostRow>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE fingerprint = ?1"),
            [fingerprint],
            host,
        )
        .optional()?)
}

/// Records that the host of `fingerprint` spoke (from `address`, reporting `engine`).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn contact(
    tx: &Transaction<'_>,
    fingerprint: &str,
    now_nano: i64,
    engine: &str,
    address: &str,
) -> Result<bool, Error> {
    let n = tx.execute(
        "UPDATE hosts SET last_contact_nano = ?2, engine = ?3, address = ?4 WHERE fingerprint = ?1",
        params![fingerprint, now_nano, engine, address],
    )?;
    Ok(n == 1)
}

/// Removes the host `name`: its key is refused from now on. `Ok(None)` when there is none.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn remove_host(tx: &Transaction<'_>, name: &str) -> Result<Option<HostRow>, Error> {
    let row = tx
        .query_row(
            &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE name = ?1"),
            [name],
            host,
        )
        .optional()?;
    tx.execute("DELETE FROM hosts WHERE name = ?1", [name])?;
    if let Some(row) = &row {
        // what it was asked and never reported: its releases failed, with why
        let error =
            format!("host {name} was removed from the fleet before it reported this release's end");
        tx.execute(
            "UPDATE releases SET result = 'failed',
                detail = json_object('app', app, 'release', number, 'outcome', 'failed',
                                     'services', json_array(), 'error', ?2)
             WHERE result = 'running' AND EXISTS (SELECT 1 FROM fleet_commands c
                WHERE c.fingerprint = ?1 AND c.app = releases.app AND c.release = releases.number)",
            params![row.fingerprint, error],
        )?;
        tx.execute(
            "DELETE FROM fleet_commands WHERE fingerprint = ?1",
            [&row.fingerprint],
        )?;
    }
    Ok(row)
}

/// A join token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    /// The public part of the token: finds the row.
    pub id: String,
    /// Hex SHA-256 of its secret.
    pub hash: String,
    /// JSON object: the labels the host gets.
    pub labels: String,
    pub created_nano: i64,
    pub created_by: String,
    pub expires_nano: i64,
    /// When it was last used, and by which host.
    pub used_nano: Option<i64>,
    pub used_by: Option<String>,
    /// How many hosts it lets in (1 unless asked), and how many it did.
    pub uses: i64,
    pub used: i64,
}

/// Adds a join token.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn add_join_token(tx: &Transaction<'_>, row: &JoinTokenRow) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO join_tokens (id, hash, labels, created_nano, created_by, expires_nano, uses)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.id,
            row.hash,
            row.labels,
            row.created_nano,
            row.created_by,
            row.expires_nano,
            row.uses
        ],
    )?;
    Ok(())
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// No token has that id, or its secret is not that one.
    UnknownToken,
    /// Used already, as many times as it lets hosts in (last by that host).
    Used(String),
    Expired,
    /// Another key holds the name.
    NameTaken,
}

/// Joins the host `name` with key `fingerprint` on the token `id` whose secret hashes to
/// `hash`, in one transaction: the token is used up and the host added (or, for a key that
/// was a host already, given the new labels). The labels the token carries win.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn join(
    tx: &Transaction<'_>,
    (id, hash): (&str, &str),
    name: &str,
    fingerprint: &str,
    now_nano: i64,
) -> Result<Result<HostRow, JoinRefused>, Error> {
    let token = tx
        .query_row(
            "SELECT id, hash, labels, created_nano, created_by, expires_nano, used_nano, used_by,
                    uses, used
             FROM join_tokens WHERE id = ?1",
            [id],
            |r| {
                Ok(JoinTokenRow {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    labels: r.get(2)?,
                    created_nano: r.get(3)?,
                    created_by: r.get(4)?,
                    expires_nano: r.get(5)?,
                    used_nano: r.get(6)?,
                    used_by: r.get(7)?,
                    uses: r.get(8)?,
                    used: r.get(9)?,
                })
            },
        )
        .optional()?;
    let Some(token) = token.filter(|t| t.hash == hash) else {
        return Ok(Err(JoinRefused::UnknownToken));
    };
    if token.used >= token.uses {
        return Ok(Err(JoinRefused::Used(token.used_by.unwrap_or_default())));
    }
    if token.expires_nano <= now_nano {
        return Ok(Err(JoinRefused::Expired));
    }
    if holder(tx, name)?.is_some_and(|f| f != fingerprint) {
        return Ok(Err(JoinRefused::NameTaken));
    }
    tx.execute(
        "UPDATE join_tokens SET used_nano = ?2, used_by = ?3, used = used + 1 WHERE id = ?1",
        params![id, now_nano, name],
    )?;
    // a key joining again (after a remove, under a new token) keeps nothing of before
    tx.execute("DELETE FROM hosts WHERE fingerprint = ?1", [fingerprint])?;
    Ok(Ok(admit(tx, name, fingerprint, &token.labels, now_nano)?))
}

/// Enrolls host `name` with key `fingerprint` without a token: a host whose agent the hub runs
/// itself (its engine reached over ssh or TLS), its key made by the hub. One that holds the
/// name with that key already is kept as it is (its cursors with it), with `labels`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn enroll(
    tx: &Transaction<'_>,
    name: &str,
    fingerprint: &str,
    labels: &str,
    now_nano: i64,
) -> Result<Result<HostRow, JoinRefused>, Error> {
    match holder(tx, name)? {
        Some(f) if f != fingerprint => Ok(Err(JoinRefused::NameTaken)),
        Some(_) => {
            tx.execute(
                "UPDATE hosts SET labels = ?2 WHERE name = ?1",
                params![name, labels],
            )?;
            Ok(tx
                .query_row(
                    &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE name = ?1"),
                    [name],
                    host,
                )
                .map(Ok)?)
        }
        None => {
            tx.execute("DELETE FROM hosts WHERE fingerprint = ?1", [fingerprint])?;
            Ok(Ok(admit(tx, name, fingerprint, labels, now_nano)?))
        }
    }
}

/// The key that holds the name `name`, if one does.
fn holder(tx: &Transaction<'_>, name: &str) -> Result<Option<String>, Error> {
    Ok(tx
        .query_row(
            "SELECT fingerprint FROM hosts WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Adds host `name` with key `fingerprint` and `labels`, joined now.
fn admit(
    tx: &Transaction<'_>,
    name: &str,
    fingerprint: &str,
    labels: &str,
    now_nano: i64,
) -> Result<HostRow, Error> {
    let row = HostRow {
        name: name.to_owned(),
        fingerprint: fingerprint.to_owned(),
        labels: labels.to_owned(),
        joined_nano: now_nano,
        last_contact_nano: Some(now_nano),
        engine: String::new(),
        address: String::new(),
    };
    tx.execute(
        &format!("INSERT INTO hosts ({HOST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            row.name,
            row.fingerprint,
            row.labels,
            row.joined_nano,
            row.last_contact_nano,
            row.engine,
            row.address
        ],
    )?;
    Ok(row)
}

/// How far the hub has taken the `stream` of the host with key `fingerprint` (0: nothing yet).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn cursor(conn: &Connection, fingerprint: &str, stream: &str) -> Result<i64, Error> {
    Ok(conn
        .query_row(
            "SELECT position FROM stream_cursors WHERE fingerprint = ?1 AND stream = ?2",
            [fingerprint, stream],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn set_cursor(
    tx: &Transaction<'_>,
    fingerprint: &str,
    stream: &str,
    position: i64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO stream_cursors (fingerprint, stream, position) VALUES (?1, ?2, ?3)
         ON CONFLICT (fingerprint, stream) DO UPDATE SET position = excluded.position",
        params![fingerprint, stream, position],
    )?;
    Ok(())
}

/// Journals the events host `host` (key `fingerprint`) sent, in the transaction that moves its
/// cursor: those at or before the cursor (sent again after an answer was lost) are skipped, so
/// each is journaled once. Each gets the attribute `host` and scope `host`. Returns the cursor
/// and the events journaled.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn take_events(
    tx: &Transaction<'_>,
    (host, fingerprint): (&str, &str),
    events: &[capstan_model::Event],
) -> Result<(i64, Vec<capstan_model::Event>), Error> {
    let from = cursor(tx, fingerprint, "events")?;
    let mut at = from;
    let mut taken = Vec::new();
    for e in events.iter().filter(|e| e.seq > from) {
        let mut attributes = e.attributes.clone();
        attributes.insert("host".to_owned(), host.to_owned());
        let new = crate::NewEvent {
            time_nano: e.time_nano,
            // another host's event of the same time is another event
            identity: host_identity(host, e.seq),
            kind: e.kind.as_str().to_owned(),
            action: e.action.clone(),
            actor: e.actor.clone(),
            attributes,
            scope: Some("host".to_owned()),
            image_id: e.image_id.clone(),
            inferred: e.inferred,
        };
        if let Some(stored) = crate::events::insert(tx, &new)? {
            taken.push(stored);
        }
        at = e.seq;
    }
    set_cursor(tx, fingerprint, "events", at)?;
    Ok((at, taken))
}

/// A journal identity for `host`'s event `seq`: unique across hosts (FNV-1a).
fn host_identity(host: &str, seq: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.bytes().chain(seq.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// A command the hub queued for a host and the host has not reported the end of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    pub id: String,
    /// The host's key.
    pub fingerprint: String,
    pub app: String,
    /// The hub's release number it runs (0: none, a down).
    pub release: i64,
    /// JSON of the operation.
    pub op: String,
    pub queued_nano: i64,
}

/// Keeps a command for a host until its end is reported.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn add_command(tx: &Transaction<'_>, row: &CommandRow) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO fleet_commands (id, fingerprint, app, release, op, queued_nano)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            row.id,
            row.fingerprint,
            row.app,
            row.release,
            row.op,
            row.queued_nano
        ],
    )?;
    Ok(())
}

/// Every command whose end no host reported yet, oldest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn commands(conn: &Connection) -> Result<Vec<CommandRow>, Error> {
    let mut stmt = conn.prepare(
        "SELECT id, fingerprint, app, release, op, queued_nano FROM fleet_commands
         ORDER BY queued_nano, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CommandRow {
            id: r.get(0)?,
            fingerprint: r.get(1)?,
            app: r.get(2)?,
            release: r.get(3)?,
            op: r.get(4)?,
            queued_nano: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How a host says a command ended: the release it ran (app, number, result, images, report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEnd {
    pub app: String,
    pub release: i64,
    pub result: String,
    pub images: String,
    pub report: String,
}

/// Records the end of command `id` (its release's outcome, when it ran one) and forgets the
/// command, in one transaction: reported again, it records the same. Returns whether the
/// command was still kept.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn end_command(
    tx: &Transaction<'_>,
    id: &str,
    end: Option<&CommandEnd>,
) -> Result<bool, Error> {
    if let Some(e) = end {
        crate::releases::finish(tx, &e.app, e.release, &e.result, &e.images, &e.report)?;
    }
    Ok(tx.execute("DELETE FROM fleet_commands WHERE id = ?1", [id])? == 1)
}
