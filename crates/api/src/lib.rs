//! The HTTP API: the `/api/v1` router, token authentication, the one error type and its JSON
//! form, and Server-Sent Event streams.
//!
//! It owns the wire contract (paths, parameters, status codes). It must never talk to the
//! engine except through `capstan-engine`, nor change state except through the job crates.

mod auth;
mod error;
pub mod openapi;
mod params;
mod redact;
mod routes;
pub mod server;
mod signin;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use capstan_engine::Engine;
use capstan_images::JournalStatus;
use capstan_model::{Event, Role};
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use auth::Peer;
pub use error::{ApiError, Code};
pub use routes::logs::{LogsState, MAX_TAILS};

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
    /// Host names answered besides IP addresses and `localhost` (`allowed_hosts`).
    pub allowed_hosts: Arc<[String]>,
    /// Cancelled when the daemon shuts down; long streams end then.
    pub shutdown: CancellationToken,
    /// `<data>/apps`: configs and secrets of deployed apps.
    pub apps_dir: std::path::PathBuf,
    /// Apps with a rollout running (one at a time per app).
    pub deploying: capstan_model::RolloutLocks,
    /// Runs releases, rollbacks and downs against the target.
    pub deployer: capstan_deploy::Deployer,
    /// Keeps capstan's proxy in step with the replicas in rotation.
    pub router: Option<capstan_deploy::Router>,
    /// The log store and collector, when log collection runs.
    pub logs: Option<routes::logs::LogsState>,
    /// The image watcher, when registries are watched.
    pub updates: Option<Arc<capstan_images::WatchState>>,
    /// The secret registry webhooks prove they know (`<data>/registry-hook.secret`).
    pub hook_secret: Option<Arc<str>>,
    /// An app's git webhooks and sources (with capstan serve's vault, where their secrets are
    /// kept).
    pub hooks: Option<capstan_pipeline::Hooks>,
    /// Runs the builds git pushes queue.
    pub builder: Option<capstan_pipeline::Builder>,
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
    /// Failed sign-ins remembered, and the bound on passwords hashed at once.
    pub sign_ins: Arc<SignIns>,
    /// The host security checks, when they run.
    pub security: Option<capstan_security::Security>,
    /// Where registry credentials come from (every pull, build and scan, and the watcher).
    pub registries: Arc<capstan_registry::CredentialSource>,
    /// A registry client, for checking logins.
    pub registry: Arc<capstan_registry::Client>,
    /// The targets `[[targets]]` names besides the local engine.
    pub targets: Arc<[capstan_deploy::targets::TargetConfig]>,
    /// Whether this host has a Docker engine (`[docker] enabled`).
    pub engine_on: bool,
    /// capstan's version and the commit it was built from, as the health endpoint tells it.
    pub version: &'static str,
    /// The fleet's hub (`[fleet] listen`); `None`: this capstan is not one.
    pub hub: Option<capstan_fleet::Hub>,
    /// What `capstan images prune` keeps by default (`[images] prune_keep`, `build_cache`).
    pub prune: capstan_images::PruneSchedule,
    /// A deployer for each of them, by name (`deployer` is the local engine's).
    pub places: Arc<std::collections::BTreeMap<String, capstan_deploy::Deployer>>,
    /// Backups of apps' volumes (`[backups]`), when configured.
    pub backups: Option<capstan_backup::Backups>,
}

/// Failed sign-ins remembered, and the bound on passwords hashed at once (see `signin.rs`).
#[derive(Debug, Default)]
pub struct SignIns(pub(crate) signin::SignIns);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// Who may call a route: anyone (it checks what it needs itself), or a role and those above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Open,
    Needs(Role),
}

const OPEN: Access = Access::Open;
/// Reading.
const VIEWER: Access = Access::Needs(Role::Viewer);
/// Changing what runs.
const OPERATOR: Access = Access::Needs(Role::Operator);
/// Tokens, users, the audit log, alert rules, the advisory database.
const ADMIN: Access = Access::Needs(Role::Admin);

/// A router that records each method, path template and role as it registers them: the
/// authorization middleware enforces the role of the template a request matched, and the
/// OpenAPI document is checked against (and documents) the same table.
struct Routes {
    router: Router<AppState>,
    table: Vec<(Method, &'static str, Access)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn add<H, T>(
        mut self,
        (method, filter): (Method, MethodFilter),
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((method, path, access));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add((Method::GET, MethodFilter::GET), path, access, handler)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add((Method::POST, MethodFilter::POST), path, access, handler)
    }

    fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add((Method::PUT, MethodFilter::PUT), path, access, handler)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self {
        self.add(
            (Method::DELETE, MethodFilter::DELETE),
            path,
            access,
            handler,
        )
    }
}

/// The routes that need a token or a session, each with the role it needs. Planning a deploy
/// and testing an alert rule change nothing: a viewer's.
fn protected() -> Routes {
    use routes::{
        access, alerts, apps, builds, containers, events, hooks, hosts, images, logs, metrics,
        policy, registries, scan, security, session, targets,
    };
    let import_limit = DefaultBodyLimit::max(scan::IMPORT_LIMIT);
    let build_limit = DefaultBodyLimit::max(apps::BUILD_CONTEXT_LIMIT);
    Routes::new()
        .get("/api/v1/events", VIEWER, events::list)
        .get("/api/v1/events/stream", VIEWER, events::stream)
        .get("/api/v1/images", VIEWER, images::list)
        .get("/api/v1/images/updates", VIEWER, images::updates)
        .get("/api/v1/notify", VIEWER, images::notify)
        .post(
            "/api/v1/images/updates/check",
            OPERATOR,
            images::check_updates,
        )
        .post("/api/v1/images/scan", OPERATOR, scan::scan)
        .get("/api/v1/images/findings", VIEWER, scan::findings)
        .get("/api/v1/vulndb", VIEWER, scan::status)
        .get("/api/v1/security", VIEWER, security::report)
        .post("/api/v1/vulndb", ADMIN, scan::import.layer(import_limit))
        .get("/api/v1/images/{*key}", VIEWER, images::detail)
        .get("/api/v1/containers", VIEWER, containers::list)
        .get("/api/v1/apps", VIEWER, apps::list_apps)
        .get("/api/v1/targets", VIEWER, targets::list)
        .get("/api/v1/targets/{name}/self", VIEWER, targets::render_self)
        .get("/api/v1/hosts", VIEWER, hosts::list)
        .post("/api/v1/hosts/join-tokens", ADMIN, hosts::join_token)
        .delete("/api/v1/hosts/{name}", ADMIN, hosts::remove)
        .get("/api/v1/proxy", VIEWER, apps::proxy_status)
        .get("/api/v1/logs", VIEWER, logs::search)
        .get("/api/v1/logs/export", VIEWER, logs::export)
        .get("/api/v1/logs/histogram", VIEWER, logs::histogram)
        .get("/api/v1/logs/stream", VIEWER, logs::stream)
        .get("/api/v1/logs/stats", VIEWER, logs::stats)
        .get("/metrics", VIEWER, metrics::metrics)
        .get("/api/v1/metrics/containers", VIEWER, metrics::containers)
        .get("/api/v1/metrics/query", VIEWER, metrics::query)
        .get("/api/v1/alerts", VIEWER, alerts::list)
        .get("/api/v1/tokens", ADMIN, access::list)
        .post("/api/v1/tokens", ADMIN, access::create)
        .delete("/api/v1/tokens/{name}", ADMIN, access::revoke)
        .get("/api/v1/audit", ADMIN, access::audit)
        .get("/api/v1/session", VIEWER, session::current)
        .delete("/api/v1/session", VIEWER, session::sign_out)
        .get("/api/v1/users", ADMIN, session::list_users)
        .post("/api/v1/users", ADMIN, session::put_user)
        .delete("/api/v1/users/{name}", ADMIN, session::remove_user)
        .delete("/api/v1/sessions", ADMIN, session::end_sessions)
        .get("/api/v1/registries", ADMIN, registries::list)
        .post("/api/v1/registries/{registry}", ADMIN, registries::login)
        .delete("/api/v1/registries/{registry}", ADMIN, registries::logout)
        .get("/api/v1/policy", ADMIN, policy::list)
        .post("/api/v1/policy/{app}", ADMIN, policy::allow)
        .delete("/api/v1/policy/{app}", ADMIN, policy::disallow)
        .get("/api/v1/alerts/history", VIEWER, alerts::history)
        .get("/api/v1/alerts/rules", VIEWER, alerts::rules)
        .post("/api/v1/alerts/rules", ADMIN, alerts::add_rule)
        .delete("/api/v1/alerts/rules/{name}", ADMIN, alerts::remove_rule)
        .post(
            "/api/v1/alerts/rules/{name}/test",
            VIEWER,
            alerts::test_rule,
        )
        .post("/api/v1/apps/{app}/plan", VIEWER, apps::plan_app)
        .post("/api/v1/apps/{app}/render", VIEWER, apps::render_app)
        .post("/api/v1/apps/{app}/deploy", OPERATOR, apps::deploy_app)
        .post(
            "/api/v1/apps/{app}/build/{service}",
            OPERATOR,
            apps::build_service.layer(build_limit),
        )
        .get("/api/v1/builds", VIEWER, builds::list)
        .get("/api/v1/builds/{id}", VIEWER, builds::one)
        .post("/api/v1/builds/{id}/cancel", OPERATOR, builds::cancel)
        .post("/api/v1/builds/{id}/retry", OPERATOR, builds::retry)
        .get("/api/v1/apps/{app}/hooks", VIEWER, hooks::info)
        .post("/api/v1/apps/{app}/hooks", OPERATOR, hooks::new_secret)
        .put("/api/v1/apps/{app}/source", OPERATOR, hooks::set_source)
        .delete("/api/v1/apps/{app}/source", OPERATOR, hooks::remove_source)
        .get("/api/v1/apps/{app}/releases", VIEWER, apps::list_releases)
        .get("/api/v1/apps/{app}/replicas", VIEWER, apps::app_replicas)
        .post("/api/v1/apps/{app}/down", OPERATOR, apps::down_app)
        .post("/api/v1/apps/{app}/rollback", OPERATOR, apps::rollback_app)
        .post("/api/v1/apps/{app}/scale", OPERATOR, apps::scale_app)
        .post("/api/v1/images/prune", OPERATOR, routes::images::prune)
        .post("/api/v1/apps/{app}/stop", OPERATOR, apps::stop_app)
        .post("/api/v1/apps/{app}/start", OPERATOR, apps::start_app)
        .post("/api/v1/apps/{app}/restart", OPERATOR, apps::restart_app)
        .get("/api/v1/apps/{app}/exec", OPERATOR, routes::exec::exec)
        .get("/api/v1/apps/{app}/backups", VIEWER, routes::backups::list)
        .post(
            "/api/v1/apps/{app}/backups",
            OPERATOR,
            routes::backups::take,
        )
        .post(
            "/api/v1/apps/{app}/restore",
            OPERATOR,
            routes::backups::restore,
        )
}

/// The routes open to all: health, sign-in, the dashboard's assets, the OpenAPI document and the
/// registry hook (which checks its own secret).
fn open() -> Routes {
    Routes::new()
        .get("/api/v1/health", OPEN, routes::health::health)
        .post("/api/v1/session", OPEN, routes::session::sign_in)
        .get("/api/v1/openapi.json", OPEN, openapi::openapi_json)
        .get("/", OPEN, routes::ui::index)
        .get("/ui/{*path}", OPEN, routes::ui::file)
        .post(
            "/api/v1/hooks/registry",
            OPEN,
            routes::images::registry_hook,
        )
        .post("/api/v1/hooks/git/{app}", OPEN, routes::hooks::receive)
}

/// Every method and path the router serves, as registered.
pub fn route_table() -> Vec<(Method, &'static str)> {
    open()
        .table
        .into_iter()
        .chain(protected().table)
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The role a protected route's template needs, as registered (a wildcard `{*key}` may be
/// written `{key}`, as OpenAPI does); `None` for a template not registered as protected.
pub(crate) fn route_role(method: &Method, template: &str) -> Option<Role> {
    static ROLES: std::sync::OnceLock<Vec<(Method, &'static str, Access)>> =
        std::sync::OnceLock::new();
    ROLES
        .get_or_init(|| protected().table)
        .iter()
        .find(|(m, p, _)| m == method && (*p == template || p.replace("{*", "{") == template))
        .and_then(|(_, _, access)| match access {
            Access::Needs(role) => Some(*role),
            Access::Open => None,
        })
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = protected()
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    open()
        .router
        .merge(protected)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::known_host,
        ))
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
            engine: engine.clone(),
            journal: Arc::default(),
            live: broadcast::channel(8).0,
            admin_token: Arc::from("secret"),
            secure_cookies: false,
            allowed_hosts: Arc::from(vec!["capstan.example.com".to_owned()]),
            shutdown: CancellationToken::new(),
            apps_dir: dir.path().join("apps"),
            deploying: capstan_model::RolloutLocks::default(),
            deployer: capstan_deploy::Deployer::new(
                Arc::new(capstan_deploy::DockerTarget {
                    engine: engine.clone(),
                    apps_dir: dir.path().join("apps"),
                    router: None,
                    events: None,
                    secrets: None,
                    credentials: None,
                    retiring: Arc::default(),
                }),
                dir.path().join("apps"),
                None,
            ),
            router: None,
            logs: None,
            updates: None,
            hook_secret: None,
            hooks: None,
            builder: None,
            notify: Arc::default(),
            sign_ins: Arc::default(),
            metrics: None,
            history: None,
            alerts: None,
            security: None,
            registries: Arc::default(),
            registry: Arc::new(
                capstan_registry::Client::new(capstan_registry::Options::default()).unwrap(),
            ),
            scanner: capstan_scan::Scanner::new(
                Engine::new(Some("unix:///nonexistent/docker.sock")).unwrap(),
                capstan_scan::VulnDb::open(&dir.path().join("vulndb.db")).unwrap(),
                dir.path().join("scan"),
            ),
            targets: Arc::from(Vec::new()),
            engine_on: true,
            version: "0.0.0 (test)",
            hub: None,
            prune: capstan_images::ImagesConfig::default()
                .prune_schedule()
                .expect("the default prune schedule holds"),
            places: Arc::default(),
            backups: None,
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

    /// What the router serves under `/api/v1` (and `/metrics`), as `METHOD /path/{param}`.
    fn routed() -> std::collections::BTreeSet<String> {
        route_table()
            .into_iter()
            .filter(|(_, p)| p.starts_with("/api/v1/") || *p == "/metrics")
            .map(|(m, p)| format!("{m} {}", p.replace("{*", "{")))
            .collect()
    }

    fn documented() -> std::collections::BTreeMap<String, Vec<String>> {
        let mut doc = openapi::document();
        let mut out = std::collections::BTreeMap::new();
        for (path, item) in &mut doc.paths.paths {
            for (method, op) in openapi::operations(item) {
                let query = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                    .map(|p| p.name.clone())
                    .collect();
                out.insert(format!("{method} {path}"), query);
            }
        }
        out
    }

    async fn send(app: Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        send_as(app, method, uri, "secret").await
    }

    async fn send_as(
        app: Router,
        method: &str,
        uri: &str,
        token: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        if resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            // a live stream never ends; its status is the answer
            return (status, serde_json::Value::Null);
        }
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn concrete(path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            out.push_str("probe");
            rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
        }
        out.push_str(rest);
        out
    }

    /// A token of `role`, made through the API by the admin token.
    async fn token_of(dir: &tempfile::TempDir, role: Role) -> String {
        let req = Request::post("/api/v1/tokens")
            .header("authorization", "Bearer secret")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({"name": format!("t-{}", role.as_str()), "role": role.as_str()})
                    .to_string(),
            ))
            .unwrap();
        let resp = app(dir).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let made: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        made["token"].as_str().unwrap().to_owned()
    }

    /// DNS rebinding and login CSRF: a request for another site's name is refused before any
    /// route, and a sign-in must be JSON from this origin.
    #[tokio::test]
    async fn other_host_names_and_cross_site_sign_ins_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ask = |host: &'static str| {
            Request::get("/api/v1/health")
                .header("host", host)
                .body(Body::empty())
                .unwrap()
        };
        for (host, want) in [
            ("evil.example:7878", StatusCode::FORBIDDEN),
            ("127.0.0.1:7878", StatusCode::OK),
            ("localhost:7878", StatusCode::OK),
            ("capstan.example.com", StatusCode::OK),
        ] {
            let resp = app(&dir).oneshot(ask(host)).await.unwrap();
            assert_eq!(resp.status(), want, "{host}");
        }
        let sign_in = |content_type: &'static str, origin: Option<&'static str>| {
            let mut req = Request::post("/api/v1/session")
                .header("host", "127.0.0.1:7878")
                .header("content-type", content_type);
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            req.body(Body::from(r#"{"token":"secret"}"#)).unwrap()
        };
        for (content_type, origin, want) in [
            ("text/plain", None, StatusCode::BAD_REQUEST),
            (
                "application/x-www-form-urlencoded",
                None,
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/json",
                Some("http://evil.example"),
                StatusCode::FORBIDDEN,
            ),
            (
                "application/json",
                Some("http://127.0.0.1:7878"),
                StatusCode::OK,
            ),
            ("application/json", None, StatusCode::OK),
        ] {
            let resp = app(&dir)
                .oneshot(sign_in(content_type, origin))
                .await
                .unwrap();
            assert_eq!(resp.status(), want, "{content_type} from {origin:?}");
            assert_eq!(
                resp.headers().contains_key("set-cookie"),
                want == StatusCode::OK,
                "a session only for a same-origin JSON sign-in"
            );
        }
    }

    /// Signs in with `token`; the session's cookie (`capstan_session=...`).
    async fn sign_in_with(dir: &tempfile::TempDir, token: &str) -> String {
        let req = Request::post("/api/v1/session")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({ "token": token }).to_string(),
            ))
            .unwrap();
        let resp = app(dir).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    async fn session_status(dir: &tempfile::TempDir, cookie: &str) -> StatusCode {
        let req = Request::get("/api/v1/session")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        app(dir).oneshot(req).await.unwrap().status()
    }

    /// A session lives no longer than the token it was signed in with, and an admin can end
    /// sessions at once.
    #[tokio::test]
    async fn revoking_a_token_ends_its_sessions_and_admins_can_end_any() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_of(&dir, Role::Operator).await;
        let cookie = sign_in_with(&dir, &token).await;
        assert_eq!(session_status(&dir, &cookie).await, StatusCode::OK);
        let (status, _) = send(app(&dir), "DELETE", "/api/v1/tokens/t-operator").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            session_status(&dir, &cookie).await,
            StatusCode::UNAUTHORIZED,
            "a revoked token's session still works"
        );
        let admin = sign_in_with(&dir, "secret").await;
        let other = sign_in_with(&dir, "secret").await;
        assert_eq!(session_status(&dir, &admin).await, StatusCode::OK);
        let (status, body) = send(app(&dir), "DELETE", "/api/v1/sessions?who=admin").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ended"], 2);
        for c in [&admin, &other] {
            assert_eq!(session_status(&dir, c).await, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = send(app(&dir), "DELETE", "/api/v1/sessions?whom=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// For every documented operation and every role: refused with 403 exactly when the role is
    /// below the operation's `x-capstan-role`. Roles follow the route a request matched, not how
    /// its path ends: a build for a service named `plan` or a rule named `test` needs what a
    /// build or a rule removal needs.
    #[tokio::test]
    async fn every_operation_enforces_the_role_it_documents() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Operator] {
            tokens.push((role, token_of(&dir, role).await));
        }
        tokens.push((Role::Admin, "secret".to_owned()));
        let doc = serde_json::to_value(openapi::document()).unwrap();
        let refused = |status: StatusCode, body: &serde_json::Value| {
            status == StatusCode::FORBIDDEN
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("this needs the"))
        };
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(documented) = op["x-capstan-role"].as_str() else {
                    continue;
                };
                let documented = Role::parse(documented).unwrap();
                let method = method.to_uppercase();
                for (role, token) in &tokens {
                    let (status, body) = send_as(app(&dir), &method, &concrete(path), token).await;
                    assert_eq!(
                        refused(status, &body),
                        *role < documented,
                        "{method} {path} as {}: {status} {body}",
                        role.as_str()
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} operations checked");
        // what deciding by a path's end let a viewer do (a build, a rule's removal)
        let viewer = &tokens[0].1;
        for (method, uri) in [
            ("POST", "/api/v1/apps/x/build/plan?image=postgres:16"),
            ("DELETE", "/api/v1/alerts/rules/test"),
            ("POST", "/api/v1/apps/x/deploy/plan"),
        ] {
            let (status, body) = send_as(app(&dir), method, uri, viewer).await;
            assert!(
                refused(status, &body) || status == StatusCode::NOT_FOUND,
                "a viewer's {method} {uri}: {status} {body}"
            );
        }
        let (status, body) = send_as(
            app(&dir),
            "POST",
            "/api/v1/apps/x/build/plan?image=postgres:16",
            viewer,
        )
        .await;
        assert!(refused(status, &body), "{status} {body}");
    }

    #[tokio::test]
    async fn the_openapi_document_lists_exactly_the_routed_operations() {
        let routed = routed();
        let documented: std::collections::BTreeSet<String> = documented().into_keys().collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && unrouted.is_empty(),
            "routed but not documented: {missing:?}; documented but not routed: {unrouted:?}"
        );
        assert!(routed.len() > 40, "{routed:?}");

        // and each recorded route is really served: the router's fallback never answers it
        let dir = tempfile::tempdir().unwrap();
        for op in &routed {
            let (method, path) = op.split_once(' ').unwrap();
            let (status, body) = send(app(&dir), method, &concrete(path)).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{op}");
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no such route"),
                "{op} fell through to the fallback"
            );
        }
        // a method the document does not list is not served
        let (status, _) = send(app(&dir), "PUT", "/api/v1/apps").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn each_operation_documents_the_query_parameters_it_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut checked = 0;
        for (op, query) in documented() {
            let (method, path) = op.split_once(' ').unwrap();
            let uri = format!("{}?zz_probe=1", concrete(path));
            let (status, body) = send(app(&dir), method, &uri).await;
            let message = body["error"]["message"].as_str().unwrap_or_default();
            let Some(accepted) = message
                .split_once("unknown parameter (accepted: ")
                .map(|(_, m)| m)
                .and_then(|m| m.strip_suffix(')'))
            else {
                // the handler takes no query parameters (or checks something else first): then
                // it documents none that it would reject
                assert!(
                    query.is_empty() || status != StatusCode::BAD_REQUEST,
                    "{op}: {status} {body}"
                );
                continue;
            };
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let mut accepted: Vec<&str> = accepted.split(", ").filter(|a| !a.is_empty()).collect();
            accepted.sort_unstable();
            let mut query: Vec<&str> = query.iter().map(String::as_str).collect();
            query.sort_unstable();
            assert_eq!(query, accepted, "{op}: documented vs accepted");
            checked += 1;
        }
        assert!(checked > 20, "only {checked} operations checked");
    }

    #[tokio::test]
    async fn the_openapi_document_is_served_to_anyone_with_roles() {
        let dir = tempfile::tempdir().unwrap();
        let (status, doc) = call(app(&dir), "/api/v1/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let deploy = &doc["paths"]["/api/v1/apps/{app}/deploy"]["post"];
        assert_eq!(deploy["x-capstan-role"], "operator");
        assert!(deploy["responses"]["403"].is_object());
        assert_eq!(
            doc["paths"]["/api/v1/tokens"]["post"]["x-capstan-role"],
            "admin"
        );
        assert_eq!(
            doc["paths"]["/api/v1/events"]["get"]["x-capstan-role"],
            "viewer"
        );
        assert!(doc["paths"]["/api/v1/health"]["get"]["x-capstan-role"].is_null());
        assert!(doc["components"]["schemas"]["EventPage"].is_object());
        assert!(doc["components"]["securitySchemes"]["token"].is_object());
    }

    async fn post_yaml(app: Router, uri: &str, yaml: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::post(uri)
            .header("authorization", "Bearer secret")
            .header("content-type", "application/yaml")
            .body(Body::from(yaml.to_owned()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Names become paths under `<data>/apps/<app>`: one that could climb out is refused before
    /// anything is written or removed.
    #[tokio::test]
    async fn names_that_would_leave_the_apps_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("admin.token");
        std::fs::write(&canary, "keep me").unwrap();
        for (method, uri) in [
            ("POST", "/api/v1/apps/..%2F..%2Fx/deploy"),
            ("POST", "/api/v1/apps/..%2F..%2Fx/plan"),
            ("POST", "/api/v1/apps/../down"),
            ("POST", "/api/v1/apps/..%2F../down"),
            ("POST", "/api/v1/apps/..%2F../rollback"),
            ("GET", "/api/v1/apps/..%2F../releases"),
            ("POST", "/api/v1/apps/web/build/..%2F..%2Fx?image=x"),
        ] {
            let (status, body) = send(app(&dir), method, uri).await;
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{method} {uri}: {status} {body}"
            );
            if status == StatusCode::BAD_REQUEST {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(" name "), "{method} {uri}: {message}");
            }
        }
        let yaml = "services:\n  web:\n    image: busybox\n    secrets: [\"../../../admin.token\"]\nsecrets:\n  \"../../../admin.token\":\n    content: x\n";
        for route in ["plan", "deploy"] {
            let (status, body) =
                post_yaml(app(&dir), &format!("/api/v1/apps/web1/{route}"), yaml).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("secret name"), "{message}");
        }
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep me");
        assert!(
            dir.path().join("state.db").exists(),
            "the data dir is whole"
        );
        let (status, _) = call(app(&dir), "/api/v1/apps/web1/releases", Some("secret")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing recorded");
    }

    /// A model edited from what the API showed carries placeholders: with no running release
    /// to take the values from, it is refused, naming the key.
    #[tokio::test]
    async fn a_placeholder_without_a_running_value_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "services:\n  web:\n    image: busybox\n    environment:\n      DB_PASSWORD: \"<redacted:0123456789ab>\"\n";
        let (status, body) = post_yaml(app(&dir), "/api/v1/apps/web1/plan", yaml).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("services.web.environment.DB_PASSWORD: <redacted:"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_bad_uploaded_compose_file_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("", "empty"),
            ("services: [unclosed\n", "compose.yaml"),
            (
                "services:\n  web:\n    image: busybox\n    configs: [site]\nconfigs:\n  site:\n    file: ./site.conf\n",
                "configs.site",
            ),
            (
                "services:\n  web:\n    image: busybox\n    secrets: [key]\nsecrets:\n  key:\n    environment: API_KEY\n",
                "secrets.key",
            ),
            (
                "services:\n  web:\n    image: busybox\n    env_file: /etc/shadow\n",
                "services.web.env_file",
            ),
        ];
        for (yaml, names) in cases {
            for route in ["plan", "deploy"] {
                let (status, body) =
                    post_yaml(app(&dir), &format!("/api/v1/apps/web1/{route}"), yaml).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{yaml:?}: {body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(names), "{yaml:?}: {message}");
                assert!(
                    !message.contains(".uploads"),
                    "the scratch path leaked: {message}"
                );
            }
        }
        // nothing recorded, nothing left behind
        let (status, _) = call(app(&dir), "/api/v1/apps/web1/releases", Some("secret")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let uploads = dir.path().join("apps").join(".uploads");
        let left = std::fs::read_dir(&uploads).map_or(0, Iterator::count);
        assert_eq!(left, 0, "scratch directories left in {}", uploads.display());
        // a JSON body that is no deploy request says what to send
        let req = Request::post("/api/v1/apps/web1/plan")
            .header("authorization", "Bearer secret")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = app(&dir).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
