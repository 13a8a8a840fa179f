//! One module per resource.

pub(crate) mod access;
pub(crate) mod alerts;
pub(crate) mod apps;
pub(crate) mod containers;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod images;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod policy;
pub(crate) mod scan;
pub(crate) mod session;
pub(crate) mod ui;

use crate::{ApiError, Code};

/// Any path no route serves.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such route; the API lives under /api/v1")
}
