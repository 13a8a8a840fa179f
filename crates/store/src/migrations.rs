//! The state database's schema migrations, and how every capstan database is opened and
//! brought up to date (the state store, the metrics history, the vulnerability database):
//! WAL journaling, migrations applied in order with the version in `PRAGMA user_version`, a
//! database newer than the binary refused.

use rusqlite::Connection;

use crate::Error;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a released entry; add one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: event journal, image inventory and lifecycle, container inventory
    "CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,
        time_nano   INTEGER NOT NULL,
        identity    INTEGER NOT NULL,
        type        TEXT NOT NULL,
        action      TEXT NOT NULL,
        actor       TEXT NOT NULL,
        attributes  TEXT NOT NULL,
        scope       TEXT,
        image_id    TEXT,
        inferred    INTEGER NOT NULL DEFAULT 0
     );
     CREATE UNIQUE INDEX events_seen_once ON events (time_nano, identity) WHERE inferred = 0;
     CREATE INDEX events_by_time ON events (time_nano DESC, seq DESC);
     CREATE INDEX events_by_image ON events (image_id, time_nano);
     CREATE INDEX events_by_actor ON events (actor, time_nano);
     CREATE TABLE images (
        id              TEXT PRIMARY KEY,
        repo_tags       TEXT NOT NULL,
        last_tags       TEXT NOT NULL DEFAULT '[]',
        repo_digests    TEXT NOT NULL,
        size            INTEGER NOT NULL,
        created_nano    INTEGER,
        layers          INTEGER NOT NULL,
        first_seen      INTEGER NOT NULL,
        last_seen       INTEGER NOT NULL,
        deleted_nano    INTEGER,
        last_event_nano INTEGER NOT NULL
     );
     CREATE TABLE image_tags (
        tag      TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        PRIMARY KEY (tag, image_id)
     );
     CREATE TABLE image_history (
        id          INTEGER PRIMARY KEY,
        image_id    TEXT NOT NULL,
        time_nano   INTEGER NOT NULL,
        action      TEXT NOT NULL,
        reference   TEXT,
        inferred    INTEGER NOT NULL,
        event_seq   INTEGER REFERENCES events (seq)
     );
     CREATE INDEX image_history_by_image ON image_history (image_id, time_nano);
     CREATE INDEX image_history_by_action ON image_history (image_id, action, time_nano);
     CREATE TABLE containers (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        image           TEXT NOT NULL,
        image_id        TEXT NOT NULL,
        state           TEXT NOT NULL,
        status          TEXT NOT NULL,
        created_nano    INTEGER NOT NULL,
        labels          TEXT NOT NULL,
        first_seen      INTEGER NOT NULL,
        last_seen       INTEGER NOT NULL,
        removed_nano    INTEGER,
        last_event_nano INTEGER NOT NULL
     );
     CREATE INDEX containers_by_image ON containers (image_id) WHERE removed_nano IS NULL;",
    // 2: the release ledger
    "CREATE TABLE releases (
        app          TEXT NOT NULL,
        number       INTEGER NOT NULL,
        created_nano INTEGER NOT NULL,
        actor        TEXT NOT NULL,
        source       TEXT NOT NULL,
        model        TEXT NOT NULL,
        images       TEXT NOT NULL DEFAULT '{}',
        result       TEXT NOT NULL,
        detail       TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (app, number)
     );",
    // 3: API tokens with roles (only their SHA-256 is kept) and the audit log
    "CREATE TABLE tokens (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL,
        hash         TEXT NOT NULL,
        created_nano INTEGER NOT NULL,
        created_by   TEXT NOT NULL,
        last_used_nano INTEGER,
        revoked_nano INTEGER
     );
     CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        time_nano INTEGER NOT NULL,
        who       TEXT NOT NULL,
        role      TEXT NOT NULL,
        method    TEXT NOT NULL,
        path      TEXT NOT NULL,
        status    INTEGER NOT NULL,
        remote    TEXT NOT NULL
     );
     CREATE INDEX audit_by_time ON audit (time_nano DESC);",
    // 4: users (argon2 hashes of their passwords) and browser sessions (only a hash of the
    // cookie is kept)
    "CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        hash          TEXT NOT NULL,
        created_nano  INTEGER NOT NULL,
        created_by    TEXT NOT NULL
     );
     CREATE TABLE sessions (
        id_hash      TEXT PRIMARY KEY,
        who          TEXT NOT NULL,
        role         TEXT NOT NULL,
        csrf         TEXT NOT NULL,
        created_nano INTEGER NOT NULL,
        expires_nano INTEGER NOT NULL
     );",
    // 5: what a session was made from (`user:<name>`, `token:<id>`, `admin`), so that revoking a
    // token ends its sessions; sessions from before cannot say, and end
    "ALTER TABLE sessions ADD COLUMN source TEXT NOT NULL DEFAULT '';
     DELETE FROM sessions;
     CREATE INDEX sessions_by_source ON sessions (source);",
    // 6: the deploy policy: host-level features an admin allowed per app
    "CREATE TABLE policy (
        app          TEXT NOT NULL,
        feature      TEXT NOT NULL,
        allowed_by   TEXT NOT NULL,
        time_nano    INTEGER NOT NULL,
        PRIMARY KEY (app, feature)
     );",
    // 7: the host security checks' open findings (`capstan-security`), so that one still open
    // after a restart keeps its first time and is not journaled again
    "CREATE TABLE security_findings (
        check_id     TEXT NOT NULL,
        object       TEXT NOT NULL,
        since_nano   INTEGER NOT NULL,
        finding      TEXT NOT NULL,
        PRIMARY KEY (check_id, object)
     );",
    // 8: the pipeline: each app's git source, the webhook deliveries it received (a delivery id
    // is taken once per app), and its builds
    "CREATE TABLE app_sources (
        app          TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        updated_nano INTEGER NOT NULL
     );
     CREATE TABLE hook_deliveries (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        app           TEXT NOT NULL,
        delivery      TEXT NOT NULL,
        provider      TEXT NOT NULL,
        event         TEXT NOT NULL,
        received_nano INTEGER NOT NULL,
        outcome       TEXT NOT NULL,
        reason        TEXT NOT NULL,
        commit_sha    TEXT NOT NULL DEFAULT '',
        build         INTEGER
     );
     CREATE UNIQUE INDEX hook_deliveries_once ON hook_deliveries (app, delivery)
        WHERE delivery != '' AND outcome != 'refused';
     CREATE INDEX hook_deliveries_by_app ON hook_deliveries (app, seq);
     CREATE TABLE builds (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        app           TEXT NOT NULL,
        service       TEXT NOT NULL,
        branch        TEXT NOT NULL,
        commit_sha    TEXT NOT NULL,
        author        TEXT NOT NULL,
        message       TEXT NOT NULL,
        status        TEXT NOT NULL,
        builder       TEXT NOT NULL DEFAULT '',
        queued_nano   INTEGER NOT NULL,
        started_nano  INTEGER,
        finished_nano INTEGER,
        image         TEXT NOT NULL DEFAULT '',
        digest        TEXT NOT NULL DEFAULT '',
        release       INTEGER,
        error         TEXT NOT NULL DEFAULT '',
        detail        TEXT NOT NULL DEFAULT '{}'
     );
     CREATE INDEX builds_by_app ON builds (app, id);",
    // 9: the pipeline's preview apps, each removed when it expires
    "CREATE TABLE previews (
        app          TEXT PRIMARY KEY,
        parent       TEXT NOT NULL,
        branch       TEXT NOT NULL,
        expires_nano INTEGER NOT NULL
     );",
    // 10: the fleet: joined hosts (each known by its key's fingerprint) and one-time join tokens
    "CREATE TABLE hosts (
        name              TEXT PRIMARY KEY,
        fingerprint       TEXT NOT NULL UNIQUE,
        labels            TEXT NOT NULL DEFAULT '{}',
        joined_nano       INTEGER NOT NULL,
        last_contact_nano INTEGER,
        engine            TEXT NOT NULL DEFAULT '',
        address           TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE join_tokens (
        id           TEXT PRIMARY KEY,
        hash         TEXT NOT NULL,
        labels       TEXT NOT NULL DEFAULT '{}',
        created_nano INTEGER NOT NULL,
        created_by   TEXT NOT NULL,
        expires_nano INTEGER NOT NULL,
        used_nano    INTEGER,
        used_by      TEXT
     );
     -- how far the hub has durably taken each host's stream (by the host's key: a host that
     -- joins again with the same key resumes where it was)
     CREATE TABLE stream_cursors (
        fingerprint TEXT NOT NULL,
        stream      TEXT NOT NULL,
        position    INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, stream)
     );",
    // 11: the hub's commands for hosts, kept until the host reports their end (a hub restarted
    // meanwhile offers them again; the agent runs each id once)
    "CREATE TABLE fleet_commands (
        id          TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        app         TEXT NOT NULL,
        release     INTEGER NOT NULL,
        op          TEXT NOT NULL,
        queued_nano INTEGER NOT NULL
     );",
    // 12: a join token good for several hosts (a DaemonSet's nodes): how many, how many joined
    "ALTER TABLE join_tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE join_tokens ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
     UPDATE join_tokens SET used = 1 WHERE used_nano IS NOT NULL;",
    // 13: replicas stopped on purpose (`capstan stop`): self-healing leaves them stopped until
    // `capstan start` or the app's next release. Replica 0 is the whole service.
    "CREATE TABLE stopped (
         app TEXT NOT NULL,
         service TEXT NOT NULL,
         replica INTEGER NOT NULL,
         stopped_by TEXT NOT NULL,
         time_nano INTEGER NOT NULL,
         PRIMARY KEY (app, service, replica)
     );",
];

/// Opens (creating) the SQLite database at `path` as every capstan database is opened (WAL
/// journaling, normal sync, foreign keys, a busy timeout) and applies `migrations` it has not
/// had yet, each in its own transaction. Each entry moves the schema from version `i` to
/// `i + 1`; never edit a released entry, add one.
///
/// # Errors
/// [`Error::Open`] when the file cannot be opened, [`Error::Migration`] when it is newer than
/// `migrations` or one fails.
pub fn open(path: &std::path::Path, migrations: &[&str]) -> Result<Connection, Error> {
    let open_error = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_error)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(open_error)?;
    apply(&mut conn, migrations).map_err(|e| match e {
        Error::Migration(m) => Error::Migration(format!("{}: {m}", path.display())),
        e => e,
    })?;
    Ok(conn)
}

fn apply(conn: &mut Connection, migrations: &[&str]) -> Result<(), Error> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > migrations.len() {
        return Err(Error::Migration(format!(
            "the database is at schema version {current} but this capstan knows only {}; run the newer capstan that wrote it",
            migrations.len()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| Error::Migration(format!("migration {} failed: {e}", i + 1)))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::debug!(version = i + 1, "applied schema migration");
    }
    Ok(())
}
