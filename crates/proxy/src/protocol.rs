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

/// A host name and path prefix served on the shared HTTP and HTTPS ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Stable identity (`app/service/port/host/path`).
    pub key: String,
    /// Lowercase, without a port.
    pub host: String,
    /// The prefix (`/` for all); the longest that matches a request wins.
    pub path: String,
    /// The prefix is cut off before the request goes on.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Plain HTTP answers with a redirect to HTTPS (a certificate is served for the host).
    #[serde(default)]
    pub redirect: bool,
    /// The replicas in rotation, in a stable order.
    pub backends: Vec<Backend>,
}

/// The ports every app's host names share, and the certificates served on them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Plain HTTP (and ACME's HTTP-01 challenges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// TLS, HTTP/2 and HTTP/1.1 (and ACME's TLS-ALPN-01 challenges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<SocketAddr>,
    /// Served by name (SNI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
}

/// A certificate chain and its key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The names it is served for.
    pub names: Vec<String>,
    /// The leaf first, then the intermediates.
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The answers to ACME's challenges that are open now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenges {
    /// HTTP-01: token → key authorization, answered at
    /// `/.well-known/acme-challenge/<token>` on the HTTP port.
    #[serde(default)]
    pub http01: BTreeMap<String, String>,
    /// TLS-ALPN-01: host → the challenge certificate (RFC 8737), served to a client that
    /// asks for `acme-tls/1`.
    #[serde(default)]
    pub tls_alpn01: BTreeMap<String, Certificate>,
}

/// A request to the proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Replace the whole table. A route whose new address cannot be bound is left out and its
    /// reason answered in `errors`; the others are served.
    Apply {
        routes: Vec<Route>,
        #[serde(default)]
        sites: Vec<Site>,
        /// Where the shared ports listen (none: not at all).
        #[serde(default)]
        edge: Edge,
    },
    /// Replace the open ACME challenges.
    Challenges(Challenges),
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
    /// Host names on the shared ports (their `local` is the HTTP port's, or the HTTPS one's).
    #[serde(default)]
    pub sites: Vec<RouteStatus>,
    /// The shared ports as bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub http: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub https: Option<SocketAddr>,
    /// The names a certificate is served for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certified: Vec<String>,
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
