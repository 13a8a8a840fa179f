//! The HTTP API: the `/api/v1` router, token authentication, the one error type and its JSON
//! form, and Server-Sent Event streams.
//!
//! It owns the wire contract (paths, parameters, status codes). It must never talk to the
//! engine except through `capstan-engine`, nor change state except through the job crates.

mod auth;
mod error;
mod params;
mod routes;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use capstan_engine::Engine;
use capstan_images::JournalStatus;
use capstan_model::Event;
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use auth::Peer;
pub use error::{ApiError, Code};
pub use routes::logs::LogsState;

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
    /// Session cookies get `Secure` (capstan serves TLS).
    pub secure_cookies: bool,
    /// Cancelled when the daemon shuts down; long streams end then.
    pub shutdown: CancellationToken,
    /// `<data>/apps`: configs and secrets of deployed apps.
    pub apps_dir: std::path::PathBuf,
    /// Apps with a deploy running (one at a time per app).
    pub deploying: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Keeps capstan's proxy in step with the replicas in rotation.
    pub router: Option<capstan_deploy::Router>,
    /// The log store and collector, when log collection runs.
    pub logs: Option<routes::logs::LogsState>,
    /// The image watcher, when registries are watched.
    pub updates: Option<Arc<capstan_images::WatchState>>,
    /// The secret registry webhooks prove they know (`<data>/registry-hook.secret`).
    pub hook_secret: Option<Arc<str>>,
    /// Container metrics, when collected.
    pub metrics: Option<Arc<capstan_metrics::Metrics>>,
    /// Their recent history, when kept.
    pub history: Option<Arc<capstan_metrics::History>>,
    /// The alert engine.
    pub alerts: Option<Arc<capstan_alerts::Alerts>>,
    /// Vulnerability scans and the advisory database.
    pub scanner: capstan_scan::Scanner,
    /// The notification channels' statuses.
    pub notify:
        Arc<std::sync::Mutex<std::collections::BTreeMap<String, capstan_model::NotifyChannel>>>,
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
        .route("/api/v1/images/updates", get(routes::images::updates))
        .route("/api/v1/notify", get(routes::images::notify))
        .route(
            "/api/v1/images/updates/check",
            post(routes::images::check_updates),
        )
        .route("/api/v1/images/scan", post(routes::scan::scan))
        .route("/api/v1/images/findings", get(routes::scan::findings))
        .route(
            "/api/v1/vulndb",
            get(routes::scan::status).post(routes::scan::import).layer(
                axum::extract::DefaultBodyLimit::max(routes::scan::IMPORT_LIMIT),
            ),
        )
        .route("/api/v1/images/{*key}", get(routes::images::detail))
        .route("/api/v1/containers", get(routes::containers::list))
        .route("/api/v1/apps", get(routes::apps::list_apps))
        .route("/api/v1/proxy", get(routes::apps::proxy_status))
        .route("/api/v1/logs", get(routes::logs::search))
        .route("/api/v1/logs/histogram", get(routes::logs::histogram))
        .route("/api/v1/logs/stream", get(routes::logs::stream))
        .route("/api/v1/logs/stats", get(routes::logs::stats))
        .route("/metrics", get(routes::metrics::metrics))
        .route(
            "/api/v1/metrics/containers",
            get(routes::metrics::containers),
        )
        .route("/api/v1/metrics/query", get(routes::metrics::query))
        .route("/api/v1/alerts", get(routes::alerts::list))
        .route(
            "/api/v1/tokens",
            get(routes::access::list).post(routes::access::create),
        )
        .route(
            "/api/v1/tokens/{name}",
            axum::routing::delete(routes::access::revoke),
        )
        .route("/api/v1/audit", get(routes::access::audit))
        .route(
            "/api/v1/session",
            get(routes::session::current).delete(routes::session::sign_out),
        )
        .route(
            "/api/v1/users",
            get(routes::session::list_users).post(routes::session::put_user),
        )
        .route(
            "/api/v1/users/{name}",
            axum::routing::delete(routes::session::remove_user),
        )
        .route("/api/v1/alerts/history", get(routes::alerts::history))
        .route(
            "/api/v1/alerts/rules",
            get(routes::alerts::rules).post(routes::alerts::add_rule),
        )
        .route(
            "/api/v1/alerts/rules/{name}",
            axum::routing::delete(routes::alerts::remove_rule),
        )
        .route(
            "/api/v1/alerts/rules/{name}/test",
            post(routes::alerts::test_rule),
        )
        .route("/api/v1/apps/{app}/plan", post(routes::apps::plan_app))
        .route("/api/v1/apps/{app}/deploy", post(routes::apps::deploy_app))
        .route(
            "/api/v1/apps/{app}/build/{service}",
            post(routes::apps::build_service).layer(axum::extract::DefaultBodyLimit::max(
                routes::apps::BUILD_CONTEXT_LIMIT,
            )),
        )
        .route(
            "/api/v1/apps/{app}/releases",
            get(routes::apps::list_releases),
        )
        .route("/api/v1/apps/{app}/down", post(routes::apps::down_app))
        .route(
            "/api/v1/apps/{app}/rollback",
            post(routes::apps::rollback_app),
        )
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = protected().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/api/v1/health", get(routes::health::health))
        .route("/api/v1/session", post(routes::session::sign_in))
        .route("/", get(routes::ui::index))
        .route("/ui/app.js", get(routes::ui::app_js))
        .route("/ui/style.css", get(routes::ui::style))
        .route(
            "/api/v1/hooks/registry",
            post(routes::images::registry_hook),
        )
        .merge(protected)
        .fallback(routes::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A router over a real store and an engine address with nothing behind it: enough for
    /// everything that does not reach the engine.
    fn app(dir: &tempfile::TempDir) -> Router {
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let engine = Engine::new(Some("unix:///nonexistent/docker.sock")).unwrap();
        router(AppState {
            store,
            engine,
            journal: Arc::default(),
            live: broadcast::channel(8).0,
            admin_token: Arc::from("secret"),
            secure_cookies: false,
            shutdown: CancellationToken::new(),
            apps_dir: dir.path().join("apps"),
            deploying: Arc::default(),
            router: None,
            logs: None,
            updates: None,
            hook_secret: None,
            notify: Arc::default(),
            metrics: None,
            history: None,
            alerts: None,
            scanner: capstan_scan::Scanner::new(
                Engine::new(Some("unix:///nonexistent/docker.sock")).unwrap(),
                capstan_scan::VulnDb::open(&dir.path().join("vulndb.db")).unwrap(),
                dir.path().join("scan"),
            ),
        })
    }

    async fn call(app: Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn routes_need_the_token_but_health() {
        let dir = tempfile::tempdir().unwrap();
        let (status, body) = call(app(&dir), "/api/v1/events", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = call(app(&dir), "/api/v1/events", Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(app(&dir), "/api/v1/events", Some("secret")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["events"], serde_json::json!([]));
        let (status, _) = call(app(&dir), "/metrics", None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "metrics need the token too"
        );
        let (status, _) = call(app(&dir), "/metrics", Some("secret")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(app(&dir), "/api/v1/health", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["engine"]["reachable"], false);
    }

    #[tokio::test]
    async fn engine_routes_answer_503_when_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (status, body) = call(app(&dir), "/api/v1/containers", Some("secret")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "engine_unavailable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is dockerd running?")
        );
    }

    #[tokio::test]
    async fn bad_queries_name_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let (status, body) = call(app(&dir), "/api/v1/events?limit=abc", Some("secret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("\"limit\"")
        );
        let (status, _) = call(app(&dir), "/api/v1/images/sha256:ffff", Some("secret")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
