//! What the daemon and the proxy say to each other: one JSON document per line over the
//! proxy's unix socket (`<data>/proxy.sock`, mode 0600), one answer per request.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How a published port's connections are forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// HTTP/1 when the client's first bytes are an HTTP request line, raw TCP otherwise
    /// (and for protocols where the server speaks first).
    #[default]
    Auto,
    /// Request by request: a keep-alive client is spread over the replicas, and a replica
    /// drains between two requests, never in the middle of one.
    Http,
    /// Connection by connection.
    Tcp,
}

/// One published port and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Stable identity (`app/service/target/host_ip:published`): a route keeps its listening
    /// socket across updates while its key and address stay.
    pub key: String,
    /// Where to listen; port 0 takes any free port, kept for the route's life.
    pub bind: SocketAddr,
    #[serde(default)]
    pub mode: Mode,
    /// The replicas in rotation, in a stable order.
    pub backends: Vec<Backend>,
}

/// One replica in rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The container id: a replica keeps its counters while its address stays.
    pub id: String,
    pub addr: SocketAddr,
}

/// A request to the proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Replace the whole table. A route whose new address cannot be bound is left out and its
    /// reason answered in `errors`; the others are served.
    Apply { routes: Vec<Route> },
    /// Wait until none of these backends has an open connection or request in flight, up to
    /// `timeout_ms`; answers how many are still open.
    WaitIdle { ids: Vec<String>, timeout_ms: u64 },
    /// Routes, backends and counters.
    Status,
    /// Stop listening, let open connections finish (up to 30 s) and exit.
    Stop,
}

/// The proxy's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `Apply`: the routes left out, by key, with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    /// `WaitIdle`: connections and requests still open when it returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<u64>,
}

/// What the proxy is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    /// RFC 3339.
    pub started: String,
    pub routes: Vec<RouteStatus>,
}

/// One route as the proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteStatus {
    pub key: String,
    /// The address it listens on (the actual port when `bind` asked for any).
    #[schema(value_type = String)]
    pub local: SocketAddr,
    pub mode: Mode,
    /// Connections accepted since the route was bound.
    pub connections: u64,
    /// Connections open now.
    #[serde(default)]
    pub open: u64,
    /// Connections closed at once since the route was bound, a cap being reached (in all, or
    /// from their client's address).
    #[serde(default)]
    pub refused: u64,
    pub backends: Vec<BackendStatus>,
}

/// One replica's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendStatus {
    pub id: String,
    #[schema(value_type = String)]
    pub addr: SocketAddr,
    /// Connections (TCP) and requests (HTTP) open right now.
    pub active: u64,
    /// Connections and requests forwarded so far.
    pub served: u64,
    /// Failed attempts to reach it.
    pub failures: u64,
}
