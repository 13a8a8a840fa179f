//! The proxy's live table: routes with their listening sockets, and backends with counters that
//! outlive their route (so a drained replica can be waited on until its last request ends).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::protocol::{Backend, BackendStatus, Mode, Route, RouteStatus};

/// The body type forwarded to replicas.
pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a connection or request waits for a replica when none is in rotation (a stop-first
/// rollout, a replica restarting) before it is refused.
pub(crate) const NO_BACKEND_WAIT: Duration = Duration::from_secs(10);

/// A replica that just refused a connection is tried last for this long.
const FAILURE_COOLDOWN: Duration = Duration::from_secs(2);

/// One replica.
pub(crate) struct BackendState {
    pub id: String,
    pub addr: SocketAddr,
    active: AtomicU64,
    served: AtomicU64,
    failures: AtomicU64,
    last_failure: Mutex<Option<Instant>>,
    /// Its own connection pool: a replica's kept-alive connections go when it goes, and never
    /// serve a new container that got the same address.
    client: OnceLock<Client<HttpConnector, ProxyBody>>,
}

/// Counts one open connection or request for as long as it lives.
pub(crate) struct Active(Arc<BackendState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BackendState {
    fn new(b: &Backend) -> Self {
        Self {
            id: b.id.clone(),
            addr: b.addr,
            active: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            client: OnceLock::new(),
        }
    }

    pub fn enter(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        Active(Arc::clone(self))
    }

    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn cooling(&self) -> bool {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < FAILURE_COOLDOWN)
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    pub fn client(&self) -> &Client<HttpConnector, ProxyBody> {
        self.client.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_secs(3)));
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector)
        })
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            id: self.id.clone(),
            addr: self.addr,
            active: self.active(),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// What a route forwards to right now.
#[derive(Clone)]
pub(crate) struct RouteConfig {
    pub key: Arc<str>,
    pub mode: Mode,
    pub backends: Arc<[Arc<BackendState>]>,
}

/// One listening route.
pub(crate) struct RouteState {
    pub config: watch::Sender<RouteConfig>,
    next: AtomicUsize,
    pub connections: AtomicU64,
    /// The connections it holds open, in all and by client address.
    pub open: capstan_process::limits::ConnLimiter,
    /// Connections closed at once because a cap was reached.
    pub refused: AtomicU64,
}

impl RouteState {
    pub fn new(config: RouteConfig) -> Self {
        Self {
            config: watch::Sender::new(config),
            next: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            open: capstan_process::limits::ConnLimiter::new(
                capstan_process::limits::ConnCaps::from_fd_limit(),
            ),
            refused: AtomicU64::new(0),
        }
    }

    /// The route's key (for messages).
    pub fn key(&self) -> Arc<str> {
        Arc::clone(&self.config.borrow().key)
    }

    pub fn mode(&self) -> Mode {
        self.config.borrow().mode
    }

    /// The next replica round-robin, skipping the ones in `tried` and preferring those that did
    /// not fail just now; waits up to [`NO_BACKEND_WAIT`] for one to join when none is left.
    pub async fn pick(&self, tried: &[String]) -> Option<Arc<BackendState>> {
        let mut rx = self.config.subscribe();
        let deadline = tokio::time::Instant::now() + NO_BACKEND_WAIT;
        loop {
            {
                let config = rx.borrow_and_update();
                let candidates: Vec<&Arc<BackendState>> = config
                    .backends
                    .iter()
                    .filter(|b| !tried.contains(&b.id))
                    .collect();
                if !candidates.is_empty() {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    let n = candidates.len();
                    let order = (0..n).map(|i| candidates[(start + i) % n]);
                    let mut fallback = None;
                    for b in order {
                        if !b.cooling() {
                            return Some(Arc::clone(b));
                        }
                        fallback.get_or_insert(b);
                    }
                    return fallback.map(Arc::clone);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}

/// A route with its socket.
pub(crate) struct Listening {
    pub local: SocketAddr,
    pub route: Arc<RouteState>,
    pub accept: tokio::task::AbortHandle,
}

/// One of the shared ports, bound.
pub(crate) struct SharedPort {
    /// The address asked for.
    pub asked: SocketAddr,
    pub local: SocketAddr,
    pub accept: tokio::task::AbortHandle,
}

/// The whole table: listening sockets by identity (see `server::identity`), host names by key,
/// backends by id.
#[derive(Default)]
pub(crate) struct Table {
    pub listening: HashMap<String, Listening>,
    /// Host names' routes by key (their counters live as long as the key).
    pub sites: HashMap<String, Arc<RouteState>>,
    pub http: Option<SharedPort>,
    pub https: Option<SharedPort>,
    pub backends: HashMap<String, Arc<BackendState>>,
}

impl Table {
    /// The state for `b`: the same one while its id and address stay.
    pub fn backend(&mut self, b: &Backend) -> Arc<BackendState> {
        match self.backends.get(&b.id) {
            Some(existing) if existing.addr == b.addr => Arc::clone(existing),
            _ => {
                let state = Arc::new(BackendState::new(b));
                self.backends.insert(b.id.clone(), Arc::clone(&state));
                state
            }
        }
    }

    /// Forgets backends that are in no route and have nothing open.
    pub fn prune(&mut self) {
        let used: std::collections::HashSet<String> = self
            .listening
            .values()
            .map(|l| &l.route)
            .chain(self.sites.values())
            .flat_map(|route| {
                route
                    .config
                    .borrow()
                    .backends
                    .iter()
                    .map(|b| b.id.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        self.backends
            .retain(|id, b| used.contains(id) || b.active() > 0);
    }

    /// Open connections and requests of these backends.
    pub fn open(&self, ids: &[String]) -> u64 {
        ids.iter()
            .filter_map(|id| self.backends.get(id))
            .map(|b| b.active())
            .sum()
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        let mut routes: Vec<RouteStatus> = self
            .listening
            .values()
            .map(|l| {
                let config = l.route.config.borrow();
                RouteStatus {
                    key: config.key.to_string(),
                    local: l.local,
                    mode: config.mode,
                    connections: l.route.connections.load(Ordering::Relaxed),
                    open: l.route.open.open() as u64,
                    refused: l.route.refused.load(Ordering::Relaxed),
                    backends: config.backends.iter().map(|b| b.status()).collect(),
                }
            })
            .collect();
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        routes
    }

    /// The host names' routes, each at the shared port it is reached on (HTTPS when bound).
    pub fn site_status(&self) -> Vec<RouteStatus> {
        let Some(local) = self.https.as_ref().or(self.http.as_ref()).map(|p| p.local) else {
            return Vec::new();
        };
        let mut sites: Vec<RouteStatus> = self
            .sites
            .values()
            .map(|route| {
                let config = route.config.borrow();
                RouteStatus {
                    key: config.key.to_string(),
                    local,
                    mode: Mode::Http,
                    connections: route.connections.load(Ordering::Relaxed),
                    open: 0,
                    refused: 0,
                    backends: config.backends.iter().map(|b| b.status()).collect(),
                }
            })
            .collect();
        sites.sort_by(|a, b| a.key.cmp(&b.key));
        sites
    }

    /// The config a route should have now.
    pub fn config_of(&mut self, route: &Route) -> RouteConfig {
        self.config_with(&route.key, route.mode, &route.backends)
    }

    /// The config of `key` forwarding in `mode` to `backends`.
    pub fn config_with(&mut self, key: &str, mode: Mode, backends: &[Backend]) -> RouteConfig {
        RouteConfig {
            key: Arc::from(key),
            mode,
            backends: backends.iter().map(|b| self.backend(b)).collect(),
        }
    }
}
