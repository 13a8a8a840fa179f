//! capstan's proxy for published ports.
//!
//! A replica never binds a host port: `capstan proxy`, a process of its own, binds each
//! published port (127.0.0.1 unless the Compose file names an address) and forwards it to the
//! service's healthy replicas round-robin. HTTP/1 is forwarded request by request, so a
//! keep-alive client moves between replicas and a replica is drained between two requests;
//! anything else is forwarded connection by connection. The daemon sends the whole table over a
//! unix socket whenever rotation changes, and asks the proxy to wait for a replica's open
//! requests before it stops it. Restarting the daemon leaves the proxy and its connections
//! alone; the next daemon re-adopts it.

mod client;
mod edge;
mod forward;
pub mod protocol;
mod server;
mod table;

pub use client::{Launch, ProxyClient};
pub use protocol::{
    Backend, BackendStatus, Certificate, Challenges, Edge, Mode, Route, RouteStatus, Site, Status,
};
pub use server::{Paths, run};

/// What went wrong talking to or running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no capstan proxy is running for this data dir (the daemon starts one on its first deploy with a published port)"
    )]
    NotRunning,
    #[error("a capstan proxy{} already serves this data dir; stop it first (kill -TERM it) or use another --data", if pid.is_empty() { String::new() } else { format!(" (pid {pid})") })]
    Running { pid: String },
    #[error("the proxy did not start; see {log}")]
    Start { log: String },
    #[error("the proxy refused: {0}")]
    Refused(String),
    #[error("talking to the proxy: {0}")]
    Protocol(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `c` can be served: its chain and key are PEM, and the key is the certificate's.
///
/// # Errors
/// What is wrong with it, in words.
pub fn check_certificate(c: &Certificate) -> Result<(), String> {
    edge::certified(c)?
        .keys_match()
        .map_err(|e| format!("the key is not the certificate's: {e}"))
}
