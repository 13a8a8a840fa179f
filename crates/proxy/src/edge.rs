//! The shared ports: every app's host names (and path prefixes) on one HTTP and one HTTPS port.
//! TLS is served by name (SNI) with HTTP/2 and HTTP/1.1 offered (ALPN); plain HTTP answers
//! ACME's HTTP-01 challenges and redirects to HTTPS where a certificate is served; a client
//! that asks for `acme-tls/1` gets the TLS-ALPN-01 challenge certificate of its name (RFC 8737).
//! A request for a name or path nothing serves is answered 404 without naming anything served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::forward::{Via, answer, forward};
use crate::protocol::{Certificate, Challenges};
use crate::table::{ProxyBody, RouteState};

/// The ALPN name of a TLS-ALPN-01 validation (RFC 8737).
const ACME_TLS: &[u8] = b"acme-tls/1";
/// Where HTTP-01 challenges are asked (RFC 8555 8.3).
const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head, and stay idle between requests.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One host name and path prefix, and where its requests go.
pub(crate) struct SiteEntry {
    pub host: String,
    pub path: String,
    pub strip_prefix: bool,
    pub redirect: bool,
    pub route: Arc<RouteState>,
}

/// What the shared ports serve now, swapped whole by the daemon's requests.
#[derive(Default)]
struct State {
    /// Longest path first, so the first match is the most specific.
    sites: Vec<Arc<SiteEntry>>,
    certificates: HashMap<String, Arc<CertifiedKey>>,
    http01: HashMap<String, String>,
    tls_alpn01: HashMap<String, Arc<CertifiedKey>>,
    /// The HTTPS port, for redirects (omitted from them when 443).
    https_port: Option<u16>,
}

/// The shared ports' state, read by every request and handshake.
#[derive(Default)]
pub(crate) struct Shared {
    state: RwLock<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A PEM certificate chain and key as rustls serves them.
///
/// # Errors
/// What is wrong with the PEM, in words.
pub(crate) fn certified(c: &Certificate) -> Result<Arc<CertifiedKey>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the PEM".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
        .map_err(|e| format!("the key is not PEM: {e}"))?;
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("the key cannot sign: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the sites and certificates; answers the certificates that could not be read,
    /// by their first name.
    pub fn set(
        &self,
        mut sites: Vec<Arc<SiteEntry>>,
        certificates: &[Certificate],
        https_port: Option<u16>,
    ) -> Vec<(String, String)> {
        sites.sort_by_key(|s| std::cmp::Reverse(s.path.len()));
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for c in certificates {
            match certified(c) {
                Ok(key) => {
                    for name in &c.names {
                        by_name.insert(name.to_ascii_lowercase(), Arc::clone(&key));
                    }
                }
                Err(e) => errors.push((c.names.first().cloned().unwrap_or_default(), e)),
            }
        }
        let mut state = self.write();
        state.sites = sites;
        state.certificates = by_name;
        state.https_port = https_port;
        errors
    }

    /// Replaces the open challenges.
    ///
    /// # Errors
    /// A TLS-ALPN-01 certificate that cannot be read: nothing is replaced then.
    pub fn set_challenges(&self, open: &Challenges) -> Result<(), String> {
        let mut alpn = HashMap::new();
        for (host, c) in &open.tls_alpn01 {
            alpn.insert(host.to_ascii_lowercase(), certified(c)?);
        }
        let mut state = self.write();
        state.http01 = open
            .http01
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        state.tls_alpn01 = alpn;
        Ok(())
    }

    /// The names a certificate is served for, sorted.
    pub fn certified(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().certificates.keys().cloned().collect();
        names.sort();
        names
    }

    /// The site for `host` and `path`: the longest prefix that matches on a path boundary.
    fn site(&self, host: &str, path: &str) -> Option<Arc<SiteEntry>> {
        self.read()
            .sites
            .iter()
            .find(|s| s.host == host && under(path, &s.path))
            .cloned()
    }
}

/// Whether `path` is `prefix` or below it (`/api` covers `/api` and `/api/x`, not `/apix`).
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The host a request names (HTTP/2's authority or the `Host` header), lowercase, without
/// its port or a trailing dot.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.host().to_owned(),
        None => {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            match h.rsplit_once(':') {
                Some((name, port)) if !name.ends_with(']') || h.starts_with('[') => {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        name.to_owned()
                    } else {
                        h.to_owned()
                    }
                }
                _ => h.to_owned(),
            }
        }
    };
    Some(raw.trim_end_matches('.').to_ascii_lowercase())
}

/// Certificates by the name a client asks for.
#[derive(Debug)]
pub(crate) struct Resolver(pub Arc<Shared>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS));
        let state = self.0.read();
        if challenge {
            return state.tls_alpn01.get(&name).cloned();
        }
        state.certificates.get(&name).cloned()
    }
}

/// The TLS configuration of the HTTPS port: certificates from `shared`, HTTP/2 preferred.
pub(crate) fn tls_config(shared: &Arc<Shared>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Resolver(Arc::clone(shared))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS.to_vec()];
    Ok(Arc::new(config))
}

/// Serves one connection on the HTTP port.
pub(crate) async fn http(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    serve(shared, TokioIo::new(stream), peer, false, shutdown).await;
}

/// Serves one connection on the HTTPS port: the handshake, then HTTP/2 or HTTP/1.1.
pub(crate) async fn https(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    // a TLS-ALPN-01 validation ends with the handshake
    if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS) {
        return;
    }
    serve(shared, TokioIo::new(tls), peer, true, shutdown).await;
}

async fn serve<I>(
    shared: Arc<Shared>,
    io: I,
    peer: SocketAddr,
    secure: bool,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(request(&shared, req, peer, secure).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    if !secure {
        // plain HTTP is HTTP/1 (HTTP/2 is offered over TLS)
        builder = builder.http1_only();
    }
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn request(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> Response<ProxyBody> {
    let Some(host) = host_of(&req) else {
        return answer(StatusCode::BAD_REQUEST, "the request names no host");
    };
    let path = req.uri().path().to_owned();
    if !secure && let Some(token) = path.strip_prefix(CHALLENGE_PATH) {
        let key_authorization = shared.read().http01.get(token).cloned();
        return match key_authorization {
            Some(k) => {
                let mut resp = answer(StatusCode::OK, "");
                *resp.body_mut() = crate::forward::full(k);
                resp
            }
            None => answer(StatusCode::NOT_FOUND, "no such challenge"),
        };
    }
    let Some(site) = shared.site(&host, &path) else {
        return answer(StatusCode::NOT_FOUND, "nothing is served at this address");
    };
    if !secure && site.redirect {
        let port = shared.read().https_port;
        let target = format!(
            "https://{host}{}{}",
            port.filter(|p| *p != 443)
                .map(|p| format!(":{p}"))
                .unwrap_or_default(),
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let mut resp = answer(StatusCode::PERMANENT_REDIRECT, "served over HTTPS");
        match HeaderValue::from_str(&target) {
            Ok(v) => {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Err(_) => return answer(StatusCode::BAD_REQUEST, "the request target is not valid"),
        }
        return resp;
    }
    site.route
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let via = Via {
        proto: if secure { "https" } else { "http" },
        strip: site.strip_prefix.then_some(site.path.as_str()),
    };
    forward(&site.route, req, peer, &via).await
}

/// Accepts on a shared port until aborted.
pub(crate) fn spawn_accept(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    limits: Arc<capstan_process::limits::ConnLimiter>,
    shutdown: CancellationToken,
    connections: tokio_util::task::TaskTracker,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot accept on a shared port");
                return;
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let caps = capstan_process::limits::ConnCaps::from_fd_limit();
                    let Ok(admitted) = limits.admit_under(peer.ip(), caps) else {
                        drop(stream);
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    let shutdown = shutdown.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let _admitted = admitted;
                        match tls {
                            Some(acceptor) => https(shared, acceptor, stream, peer, shutdown).await,
                            None => http(shared, stream, peer, shutdown).await,
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed on a shared port");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_matches_on_path_boundaries() {
        assert!(under("/anything", "/"));
        assert!(under("/api", "/api"));
        assert!(under("/api/items", "/api"));
        assert!(!under("/apix", "/api"));
        assert!(!under("/", "/api"));
    }

    #[test]
    fn the_host_comes_without_port_case_or_trailing_dot() {
        let req = |host: &str| {
            Request::builder()
                .uri("/")
                .header(header::HOST, host)
                .body(())
                .unwrap_or_else(|_| unreachable!())
        };
        assert_eq!(
            host_of(&req("Shop.Example.com:8443")).as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host_of(&req("shop.example.com.")).as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(host_of(&req("[::1]:80")).as_deref(), Some("[::1]"));
        let h2 = Request::builder()
            .uri("https://Shop.example.com/x")
            .body(())
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(host_of(&h2).as_deref(), Some("shop.example.com"));
    }
}
