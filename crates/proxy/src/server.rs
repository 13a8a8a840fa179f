//! `capstan proxy`: binds the published ports, forwards them, and takes its table from the
//! daemon over `<data>/proxy.sock`. It outlives the daemon, so restarting or upgrading the
//! daemon drops no connection; the next daemon re-adopts it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::Error;
use crate::edge::SiteEntry;
use crate::protocol::{Edge, Mode, Request, Response, Route, Site, Status};
use crate::table::{Listening, RouteState, SharedPort, Table};

/// How long open connections may take to finish when the proxy stops.
const STOP_DRAIN: Duration = Duration::from_secs(30);

/// The files of a proxy in a data dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub socket: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn in_dir(data: &Path) -> Self {
        Self {
            socket: data.join("proxy.sock"),
            pid: data.join("proxy.pid"),
            log: data.join("proxy.log"),
        }
    }
}

struct Proxy {
    table: Mutex<Table>,
    /// What the shared ports serve.
    edge: Arc<crate::edge::Shared>,
    /// The connections the shared ports hold, in all and by client address.
    edge_limits: Arc<capstan_process::limits::ConnLimiter>,
    /// Cancelled when the proxy stops: HTTP connections finish their request and close.
    stopping: CancellationToken,
    connections: TaskTracker,
    started: String,
}

/// Runs the proxy for `data` until SIGTERM, SIGINT or a `stop` request.
///
/// # Errors
/// Another proxy serves this data dir, or the socket cannot be made.
pub async fn run(data: &Path) -> Result<(), Error> {
    let paths = Paths::in_dir(data);
    let _lock = capstan_process::lock_pid_file(&paths.pid).map_err(|e| match e {
        capstan_process::LockError::Held { pid } => Error::Running {
            pid: pid.unwrap_or_default(),
        },
        capstan_process::LockError::Io { path, source } => Error::Io {
            what: format!("cannot lock {path}"),
            source,
        },
    })?;
    // the lock is ours, so a socket file left here is stale
    let _ = std::fs::remove_file(&paths.socket);
    let control = UnixListener::bind(&paths.socket).map_err(|e| Error::Io {
        what: format!("cannot listen on {}", paths.socket.display()),
        source: e,
    })?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600)).map_err(
        |e| Error::Io {
            what: format!("cannot make {} private", paths.socket.display()),
            source: e,
        },
    )?;
    let fds = capstan_process::limits::raise_fd_limit();
    let proxy = Arc::new(Proxy {
        table: Mutex::new(Table::default()),
        edge: Arc::default(),
        edge_limits: Arc::new(capstan_process::limits::ConnLimiter::new(
            capstan_process::limits::ConnCaps::from_fd_limit(),
        )),
        stopping: CancellationToken::new(),
        connections: TaskTracker::new(),
        started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    info!(socket = %paths.socket.display(), pid = std::process::id(), open_files = fds, "capstan proxy ready");
    tokio::spawn(capstan_process::stop_on_signals(
        proxy.stopping.clone(),
        "draining and stopping",
    ));
    loop {
        tokio::select! {
            () = proxy.stopping.cancelled() => break,
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_control(Arc::clone(&proxy), stream));
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // stop listening, then let open connections finish
    {
        let mut table = proxy.table.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, l) in table.listening.drain() {
            l.accept.abort();
        }
        for port in [table.http.take(), table.https.take()]
            .into_iter()
            .flatten()
        {
            port.accept.abort();
        }
    }
    let _ = std::fs::remove_file(&paths.socket);
    proxy.connections.close();
    let open = proxy.connections.len();
    if open > 0 {
        info!(open, "waiting for open connections to finish");
    }
    if tokio::time::timeout(STOP_DRAIN, proxy.connections.wait())
        .await
        .is_err()
    {
        warn!(
            open = proxy.connections.len(),
            "connections still open after {STOP_DRAIN:?}; closing them"
        );
    }
    info!("capstan proxy stopped");
    Ok(())
}

async fn serve_control(proxy: Arc<Proxy>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(&proxy, req).await,
            Err(e) => Response {
                error: Some(format!("not a proxy request: {e}")),
                ..Response::default()
            },
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn handle(proxy: &Arc<Proxy>, req: Request) -> Response {
    match req {
        Request::Apply {
            routes,
            sites,
            edge,
        } => match apply(proxy, &routes, &sites, &edge) {
            Ok(errors) => Response {
                ok: true,
                status: Some(status(proxy)),
                errors,
                ..Response::default()
            },
            Err(e) => Response {
                error: Some(e),
                ..Response::default()
            },
        },
        Request::WaitIdle { ids, timeout_ms } => {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            let open = loop {
                let open = proxy
                    .table
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open(&ids);
                if open == 0 || tokio::time::Instant::now() >= deadline {
                    break open;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            proxy
                .table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .prune();
            Response {
                ok: true,
                open: Some(open),
                ..Response::default()
            }
        }
        Request::Challenges(open) => match proxy.edge.set_challenges(&open) {
            Ok(()) => Response {
                ok: true,
                ..Response::default()
            },
            Err(e) => Response {
                error: Some(format!("a TLS-ALPN-01 challenge certificate: {e}")),
                ..Response::default()
            },
        },
        Request::Status => Response {
            ok: true,
            status: Some(status(proxy)),
            ..Response::default()
        },
        Request::Stop => {
            proxy.stopping.cancel();
            Response {
                ok: true,
                ..Response::default()
            }
        }
    }
}

fn status(proxy: &Proxy) -> Status {
    let table = proxy.table.lock().unwrap_or_else(PoisonError::into_inner);
    Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: proxy.started.clone(),
        routes: table.status(),
        sites: table.site_status(),
        http: table.http.as_ref().map(|p| p.local),
        https: table.https.as_ref().map(|p| p.local),
        certified: proxy.edge.certified(),
    }
}

/// Which socket a route uses: its address, or its key when it asked for any free port (so the
/// port it got stays with it). A route renamed on the same address keeps the socket.
fn identity(r: &Route) -> String {
    if r.bind.port() == 0 {
        format!("{}@{}", r.key, r.bind)
    } else {
        r.bind.to_string()
    }
}

/// Replaces the table. A route whose new address cannot be bound is left out and reported
/// (by key), as is a shared port that cannot be bound (`edge:http`, `edge:https`) and a
/// certificate that cannot be read (`certificate:<name>`); everything else is served, so one
/// bad port never stalls the rest.
fn apply(
    proxy: &Arc<Proxy>,
    routes: &[Route],
    sites: &[Site],
    edge: &Edge,
) -> Result<BTreeMap<String, String>, String> {
    let mut wanted = std::collections::HashMap::new();
    for r in routes {
        if let Some(other) = wanted.insert(identity(r), &r.key) {
            return Err(format!(
                "routes {other} and {} both ask for {}",
                r.key, r.bind
            ));
        }
    }
    let mut table = proxy.table.lock().unwrap_or_else(PoisonError::into_inner);
    let mut bound = Vec::new();
    let mut errors = BTreeMap::new();
    for r in routes {
        let id = identity(r);
        if table.listening.contains_key(&id) {
            continue;
        }
        match std::net::TcpListener::bind(r.bind).and_then(|l| l.set_nonblocking(true).map(|()| l))
        {
            Ok(l) => bound.push((id, r, l)),
            Err(e) => {
                warn!(route = %r.key, addr = %r.bind, error = %e, "cannot listen");
                errors.insert(r.key.clone(), format!("cannot listen on {}: {e}", r.bind));
            }
        }
    }
    // commit
    let leaving: Vec<String> = table
        .listening
        .keys()
        .filter(|id| !wanted.contains_key(id.as_str()))
        .cloned()
        .collect();
    for id in leaving {
        if let Some(l) = table.listening.remove(&id) {
            l.accept.abort();
            info!(route = %l.route.key(), addr = %l.local, "stopped listening");
        }
    }
    for r in routes {
        let config = table.config_of(r);
        if let Some(l) = table.listening.get(&identity(r)) {
            l.route.config.send_replace(config);
        }
    }
    for (id, r, listener) in bound {
        let config = table.config_of(r);
        let route = Arc::new(RouteState::new(config));
        let local = listener.local_addr().unwrap_or(r.bind);
        let accept = spawn_accept(proxy, listener, Arc::clone(&route));
        info!(route = %r.key, addr = %local, "listening");
        table.listening.insert(
            id,
            Listening {
                local,
                route,
                accept,
            },
        );
    }
    apply_edge(proxy, &mut table, sites, edge, &mut errors);
    table.prune();
    Ok(errors)
}

/// The shared ports, their host names and certificates.
fn apply_edge(
    proxy: &Arc<Proxy>,
    table: &mut Table,
    sites: &[Site],
    edge: &Edge,
    errors: &mut BTreeMap<String, String>,
) {
    for (name, asked, tls) in [("http", edge.http, false), ("https", edge.https, true)] {
        let slot = if tls {
            &mut table.https
        } else {
            &mut table.http
        };
        if slot.as_ref().map(|p| p.asked) == asked {
            continue;
        }
        if let Some(old) = slot.take() {
            old.accept.abort();
            info!(port = name, addr = %old.local, "stopped listening");
        }
        let Some(asked) = asked else { continue };
        let acceptor = match tls
            .then(|| crate::edge::tls_config(&proxy.edge))
            .transpose()
        {
            Ok(config) => config.map(tokio_rustls::TlsAcceptor::from),
            Err(e) => {
                errors.insert(format!("edge:{name}"), format!("TLS: {e}"));
                continue;
            }
        };
        match std::net::TcpListener::bind(asked).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(asked);
                let accept = crate::edge::spawn_accept(
                    listener,
                    acceptor,
                    Arc::clone(&proxy.edge),
                    Arc::clone(&proxy.edge_limits),
                    proxy.stopping.clone(),
                    proxy.connections.clone(),
                );
                info!(port = name, addr = %local, "listening");
                *slot = Some(SharedPort {
                    asked,
                    local,
                    accept,
                });
            }
            Err(e) => {
                warn!(port = name, addr = %asked, error = %e, "cannot listen");
                errors.insert(
                    format!("edge:{name}"),
                    format!("cannot listen on {asked}: {e}"),
                );
            }
        }
    }
    let mut entries = Vec::new();
    let mut kept = std::collections::HashMap::new();
    for site in sites {
        let config = table.config_with(&site.key, Mode::Http, &site.backends);
        let route = match table.sites.get(&site.key) {
            Some(route) => {
                route.config.send_replace(config);
                Arc::clone(route)
            }
            None => Arc::new(RouteState::new(config)),
        };
        kept.insert(site.key.clone(), Arc::clone(&route));
        entries.push(Arc::new(SiteEntry {
            host: site.host.to_ascii_lowercase(),
            path: site.path.clone(),
            strip_prefix: site.strip_prefix,
            redirect: site.redirect,
            route,
        }));
    }
    table.sites = kept;
    let https_port = table.https.as_ref().map(|p| p.local.port());
    for (name, e) in proxy.edge.set(entries, &edge.certificates, https_port) {
        warn!(name = %name, error = %e, "cannot serve a certificate");
        errors.insert(format!("certificate:{name}"), e);
    }
}

fn spawn_accept(
    proxy: &Arc<Proxy>,
    listener: std::net::TcpListener,
    route: Arc<RouteState>,
) -> tokio::task::AbortHandle {
    let proxy = Arc::clone(proxy);
    tokio::spawn(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(route = %route.key(), error = %e, "cannot accept on the route's socket");
                return;
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    route
                        .connections
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // one client, or a flood of them, holds only so many: beyond, a new
                    // connection is closed at once and the others keep being served
                    let caps = capstan_process::limits::ConnCaps::from_fd_limit();
                    let admitted = match route.open.admit_under(peer.ip(), caps) {
                        Ok(admitted) => admitted,
                        Err(why) => {
                            let n = route
                                .refused
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if n.is_power_of_two() {
                                warn!(route = %route.key(), peer = %peer.ip(), ?why, ?caps, refused = n + 1, "connection cap reached; closing new connections");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    let route = Arc::clone(&route);
                    let stopping = proxy.stopping.clone();
                    proxy.connections.spawn(async move {
                        let _admitted = admitted;
                        crate::forward::connection(route, stream, peer, stopping).await;
                    });
                }
                Err(e) => {
                    // out of file descriptors and the like: back off, keep the socket
                    warn!(route = %route.key(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .abort_handle()
}
