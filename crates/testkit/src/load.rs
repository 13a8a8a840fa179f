//! HTTP load for zero-downtime tests and benchmarks: clients that keep sending `GET` to one
//! address and tally every answer, so a test can assert that not a single request failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Successful answers by body (trimmed).
    pub bodies: BTreeMap<String, u64>,
    /// Every failure: status, transport error, unexpected body.
    pub failures: Vec<String>,
    /// Connections the keep-alive client opened (1 unless its connection broke).
    pub keepalive_connections: u64,
    /// Requests the keep-alive client sent.
    pub keepalive_requests: u64,
}

impl Tally {
    /// Successful answers.
    pub fn ok(&self) -> u64 {
        self.bodies.values().sum()
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.ok() + self.failures.len() as u64
    }
}

/// Clients sending requests until stopped.
#[derive(Debug)]
pub struct Load {
    stop: CancellationToken,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// One client on a single keep-alive connection plus `fresh` clients that open a new
    /// connection per request, all sending `GET path` to `addr` in a loop.
    pub fn start(addr: &str, path: &str, fresh: usize) -> Self {
        let mut load = Self::fresh_only(addr, path, fresh);
        load.tasks.push(tokio::spawn(keepalive(
            addr.to_owned(),
            path.to_owned(),
            load.stop.clone(),
            Arc::clone(&load.tally),
        )));
        load
    }

    /// `fresh` clients that open a new connection per request, and no keep-alive one (for
    /// servers that close every connection).
    pub fn fresh_only(addr: &str, path: &str, fresh: usize) -> Self {
        let stop = CancellationToken::new();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = Vec::new();
        for _ in 0..fresh {
            tasks.push(tokio::spawn(per_request(
                addr.to_owned(),
                path.to_owned(),
                stop.clone(),
                Arc::clone(&tally),
            )));
        }
        Self { stop, tally, tasks }
    }

    /// The tally so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Stops the clients and returns the final tally.
    pub async fn finish(self) -> Tally {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally.lock().unwrap().clone()
    }
}

fn record(tally: &Mutex<Tally>, result: Result<String, String>) {
    let mut t = tally.lock().unwrap();
    match result {
        Ok(body) => *t.bodies.entry(body).or_default() += 1,
        Err(e) => t.failures.push(e),
    }
}

async fn keepalive(addr: String, path: String, stop: CancellationToken, tally: Arc<Mutex<Tally>>) {
    'connect: while !stop.is_cancelled() {
        tally.lock().unwrap().keepalive_connections += 1;
        let stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                record(&tally, Err(format!("keep-alive connect: {e}")));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (mut send, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(e) => {
                    record(&tally, Err(format!("keep-alive handshake: {e}")));
                    continue;
                }
            };
        tokio::spawn(conn);
        while !stop.is_cancelled() {
            let req = hyper::Request::get(path.as_str())
                .header(hyper::header::HOST, addr.as_str())
                .body(Empty::<Bytes>::new())
                .unwrap();
            tally.lock().unwrap().keepalive_requests += 1;
            let result = async {
                send.ready().await.map_err(|e| format!("keep-alive: {e}"))?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("keep-alive: {e}"))?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("keep-alive body: {e}"))?
                    .to_bytes();
                let body = String::from_utf8_lossy(&body).trim().to_owned();
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!("keep-alive: {status} {body}"))
                }
            }
            .await;
            let broken = result.is_err();
            record(&tally, result);
            if broken {
                continue 'connect;
            }
        }
    }
}

async fn per_request(
    addr: String,
    path: String,
    stop: CancellationToken,
    tally: Arc<Mutex<Tally>>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://{addr}{path}");
    while !stop.is_cancelled() {
        let result = async {
            let resp = client
                .get(&url)
                .header("connection", "close")
                .send()
                .await
                .map_err(|e| format!("fresh: {e}"))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| format!("fresh body: {e}"))?;
            if status.is_success() {
                Ok(body.trim().to_owned())
            } else {
                Err(format!("fresh: {status} {}", body.trim()))
            }
        }
        .await;
        record(&tally, result);
    }
}
