//! CLI commands: each talks to the daemon over the API and prints a table or JSON.

pub mod alerts;
pub mod apps;
pub mod backups;
pub mod build;
pub mod builds;
pub mod client;
pub mod config;
pub mod events;
pub mod exec;
pub mod health;
pub mod hooks;
pub mod hosts;
pub mod images;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod ps;
pub mod registries;
pub mod render;
pub mod render_self;
pub mod secrets;
pub mod security;
pub mod table;
pub mod targets;
pub mod tokens;
pub mod top;
pub mod vulndb;

use std::process::ExitCode;

use capstan_model::ExitStatus;

/// A CLI failure with its exit status (see the design's contract).
#[derive(Debug)]
pub struct Failure {
    /// Failed, bad usage or input, daemon or engine unreachable.
    pub code: ExitStatus,
    /// What to tell the user.
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitStatus, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Prints a failure and turns the outcome into the process exit code.
pub fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code.code())
        }
    }
}

/// Shortens `sha256:abcdef...` to docker's 12 characters.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Local, second-precision time for tables.
pub fn local_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Bytes as docker prints them (`1.2MB`).
pub fn human_size(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n < 1_000 => format!("{n}B"),
        n if n < 1_000_000 => format!("{:.1}kB", b / 1e3),
        n if n < 1_000_000_000 => format!("{:.1}MB", b / 1e6),
        _ => format!("{:.2}GB", b / 1e9),
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(ExitStatus::Failure, format!("cannot encode output: {e}")))?;
    println!("{text}");
    Ok(())
}
