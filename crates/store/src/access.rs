//! API tokens (a name, a role, the SHA-256 of the secret; never the secret) and the audit log
//! of every request that changed something.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::Error;

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The public part of the token (`cap_<id>_<secret>`): finds the row.
    pub id: String,
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the whole token.
    pub hash: String,
    pub created_nano: i64,
    pub created_by: String,
    pub last_used_nano: Option<i64>,
    pub revoked_nano: Option<i64>,
}

const TOKEN_COLUMNS: &str =
    "id, name, role, hash, created_nano, created_by, last_used_nano, revoked_nano";

fn token(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        hash: r.get(3)?,
        created_nano: r.get(4)?,
        created_by: r.get(5)?,
        last_used_nano: r.get(6)?,
        revoked_nano: r.get(7)?,
    })
}

/// Adds a token; `Ok(false)` when a token (even a revoked one) has that name.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn add_token(tx: &Transaction<'_>, row: &TokenRow) -> Result<bool, Error> {
    let n = tx.execute(
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name) DO NOTHING"
        ),
        params![
            row.id,
            row.name,
            row.role,
            row.hash,
            row.created_nano,
            row.created_by,
            row.last_used_nano,
            row.revoked_nano
        ],
    )?;
    Ok(n == 1)
}

/// Every token, newest first.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn tokens(conn: &Connection) -> Result<Vec<TokenRow>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_nano DESC"
    ))?;
    let rows = stmt.query_map([], token)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The token whose public part is `id`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn token_by_id(conn: &Connection, id: &str) -> Result<Option<TokenRow>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
            [id],
            token,
        )
        .optional()?)
}

/// Revokes the token named `name` at `at`; `Ok(false)` when there is no such live token.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn revoke_token(tx: &Transaction<'_>, name: &str, at: i64) -> Result<bool, Error> {
    // the sessions signed in with it end with it
    tx.execute(
        "DELETE FROM sessions WHERE source IN
           (SELECT 'token:' || id FROM tokens WHERE name = ?1 AND revoked_nano IS NULL)",
        [name],
    )?;
    let n = tx.execute(
        "UPDATE tokens SET revoked_nano = ?2 WHERE name = ?1 AND revoked_nano IS NULL",
        params![name, at],
    )?;
    Ok(n == 1)
}

/// Notes that the token was used at `at` (at most once a minute per token is enough).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn touch_token(tx: &Transaction<'_>, id: &str, at: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE tokens SET last_used_nano = ?2 WHERE id = ?1
         AND (last_used_nano IS NULL OR last_used_nano < ?2 - 60000000000)",
        params![id, at],
    )?;
    Ok(())
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub time_nano: i64,
    /// The token's name (`admin` for the admin token).
    pub who: String,
    pub role: String,
    pub method: String,
    /// Path and query, as asked.
    pub path: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// The client's address.
    pub remote: String,
}

/// Appends an entry (its `seq` is assigned).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn audit(tx: &Transaction<'_>, row: &AuditRow) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO audit (time_nano, who, role, method, path, status, remote)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.time_nano,
            row.who,
            row.role,
            row.method,
            row.path,
            row.status,
            row.remote
        ],
    )?;
    Ok(())
}

/// Entries since `since` (ns), newest first, up to `limit`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn audit_log(conn: &Connection, since: i64, limit: usize) -> Result<Vec<AuditRow>, Error> {
    let mut stmt = conn.prepare(
        "SELECT seq, time_nano, who, role, method, path, status, remote FROM audit
         WHERE time_nano >= ?1 ORDER BY time_nano DESC, seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit as i64], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            time_nano: r.get(1)?,
            who: r.get(2)?,
            role: r.get(3)?,
            method: r.get(4)?,
            path: r.get(5)?,
            status: r.get(6)?,
            remote: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A user as stored: the argon2 hash (PHC string) of the password, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_nano: i64,
    pub created_by: String,
}

const USER_COLUMNS: &str = "name, role, hash, created_nano, created_by";

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        created_nano: r.get(3)?,
        created_by: r.get(4)?,
    })
}

/// Adds a user or replaces one's role and password; `Ok(true)` when it is new.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn put_user(tx: &Transaction<'_>, row: &UserRow) -> Result<bool, Error> {
    let existed = tx
        .query_row("SELECT 1 FROM users WHERE name = ?1", [&row.name], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    tx.execute(
        "INSERT INTO users (name, role, hash, created_nano, created_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash",
        params![
            row.name,
            row.role,
            row.hash,
            row.created_nano,
            row.created_by
        ],
    )?;
    // a new password or role ends the user's sessions
    tx.execute("DELETE FROM sessions WHERE who = ?1", [&row.name])?;
    Ok(!existed)
}

/// The user named `name`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn user(conn: &Connection, name: &str) -> Result<Option<UserRow>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
            [name],
            user_row,
        )
        .optional()?)
}

/// Every user, by name.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn users(conn: &Connection) -> Result<Vec<UserRow>, Error> {
    let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
    let rows = stmt.query_map([], user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes a user and ends their sessions; `Ok(false)` when there is none.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn remove_user(tx: &Transaction<'_>, name: &str) -> Result<bool, Error> {
    tx.execute("DELETE FROM sessions WHERE who = ?1", [name])?;
    Ok(tx.execute("DELETE FROM users WHERE name = ?1", [name])? == 1)
}

/// A browser session: who, with which role, its CSRF token, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Hex SHA-256 of the cookie's value.
    pub id_hash: String,
    pub who: String,
    pub role: String,
    pub csrf: String,
    pub created_nano: i64,
    pub expires_nano: i64,
    /// What it was made from: `user:<name>`, `token:<id>` or `admin` (the admin token).
    pub source: String,
}

/// Starts a session (and drops expired ones).
///
/// # Errors
/// [`Error::Sqlite`].
pub fn add_session(tx: &Transaction<'_>, row: &SessionRow) -> Result<(), Error> {
    tx.execute(
        "DELETE FROM sessions WHERE expires_nano < ?1",
        [row.created_nano],
    )?;
    tx.execute(
        "INSERT INTO sessions (id_hash, who, role, csrf, created_nano, expires_nano, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.id_hash,
            row.who,
            row.role,
            row.csrf,
            row.created_nano,
            row.expires_nano,
            row.source
        ],
    )?;
    Ok(())
}

/// The live session whose cookie hashes to `id_hash` at `now`.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn session(conn: &Connection, id_hash: &str, now: i64) -> Result<Option<SessionRow>, Error> {
    Ok(conn
        .query_row(
            "SELECT id_hash, who, role, csrf, created_nano, expires_nano, source FROM sessions
             WHERE id_hash = ?1 AND expires_nano > ?2",
            params![id_hash, now],
            |r| {
                Ok(SessionRow {
                    id_hash: r.get(0)?,
                    who: r.get(1)?,
                    role: r.get(2)?,
                    csrf: r.get(3)?,
                    created_nano: r.get(4)?,
                    expires_nano: r.get(5)?,
                    source: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Ends every session, or those of `who` (a user's or a token's name); how many ended.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn end_sessions(tx: &Transaction<'_>, who: Option<&str>) -> Result<usize, Error> {
    Ok(match who {
        Some(who) => tx.execute("DELETE FROM sessions WHERE who = ?1", [who])?,
        None => tx.execute("DELETE FROM sessions", [])?,
    })
}

/// Ends a session.
///
/// # Errors
/// [`Error::Sqlite`].
pub fn end_session(tx: &Transaction<'_>, id_hash: &str) -> Result<(), Error> {
    tx.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}
