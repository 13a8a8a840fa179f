//! Published ports: what each service asks for (its claims, carried by its containers as a
//! label), and the router that keeps capstan's proxy in step with which replicas are in
//! rotation. A replica is in rotation while it runs and is healthy (or has no healthcheck) and
//! is not being drained; the router recomputes the whole table from the engine whenever that
//! may have changed (a rollout step, a container event, a timer) and sends it to the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use capstan_compose::Project;
use capstan_compose::model::{HttpRoute, Service};
use capstan_engine::Engine;
use capstan_model::Event;
use capstan_proxy::{Backend, Certificate, Edge, Mode, ProxyClient, Route, Site, Status};
use capstan_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::target::Target;

/// The label that carries a replica's published ports.
pub const PORTS_LABEL: &str = "io.capstan.ports";

/// How often the table is recomputed without any event (and a dead proxy restarted).
const PERIOD: Duration = Duration::from_secs(15);
/// Container events are gathered this long before one recomputation.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the table is made again while a cluster's tasks are behind the proxy: a cluster
/// tells no events here, and a task it stops must leave rotation soon (one that refuses a
/// connection meanwhile is skipped for the next).
const CLUSTER_PERIOD: Duration = Duration::from_secs(1);

/// One published port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortClaim {
    /// The host address (127.0.0.1 unless the Compose file names one).
    pub ip: IpAddr,
    /// The host port; 0 for any free one.
    pub published: u16,
    /// The container port.
    pub target: u16,
    #[serde(default)]
    pub mode: Mode,
}

impl PortClaim {
    fn bind(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.published)
    }

    /// The route key: stable for as long as the service publishes this port the same way.
    fn key(&self, app: &str, service: &str) -> String {
        format!("{app}/{service}/{}/{}", self.target, self.bind())
    }
}

/// The ports a service publishes.
///
/// # Errors
/// What capstan's proxy cannot publish (UDP, port ranges, an address that is not an IP).
pub fn claims(service: &Service) -> Result<Vec<PortClaim>, PortError> {
    let mut out = Vec::new();
    for p in &service.ports {
        let at = || match &p.published {
            Some(published) => format!("port {published}:{}", p.target),
            None => format!("port {}", p.target),
        };
        // UDP is published by the engine itself (see `spec::udp_bindings`)
        if p.protocol == "udp" {
            continue;
        }
        if p.protocol != "tcp" {
            return Err(PortError::NotTcp {
                at: at(),
                protocol: p.protocol.clone(),
            });
        }
        let published = match p.published.as_deref() {
            None => 0,
            Some(s) if s.contains('-') => return Err(PortError::Range { at: at() }),
            Some(s) => s.parse::<u16>().map_err(|_| PortError::NotANumber {
                at: at(),
                value: s.to_owned(),
            })?,
        };
        let ip = match p.host_ip.as_deref() {
            None | Some("") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) => h
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| PortError::NotAnAddress {
                    at: at(),
                    value: h.to_owned(),
                })?,
        };
        let mode = match p.app_protocol.as_deref() {
            None => Mode::Auto,
            Some(p) if p.eq_ignore_ascii_case("http") => Mode::Http,
            Some(_) => Mode::Tcp,
        };
        let claim = PortClaim {
            ip,
            published,
            target: p.target,
            mode,
        };
        if !out.contains(&claim) {
            out.push(claim);
        }
    }
    Ok(out)
}

/// `app X service Y` from a route key.
fn owner(key: &str) -> String {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(app), Some(service)) => format!("app {app} service {service}"),
        _ => key.to_owned(),
    }
}

/// A port a service cannot publish through capstan's proxy; `at` names it as the Compose
/// file writes it (`port 8080:80`).
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Not TCP.
    #[error(
        "{at}: capstan's proxy forwards TCP only; {protocol} ports cannot be published yet (use `expose` and reach the service on its network)"
    )]
    NotTcp { at: String, protocol: String },
    /// A range of host ports.
    #[error("{at}: a published port range cannot go through capstan's proxy; publish one port")]
    Range { at: String },
    /// A host port that is not a number.
    #[error("{at}: {value:?} is not a port number")]
    NotANumber { at: String, value: String },
    /// A `host_ip` that is not an address.
    #[error("{at}: host_ip {value:?} is not an IP address")]
    NotAnAddress { at: String, value: String },
}

/// Why the router could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The daemon is shutting down.
    #[error("capstan is stopping")]
    Stopping,
    /// The engine did not list its containers.
    #[error("cannot list containers: {0}")]
    List(#[source] capstan_engine::Error),
    /// The engine did not show a container.
    #[error("cannot inspect {name}: {source}")]
    Inspect {
        name: String,
        #[source]
        source: capstan_engine::Error,
    },
    /// The proxy did not take the table.
    #[error(transparent)]
    Proxy(#[from] capstan_proxy::Error),
    /// The release ledger, where the ports of each release are read, cannot be read.
    #[error("cannot read the release ledger: {0}")]
    Ledger(#[source] capstan_store::Error),
    /// Another app publishes the port.
    #[error("port {bind} ({key}) is already published by {owner}; pick another host port")]
    Taken {
        bind: SocketAddr,
        key: String,
        owner: String,
    },
    /// Another app routes the host name and path.
    #[error(
        "{host}{path} is already routed to {owner}; pick another host name or path, or take it from {owner} first"
    )]
    HostTaken {
        host: String,
        path: String,
        owner: String,
    },
    /// Host names need the shared ports, and none is configured.
    #[error(
        "routes need capstan's shared HTTP and HTTPS ports, and [proxy] http and https are both off in capstan.toml"
    )]
    NoEdge,
    /// The proxy cannot listen on these ports (`route: reason` each).
    #[error(
        "{} (another program listens there; stop it or pick another host port)",
        .0.join("; ")
    )]
    Busy(Vec<String>),
}

/// What the router is asked to do.
enum Command {
    Sync(oneshot::Sender<Result<(), RouteError>>),
    Claim {
        app: String,
        routes: Vec<(String, PortClaim)>,
        sites: Vec<Site>,
        reply: oneshot::Sender<Result<(), RouteError>>,
    },
    Unclaim(String),
    /// Whether another app serves one of these host names and paths (read only).
    Taken {
        app: String,
        sites: Vec<Site>,
        reply: oneshot::Sender<Result<(), RouteError>>,
    },
    Drain {
        ids: Vec<String>,
        timeout: Duration,
        reply: oneshot::Sender<u64>,
    },
    Status(oneshot::Sender<Option<Status>>),
}

/// The shared ports and their certificates, as the daemon configures and obtains them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The HTTP port every app's host names share (`[proxy] http`).
    pub http: Option<SocketAddr>,
    /// The HTTPS port (`[proxy] https`).
    pub https: Option<SocketAddr>,
    /// The certificates there are, from files and from ACME.
    pub certificates: Vec<Certificate>,
    /// The names the files capstan.toml names cover: ACME is never asked for those.
    pub from_files: BTreeSet<String>,
}

/// Host names that want a certificate from ACME: by app and challenge (`None`: the
/// configured default), the names one certificate is to cover.
pub type WantedNames = BTreeMap<(String, Option<String>), BTreeSet<String>>;

/// A handle on the router task: cheap to clone, shared by deploys and the self-healing loop.
#[derive(Debug, Clone)]
pub struct Router {
    tx: mpsc::Sender<Command>,
}

/// What the router reads and tells besides the engine: the shared ports' configuration and
/// certificates (read), and the host names that want a certificate (told).
#[derive(Debug, Clone)]
pub struct EdgeLink {
    pub config: watch::Receiver<EdgeConfig>,
    pub wanted: watch::Sender<WantedNames>,
}

impl Router {
    /// Starts the router; it runs until `shutdown` (the proxy keeps running after that).
    pub fn spawn(
        engine: Engine,
        store: Store,
        proxy: ProxyClient,
        live: &broadcast::Sender<Event>,
        shutdown: CancellationToken,
        clusters: Vec<Arc<dyn Target>>,
        edge: EdgeLink,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let task = Task {
            engine,
            store,
            ledger: BTreeMap::new(),
            proxy,
            edge,
            claims: BTreeMap::new(),
            site_claims: BTreeMap::new(),
            draining: BTreeSet::new(),
            started: false,
            rotating: BTreeSet::new(),
            clusters,
            clustered: false,
        };
        tokio::spawn(task.run(rx, live.subscribe(), shutdown));
        Self { tx }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Recomputes the table now and sends it to the proxy.
    ///
    /// # Errors
    /// Why the table could not be computed or sent.
    pub async fn sync(&self) -> Result<(), RouteError> {
        self.ask(Command::Sync)
            .await
            .unwrap_or(Err(RouteError::Stopping))
    }

    /// Makes the proxy listen for `app`'s ports before its deploy changes anything.
    ///
    /// # Errors
    /// A port another app publishes, or one the proxy cannot listen on (in use by another
    /// program): nothing is changed then.
    pub async fn claim(
        &self,
        app: &str,
        services: &BTreeMap<String, Vec<PortClaim>>,
        hosts: &[HttpRoute],
    ) -> Result<(), RouteError> {
        let routes = services
            .iter()
            .flat_map(|(s, cs)| cs.iter().map(move |c| (c.key(app, s), c.clone())))
            .collect();
        let sites = hosts.iter().map(|r| site(app, r)).collect();
        self.ask(|reply| Command::Claim {
            app: app.to_owned(),
            routes,
            sites,
            reply,
        })
        .await
        .unwrap_or(Err(RouteError::Stopping))
    }

    /// Refuses host names and paths another app serves (or is deploying), before a deploy
    /// records anything; the deploy's claim checks again when it starts.
    ///
    /// # Errors
    /// [`RouteError::HostTaken`], or the table cannot be computed.
    pub async fn check_hosts(&self, app: &str, hosts: &[HttpRoute]) -> Result<(), RouteError> {
        if hosts.is_empty() {
            return Ok(());
        }
        let sites = hosts.iter().map(|r| site(app, r)).collect();
        self.ask(|reply| Command::Taken {
            app: app.to_owned(),
            sites,
            reply,
        })
        .await
        .unwrap_or(Err(RouteError::Stopping))
    }

    /// Ends a deploy's claim: from now on the app's containers alone say what is published.
    pub async fn unclaim(&self, app: &str) {
        let _ = self.tx.send(Command::Unclaim(app.to_owned())).await;
    }

    /// Takes containers out of rotation and waits until their open connections and requests
    /// end, up to `timeout`; returns how many were still open.
    pub async fn drain(&self, ids: Vec<String>, timeout: Duration) -> u64 {
        self.ask(|reply| Command::Drain {
            ids,
            timeout,
            reply,
        })
        .await
        .unwrap_or(0)
    }

    /// What the proxy serves, when it runs.
    pub async fn status(&self) -> Option<Status> {
        self.ask(Command::Status).await.flatten()
    }
}

struct Task {
    engine: Engine,
    /// Where the ports each release publishes are read: a container's labels say which app,
    /// service and release it belongs to, never which ports it may take.
    store: Store,
    /// Ports per service and routes of each release read from the ledger (a release never
    /// changes).
    ledger: BTreeMap<(String, i64), Released>,
    proxy: ProxyClient,
    edge: EdgeLink,
    /// Ports of deploys in progress, by app: held even while no container claims them yet.
    claims: BTreeMap<String, Vec<(String, PortClaim)>>,
    /// Host names of deploys in progress, by app (no backends).
    site_claims: BTreeMap<String, Vec<Site>>,
    /// Containers being drained: out of rotation until they are gone.
    draining: BTreeSet<String>,
    /// Whether a proxy was needed once (before that, none is started for an empty table).
    started: bool,
    /// Containers in rotation in the last table sent.
    rotating: BTreeSet<String>,
    /// Targets whose own orchestrator runs replicas that publish a port on their node (a
    /// Swarm's tasks): their apps' published ports route to those.
    clusters: Vec<Arc<dyn Target>>,
    /// Whether the last table routed to a cluster's replicas (made again every second then).
    clustered: bool,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut events: broadcast::Receiver<Event>,
        shutdown: CancellationToken,
    ) {
        // re-adopt a proxy left by an earlier daemon: give it the current table at once
        if self.proxy.status().await.is_ok() {
            self.started = true;
        }
        let mut due = Some(tokio::time::Instant::now());
        let mut edge = self.edge.config.clone();
        loop {
            let period = if self.clustered {
                CLUSTER_PERIOD
            } else {
                PERIOD
            };
            let wake = due.unwrap_or_else(|| tokio::time::Instant::now() + period);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {
                    due = None;
                    if let Err(e) = self.sync().await {
                        warn!(error = %e, "cannot update the proxy; trying again later");
                    }
                }
                command = rx.recv() => match command {
                    None => return,
                    Some(c) => self.command(c).await,
                },
                // new certificates: served (and redirected to) at once
                Ok(()) = edge.changed() => {
                    edge.borrow_and_update();
                    due.get_or_insert_with(tokio::time::Instant::now);
                }
                event = events.recv() => {
                    let relevant = match &event {
                        Ok(e) => e.kind == "container"
                            && e.attributes.contains_key("io.capstan.app")
                            && (matches!(e.action.as_str(), "start" | "die" | "destroy" | "stop" | "pause" | "unpause" | "rename")
                                || e.action.starts_with("health_status")),
                        // missed some: recompute to be safe
                        Err(_) => true,
                    };
                    if relevant && due.is_none() {
                        due = Some(tokio::time::Instant::now() + DEBOUNCE);
                    }
                }
            }
        }
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::Sync(reply) => {
                let _ = reply.send(self.sync().await);
            }
            Command::Claim {
                app,
                routes,
                sites,
                reply,
            } => {
                let result = self.claim(&app, routes, sites).await;
                let _ = reply.send(result);
            }
            Command::Taken { app, sites, reply } => {
                let result = match self.table().await {
                    Ok((_, served, _)) => self.hosts_free(&app, &sites, &served),
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Unclaim(app) => {
                let ports = self.claims.remove(&app).is_some();
                let hosts = self.site_claims.remove(&app).is_some();
                if (ports || hosts)
                    && let Err(e) = self.sync().await
                {
                    warn!(error = %e, "cannot update the proxy; trying again later");
                }
            }
            Command::Drain {
                ids,
                timeout,
                reply,
            } => {
                self.draining.extend(ids.iter().cloned());
                if !ids.iter().any(|id| self.rotating.contains(id)) {
                    // not behind the proxy (no published port, or already out): nothing to wait for
                    let _ = reply.send(0);
                    return;
                }
                if let Err(e) = self.sync().await {
                    warn!(error = %e, "cannot take replicas out of rotation");
                }
                let proxy = self.proxy.clone();
                tokio::spawn(async move {
                    let open = proxy.wait_idle(ids, timeout).await.unwrap_or(0);
                    let _ = reply.send(open);
                });
            }
            Command::Status(reply) => {
                let _ = reply.send(self.proxy.status().await.ok());
            }
        }
    }

    async fn claim(
        &mut self,
        app: &str,
        routes: Vec<(String, PortClaim)>,
        sites: Vec<Site>,
    ) -> Result<(), RouteError> {
        if routes.is_empty() && sites.is_empty() {
            self.claims.remove(app);
            self.site_claims.remove(app);
            return Ok(());
        }
        let (table, served, _) = self.table().await?;
        self.hosts_free(app, &sites, &served)?;
        if !sites.is_empty() {
            let edge = self.edge.config.borrow();
            if edge.http.is_none() && edge.https.is_none() {
                return Err(RouteError::NoEdge);
            }
        }
        for (key, claim) in &routes {
            let bind = claim.bind();
            if let Some(other) = table.iter().find(|r| {
                !r.key.starts_with(&format!("{app}/"))
                    && bind.port() != 0
                    && r.bind.port() == bind.port()
                    && (r.bind.ip() == bind.ip()
                        || r.bind.ip().is_unspecified()
                        || bind.ip().is_unspecified())
            }) {
                return Err(RouteError::Taken {
                    bind,
                    key: key.clone(),
                    owner: owner(&other.key),
                });
            }
        }
        let mut keys: Vec<String> = routes.iter().map(|(k, _)| k.clone()).collect();
        if !sites.is_empty() {
            keys.extend(["edge:http".to_owned(), "edge:https".to_owned()]);
        }
        self.claims.insert(app.to_owned(), routes);
        self.site_claims.insert(app.to_owned(), sites);
        match self.sync_reporting().await {
            Ok(errors) => {
                let mine: Vec<String> = keys
                    .iter()
                    .filter_map(|k| errors.get(k).map(|e| format!("{k}: {e}")))
                    .collect();
                if mine.is_empty() {
                    return Ok(());
                }
                self.claims.remove(app);
                self.site_claims.remove(app);
                let _ = self.sync().await;
                Err(RouteError::Busy(mine))
            }
            Err(e) => {
                self.claims.remove(app);
                self.site_claims.remove(app);
                Err(e)
            }
        }
    }

    /// Refuses `sites` of `app` that another app serves (in `served`) or is deploying.
    fn hosts_free(&self, app: &str, sites: &[Site], served: &[Site]) -> Result<(), RouteError> {
        let mine = format!("{app}/");
        for wanted in sites {
            if let Some(other) = served
                .iter()
                .chain(self.site_claims.values().flatten())
                .find(|s| {
                    !s.key.starts_with(&mine) && s.host == wanted.host && s.path == wanted.path
                })
            {
                return Err(RouteError::HostTaken {
                    host: wanted.host.clone(),
                    path: if wanted.path == "/" {
                        String::new()
                    } else {
                        wanted.path.clone()
                    },
                    owner: owner(&other.key),
                });
            }
        }
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), RouteError> {
        self.sync_reporting().await.map(drop)
    }

    async fn sync_reporting(&mut self) -> Result<BTreeMap<String, String>, RouteError> {
        let (table, mut sites, wanted) = self.table().await?;
        self.want_certificates(wanted);
        if table.is_empty() && sites.is_empty() && !self.started {
            return Ok(BTreeMap::new());
        }
        self.started = true;
        let config = self.edge.config.borrow().clone();
        // plain HTTP redirects to HTTPS where a certificate is served (and the route wants it)
        let certified: BTreeSet<&str> = config
            .certificates
            .iter()
            .flat_map(|c| c.names.iter().map(String::as_str))
            .collect();
        for s in &mut sites {
            s.redirect =
                s.redirect && config.https.is_some() && certified.contains(s.host.as_str());
        }
        // the shared ports are bound while some app has a host name
        let edge = if sites.is_empty() {
            Edge::default()
        } else {
            Edge {
                http: config.http,
                https: config.https,
                certificates: config.certificates,
            }
        };
        let (_, errors) = self.proxy.apply_all(table, sites, edge).await?;
        for (key, e) in &errors {
            warn!(route = %key, error = %e, "the proxy cannot publish this port");
        }
        Ok(errors)
    }

    /// Tells which host names want a certificate from ACME: those of the routes served with
    /// `tls: auto` that no file capstan.toml names covers.
    fn want_certificates(&self, mut wanted: WantedNames) {
        {
            let config = self.edge.config.borrow();
            for names in wanted.values_mut() {
                names.retain(|n| !config.from_files.contains(n));
            }
        }
        wanted.retain(|_, names| !names.is_empty());
        self.edge.wanted.send_if_modified(|old| {
            let changed = *old != wanted;
            *old = wanted;
            changed
        });
    }

    /// What `app`'s release `number` publishes and routes, as the ledger recorded the release
    /// (nothing for a release the ledger does not have: a container made outside capstan that
    /// wears its labels takes no port and no host name).
    async fn released(&mut self, app: &str, number: i64) -> Result<Released, RouteError> {
        let key = (app.to_owned(), number);
        if let Some(known) = self.ledger.get(&key) {
            return Ok(known.clone());
        }
        let row = self
            .store
            .release(app.to_owned(), number)
            .await
            .map_err(RouteError::Ledger)?;
        // a release not (yet) in the ledger publishes nothing, and is looked up again
        let Some(model) = row.and_then(|r| serde_json::from_str::<Project>(&r.model).ok()) else {
            return Ok(Released::default());
        };
        let released = Released {
            ports: model
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), claims(s).ok()?)))
                .collect(),
            routes: model.capstan.map(|c| c.routes).unwrap_or_default(),
        };
        self.ledger.insert(key, released.clone());
        Ok(released)
    }

    /// The ports `service` of `app`'s release `number` publishes.
    async fn released_claims(
        &mut self,
        app: &str,
        number: i64,
        service: &str,
    ) -> Result<Vec<PortClaim>, RouteError> {
        Ok(self
            .released(app, number)
            .await?
            .ports
            .remove(service)
            .unwrap_or_default())
    }

    /// The routes of apps on a cluster: the ports their newest release publishes, to each
    /// replica that runs (and is healthy, with a healthcheck) at the port its node published.
    async fn cluster_routes(
        &mut self,
        cluster: &dyn Target,
        routes: &mut BTreeMap<String, Route>,
    ) -> Result<(), RouteError> {
        let seen = match cluster.observe_all().await {
            Ok(seen) => seen,
            Err(e) => {
                warn!(error = %e, "cannot list a cluster's replicas for the proxy; trying again");
                // its routes stay served with no replica rather than vanishing
                self.clustered = true;
                return Ok(());
            }
        };
        if seen.is_empty() {
            return Ok(());
        }
        // every app's newest release in one read: this runs every second
        let newest: BTreeMap<String, i64> = self
            .store
            .apps()
            .await
            .map_err(RouteError::Ledger)?
            .into_iter()
            .map(|r| (r.app, r.number))
            .collect();
        for (app, replicas) in seen {
            let Some(&number) = newest.get(&app) else {
                continue;
            };
            for r in &replicas {
                let claims = self.released_claims(&app, number, &r.service).await?;
                let healthy =
                    r.state == "running" && r.health.as_deref().is_none_or(|h| h == "healthy");
                for claim in claims {
                    self.clustered = true;
                    let key = claim.key(&app, &r.service);
                    let route = routes.entry(key.clone()).or_insert_with(|| Route {
                        key,
                        bind: claim.bind(),
                        mode: claim.mode,
                        backends: Vec::new(),
                    });
                    if let Some(addr) = healthy
                        .then(|| published_at(&r.endpoints, claim.target))
                        .flatten()
                    {
                        route.backends.push(Backend {
                            id: r.id.clone(),
                            addr,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The table from the engine: every claimed port and host name, with the replicas in
    /// rotation.
    async fn table(&mut self) -> Result<(Vec<Route>, Vec<Site>, WantedNames), RouteError> {
        let containers = self
            .engine
            .list_containers(true)
            .await
            .map_err(RouteError::List)?;
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        let mut sites: BTreeMap<String, Site> = BTreeMap::new();
        let mut wanting = WantedNames::new();
        let mut present = BTreeSet::new();
        let mut mine: Vec<_> = containers
            .iter()
            .filter(|c| c.labels.contains_key("io.capstan.release"))
            .collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        for c in mine {
            let (Some(app), Some(service), Some(release)) = (
                c.labels.get("io.capstan.app"),
                c.labels.get("io.capstan.service"),
                c.labels
                    .get("io.capstan.release")
                    .and_then(|r| r.parse::<i64>().ok()),
            ) else {
                continue;
            };
            let released = self.released(app, release).await?;
            let claims = released.ports.get(service).cloned().unwrap_or_default();
            let hosts: Vec<&HttpRoute> = released
                .routes
                .iter()
                .filter(|r| r.service.as_deref() == Some(service.as_str()))
                .collect();
            if claims.is_empty() && hosts.is_empty() {
                continue;
            }
            let running = c.state == "running";
            if running {
                present.insert(c.id.clone());
            }
            // a replica a rollout set aside never comes back, also after a restart of capstan
            // forgot that it drained it
            let status =
                if running && !self.draining.contains(&c.id) && !super::names::is_retiring(&c.name)
                {
                    self.engine
                        .container_status(&c.id)
                        .await
                        .map_err(|source| RouteError::Inspect {
                            name: c.name.clone(),
                            source,
                        })?
                } else {
                    None
                };
            let in_rotation = status.as_ref().filter(|s| {
                s.state == "running" && s.health.as_deref().is_none_or(|h| h == "healthy")
            });
            let ip = in_rotation.and_then(|s| {
                s.addresses
                    .values()
                    .find_map(|ip| ip.parse::<IpAddr>().ok())
            });
            for claim in claims {
                let key = claim.key(app, service);
                let route = routes.entry(key.clone()).or_insert_with(|| Route {
                    key,
                    bind: claim.bind(),
                    mode: claim.mode,
                    backends: Vec::new(),
                });
                if let Some(ip) = ip {
                    route.backends.push(Backend {
                        id: c.id.clone(),
                        addr: SocketAddr::new(ip, claim.target),
                    });
                }
            }
            for r in hosts {
                if r.tls.as_deref() != Some("off") {
                    wanting
                        .entry((app.clone(), r.challenge.clone()))
                        .or_default()
                        .insert(r.host.clone());
                }
                let wanted = site(app, r);
                let entry = sites.entry(wanted.key.clone()).or_insert(wanted);
                if let (Some(ip), Some(port)) = (ip, r.port) {
                    entry.backends.push(Backend {
                        id: c.id.clone(),
                        addr: SocketAddr::new(ip, port),
                    });
                }
            }
        }
        self.clustered = false;
        for cluster in self.clusters.clone() {
            self.cluster_routes(cluster.as_ref(), &mut routes).await?;
        }
        for claimed in self.claims.values() {
            for (key, claim) in claimed {
                routes.entry(key.clone()).or_insert_with(|| Route {
                    key: key.clone(),
                    bind: claim.bind(),
                    mode: claim.mode,
                    backends: Vec::new(),
                });
            }
        }
        for claimed in self.site_claims.values() {
            for s in claimed {
                sites.entry(s.key.clone()).or_insert_with(|| s.clone());
            }
        }
        // two apps on one host name and path (an older release still running): the first
        // keeps it
        let mut hosts_taken = BTreeSet::new();
        let sites: Vec<Site> = sites
            .into_values()
            .filter(|s| {
                if hosts_taken.insert((s.host.clone(), s.path.clone())) {
                    true
                } else {
                    warn!(route = %s.key, host = %s.host, "another app already routes this host name and path; skipping");
                    false
                }
            })
            .collect();
        // a container that stopped is drained for good
        self.draining.retain(|id| present.contains(id));
        // two apps on one address (made by hand): the first keeps it
        let mut taken = BTreeSet::new();
        let routes: Vec<Route> = routes
            .into_values()
            .filter(|r| {
                if r.bind.port() == 0 || taken.insert(r.bind) {
                    true
                } else {
                    warn!(route = %r.key, addr = %r.bind, "another route already publishes this address; skipping");
                    false
                }
            })
            .collect();
        debug!(?routes, ?sites, "proxy table");
        self.rotating = routes
            .iter()
            .flat_map(|r| r.backends.iter())
            .chain(sites.iter().flat_map(|s| s.backends.iter()))
            .map(|b| b.id.clone())
            .collect();
        Ok((routes, sites, wanting))
    }
}

/// What a release publishes and routes.
#[derive(Debug, Clone, Default)]
struct Released {
    ports: BTreeMap<String, Vec<PortClaim>>,
    routes: Vec<HttpRoute>,
}

/// The proxy's site for one of `app`'s routes (no backends yet); `redirect` as the route
/// asks, before the router knows whether a certificate is served.
fn site(app: &str, r: &HttpRoute) -> Site {
    let service = r.service.as_deref().unwrap_or_default();
    Site {
        key: format!(
            "{app}/{service}/{}/{}{}",
            r.port.unwrap_or(80),
            r.host,
            r.path
        ),
        host: r.host.clone(),
        path: r.path.clone(),
        strip_prefix: r.strip_prefix,
        redirect: r.tls.as_deref() != Some("off") && r.redirect.unwrap_or(true),
        backends: Vec::new(),
    }
}

/// Where a replica publishes container port `target` over TCP, from its endpoints
/// (`10.0.0.12:30001->80/tcp`).
fn published_at(endpoints: &[String], target: u16) -> Option<SocketAddr> {
    endpoints.iter().find_map(|e| {
        let (addr, inside) = e.split_once("->")?;
        (inside == format!("{target}/tcp")).then(|| addr.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_replicas_endpoint_is_found_by_its_container_port() {
        let endpoints = [
            "10.0.0.12:30001->80/tcp".to_owned(),
            "10.0.0.12:30002->53/udp".to_owned(),
        ];
        assert_eq!(
            published_at(&endpoints, 80),
            Some("10.0.0.12:30001".parse().unwrap())
        );
        assert_eq!(published_at(&endpoints, 53), None);
        assert_eq!(published_at(&endpoints, 81), None);
    }

    fn service(yaml: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            format!("services:\n  web:\n    image: x\n{yaml}"),
        )
        .unwrap();
        let loaded = capstan_compose::load(&capstan_compose::Options {
            project_name: Some("app".into()),
            working_dir: dir.path().to_owned(),
            text: None,
            ..Default::default()
        })
        .unwrap();
        loaded.project.services["web"].clone()
    }

    #[test]
    fn published_ports_become_claims() {
        let s = service(
            "    ports:\n      - \"8080:80\"\n      - \"0.0.0.0:8443:443\"\n      - \"9000\"\n      - {target: 81, published: \"8081\", app_protocol: http}\n      - {target: 25, published: \"2525\", app_protocol: smtp}\n",
        );
        let c = claims(&s).unwrap();
        assert_eq!(c[0].bind(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!((c[0].target, c[0].mode), (80, Mode::Auto));
        assert_eq!(c[1].bind(), "0.0.0.0:8443".parse().unwrap());
        assert_eq!((c[2].published, c[2].target), (0, 9000));
        assert_eq!(c[3].mode, Mode::Http);
        assert_eq!(c[4].mode, Mode::Tcp);
        assert_eq!(c[0].key("app", "web"), "app/web/80/127.0.0.1:8080");
    }

    #[test]
    fn what_the_proxy_cannot_publish_is_refused_with_the_port() {
        // UDP is the engine's to publish, not the proxy's
        assert_eq!(
            claims(&service("    ports: [\"5353:53/udp\"]\n")).unwrap(),
            []
        );
        let range = claims(&service("    ports: [\"8080-8082:80\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(range.contains("range"), "{range}");
        assert_eq!(owner("shop/web/80/127.0.0.1:80"), "app shop service web");
    }
}
