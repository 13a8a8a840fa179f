//! The HTTP API: the `/api/v1` router, token authentication, the one error type and its JSON
//! form, and Server-Sent Event streams.
//!
//! It owns the wire contract (paths, parameters, status codes). It must never talk to the
//! engine except through `capstan-engine`, nor change state except through the job crates.

mod auth;
mod error;
mod params;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use capstan_engine::Engine;
use capstan_images::JournalStatus;
use capstan_model::Event;
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, Code};

/// Everything the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The state store.
    pub store: Store,
    /// The engine.
    pub engine: Engine,
    /// The journal's live status.
    pub journal: Arc<JournalStatus>,
    /// Stored events, as they are committed.
    pub live: broadcast::Sender<Event>,
    /// The admin token every protected route requires.
    pub admin_token: Arc<str>,
    /// Cancelled when the daemon shuts down; long streams end then.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The routes that need a token.
fn protected() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(routes::events::list))
        .route("/api/v1/events/stream", get(routes::events::stream))
        .route("/api/v1/images", get(routes::images::list))
        .route("/api/v1/images/{*key}", get(routes::images::detail))
        .route("/api/v1/containers", get(routes::containers::list))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = protected().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/api/v1/health", get(routes::health::health))
        .merge(protected)
        .fallback(routes::not_found)
        .with_state(state)
}
