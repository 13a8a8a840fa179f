//! Serving the router: each connection admitted under the listener's caps (in all, and from
//! one address), each request head read within a timeout, the first on a connection as the
//! next on a kept-alive one (so an idle or trickling client is not held for ever), and a
//! graceful stop. `axum::serve` has neither caps nor a timer for hyper's timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use capstan_process::limits::{ConnCaps, ConnLimiter};

use crate::Peer;

/// How long a client may take to send a request's head, or stay idle between two requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for open requests (streams end on the same signal).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish for a while.
pub async fn serve<L>(mut listener: L, router: Router, shutdown: CancellationToken)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let limiter = ConnLimiter::new(ConnCaps::from_fd_limit());
    let connections = TaskTracker::new();
    let mut refused: u64 = 0;
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let caps = ConnCaps::from_fd_limit();
        let admitted = match limiter.admit_under(peer.ip(), caps) {
            Ok(admitted) => admitted,
            Err(why) => {
                refused += 1;
                if refused.is_power_of_two() {
                    warn!(peer = %peer.ip(), ?why, ?caps, refused, "API connection cap reached; closing new connections");
                }
                continue;
            }
        };
        let service = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(Peer(peer)));
                req.map(axum::body::Body::new)
            });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _admitted = admitted;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    if tokio::time::timeout(STOP_WAIT, connections.wait())
        .await
        .is_err()
    {
        warn!("requests still open {STOP_WAIT:?} after the stop; closing them");
    }
}
