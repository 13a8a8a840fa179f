use std::path::PathBuf;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened.
    #[error(
        "cannot open database {path}: {source} (check the data dir's permissions and free space)"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate database {0}")]
    Migration(String),
    /// A query failed.
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON column did not parse.
    #[error("corrupt stored value: {0}")]
    Json(#[from] serde_json::Error),
    /// A writer panicked while holding the connection.
    #[error("state database connection poisoned by an earlier panic; restart capstan")]
    Poisoned,
    /// The blocking task running the query failed.
    #[error("state database task failed: {0}")]
    Task(String),
}
