//! Forwarding one accepted connection: sniffed, then either request by request (HTTP/1) or as a
//! byte stream (TCP).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::protocol::Mode;
use crate::table::{Active, BackendState, ProxyBody, RouteState};

/// How long `auto` waits for the client's first bytes before treating the connection as TCP
/// (protocols where the server speaks first).
const SNIFF_WAIT: Duration = Duration::from_millis(300);
/// How long an HTTP client may take to send a request's head, and may stay idle between two
/// requests on a kept-alive connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TCP connection to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Request bodies up to this size are kept so the request can go to another replica when the
/// first one refuses the connection.
const REPLAY_LIMIT: u64 = 64 * 1024;

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// Handles one accepted connection until it ends.
pub(crate) async fn connection(
    route: Arc<RouteState>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mode, prefix) = match route.mode() {
        Mode::Auto => sniff(&mut stream).await,
        m => (m, Vec::new()),
    };
    let stream = Prefixed {
        prefix,
        pos: 0,
        inner: stream,
    };
    match mode {
        Mode::Http => http(route, stream, peer, shutdown).await,
        Mode::Tcp | Mode::Auto => tcp(&route, stream).await,
    }
}

/// Reads just enough of the client's first bytes to tell an HTTP/1 request line.
async fn sniff(stream: &mut TcpStream) -> (Mode, Vec<u8>) {
    let mut buf = [0_u8; 8];
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + SNIFF_WAIT;
    loop {
        let seen = &buf[..n];
        if METHODS.iter().any(|m| seen.starts_with(m)) {
            return (Mode::Http, seen.to_vec());
        }
        let could_be = METHODS.iter().any(|m| m.starts_with(seen));
        if !could_be || n == buf.len() {
            return (Mode::Tcp, seen.to_vec());
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[n..])).await {
            Ok(Ok(k)) if k > 0 => n += k,
            _ => return (Mode::Tcp, buf[..n].to_vec()),
        }
    }
}

/// Connection by connection: the next replica round-robin, another when it refuses.
async fn tcp(route: &RouteState, mut client: Prefixed) {
    let mut tried = Vec::new();
    loop {
        let Some(backend) = route.pick(&tried).await else {
            debug!(route = %route.key(), "no replica in rotation; closing the connection");
            return;
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await {
            Ok(Ok(mut upstream)) => {
                let _active = backend.enter();
                let _ = upstream.set_nodelay(true);
                let prefix = std::mem::take(&mut client.prefix);
                if upstream.write_all(&prefix[client.pos..]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client.inner, &mut upstream).await;
                return;
            }
            _ => {
                backend.failed();
                tried.push(backend.id.clone());
            }
        }
    }
}

/// Request by request over one client connection.
async fn http(
    route: Arc<RouteState>,
    stream: Prefixed,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req| {
        let route = Arc::clone(&route);
        async move { Ok::<_, Infallible>(forward(&route, req, peer, &Via::PLAIN).await) }
    });
    // a client that sends no whole request head within the timeout, the first or the next on
    // a kept-alive connection, is disconnected: an idle connection is not held for ever
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request body as it will be sent: kept whole when small, so it can be sent again.
enum Outgoing {
    Kept(Bytes),
    Streamed(Option<Incoming>),
}

impl Outgoing {
    fn take(&mut self) -> Option<ProxyBody> {
        match self {
            Outgoing::Kept(b) => Some(
                Full::new(b.clone())
                    .map_err(|never: Infallible| match never {})
                    .boxed(),
            ),
            Outgoing::Streamed(body) => body.take().map(BodyExt::boxed),
        }
    }
}

/// How a request came, and what to change on its way.
pub(crate) struct Via<'a> {
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// A path prefix to cut off.
    pub strip: Option<&'a str>,
}

impl Via<'_> {
    /// A published port's request: plain HTTP, as sent.
    pub const PLAIN: Via<'static> = Via {
        proto: "http",
        strip: None,
    };
}

/// Sends one request to the route's replicas, round-robin, another when one refuses.
pub(crate) async fn forward(
    route: &RouteState,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    via: &Via<'_>,
) -> Response<ProxyBody> {
    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut body = match body.size_hint().exact() {
        Some(n) if n <= REPLAY_LIMIT => match body.collect().await {
            Ok(b) => Outgoing::Kept(b.to_bytes()),
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                );
            }
        },
        _ => Outgoing::Streamed(Some(body)),
    };
    let mut headers = parts.headers.clone();
    // HTTP/2 names the host in the request's authority; the replica speaks HTTP/1.1
    if !headers.contains_key(header::HOST)
        && let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, host);
    }
    strip_hop_by_hop(&mut headers, upgrade);
    add_forwarded(&mut headers, peer, via.proto);
    let full_path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = match via.strip.and_then(|prefix| full_path.strip_prefix(prefix)) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        Some(rest) => format!("/{rest}"),
        None => full_path.to_owned(),
    };
    let mut tried = Vec::new();
    loop {
        let Some(backend) = route.pick(&tried).await else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("no healthy replica is serving {}", route.key()),
            );
        };
        let Some(out_body) = body.take() else {
            return answer(
                StatusCode::BAD_GATEWAY,
                &format!("the replica behind {} refused the connection", route.key()),
            );
        };
        let mut out = Request::new(out_body);
        *out.method_mut() = parts.method.clone();
        *out.headers_mut() = headers.clone();
        *out.uri_mut() = match format!("http://{}{path}", backend.addr).parse() {
            Ok(u) => u,
            Err(_) => return answer(StatusCode::BAD_REQUEST, "the request target is not valid"),
        };
        let active = backend.enter();
        match backend.client().request(out).await {
            Ok(resp) => return respond(resp, active, client_upgrade, &backend),
            Err(e) if e.is_connect() => {
                backend.failed();
                tried.push(backend.id.clone());
                debug!(route = %route.key(), backend = %backend.addr, error = %e, "replica refused; trying another");
            }
            // a replica that closed the connection without an answer (stopping, say): a request
            // that may be sent twice (RFC 9110 9.2.2), whose body is kept, goes to another
            Err(e) if idempotent(&parts.method) && matches!(body, Outgoing::Kept(_)) => {
                backend.failed();
                tried.push(backend.id.clone());
                debug!(route = %route.key(), backend = %backend.addr, error = %e, "replica failed an idempotent request; trying another");
            }
            Err(e) => {
                backend.failed();
                return answer(
                    StatusCode::BAD_GATEWAY,
                    &format!("the replica behind {} failed: {e}", route.key()),
                );
            }
        }
    }
}

/// Whether a request with `method` means the same sent twice as once.
fn idempotent(method: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

fn respond(
    mut resp: Response<Incoming>,
    active: Active,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    backend: &Arc<BackendState>,
) -> Response<ProxyBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream = hyper::upgrade::on(&mut resp);
        let addr = backend.addr;
        tokio::spawn(async move {
            let _active = active;
            if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream.await) {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            } else {
                debug!(backend = %addr, "an upgraded connection did not complete");
            }
        });
        return resp.map(|_| empty());
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    resp.map(|body| {
        Tracked {
            inner: body,
            _active: active,
        }
        .boxed()
    })
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body of `text`.
pub(crate) fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A response the proxy makes itself.
pub(crate) fn answer(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("capstan proxy: {message}\n")))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Drops the headers that describe one hop (RFC 9110 §7.6.1), keeping `Connection: upgrade`
/// and `Upgrade` on an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
    ] {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Says who the client is. capstan's proxy is the edge: what a client sends in these headers is
/// its own claim (a forged `X-Forwarded-For: 10.0.0.1` would pass an app's allow-list), so each
/// is replaced by what the proxy saw, never appended to.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, proto: &'static str) {
    for forged in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    ] {
        headers.remove(forged);
    }
    if let Ok(ip) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-forwarded-for", ip.clone());
        headers.insert("x-real-ip", ip);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert("x-forwarded-host", host);
    }
}

/// A response body that keeps its replica counted as busy until the last byte is sent.
struct Tracked {
    inner: Incoming,
    _active: Active,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's stream with the bytes read while sniffing put back in front.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_connection_listed_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("x-private"));
        assert!(!h.contains_key(header::CONNECTION));
        assert!(!h.contains_key("keep-alive"));
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_headers_say_what_the_proxy_saw_not_what_the_client_claims() {
        let mut h = HeaderMap::new();
        for (name, forged) in [
            ("x-forwarded-for", "10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "admin.internal"),
            ("x-real-ip", "10.0.0.9"),
            ("forwarded", "for=10.0.0.9"),
        ] {
            h.insert(name, HeaderValue::from_static(forged));
        }
        h.insert(header::HOST, HeaderValue::from_static("example.test"));
        add_forwarded(
            &mut h,
            "127.0.0.1:4000".parse().unwrap_or_else(|_| unreachable!()),
            "http",
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "example.test");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("forwarded"));
    }
}
