//! One module per resource.

pub(crate) mod access;
pub(crate) mod alerts;
pub(crate) mod apps;
pub(crate) mod backups;
pub(crate) mod builds;
pub(crate) mod containers;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod health;
pub(crate) mod hooks;
pub(crate) mod hosts;
pub(crate) mod images;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod policy;
pub(crate) mod registries;
pub(crate) mod scan;
pub(crate) mod security;
pub(crate) mod session;
pub(crate) mod targets;
pub(crate) mod ui;

use crate::{ApiError, Code};

/// Any path no route serves.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such route; the API lives under /api/v1")
}

/// Now, in ns since the epoch (as the store keeps times).
pub(crate) fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// 201 for something new, 200 for something that already was (a put that changed it).
pub(crate) fn created_or_ok(new: bool) -> axum::http::StatusCode {
    if new {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    }
}
