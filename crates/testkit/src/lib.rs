//! The test harness shared by every capstan test and benchmark.
//!
//! The README's test command starts one private Docker engine and one real registry per run and
//! exports their addresses (`CAPSTAN_TEST_DOCKER_HOST`, `CAPSTAN_TEST_REGISTRY`); this crate
//! connects to them, builds the busybox test image through the engine's import API, starts a
//! capstan daemon under test, and gives tests that must stop or restart an engine one of their
//! own. It must never fall back to the host's engine or skip: a missing engine is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod alertmanager;
mod browser;
mod clickhouse;
mod daemon;
mod debian;
mod git;
mod image;
mod kube_api;
mod kube_cluster;
mod kubelet;
pub mod load;
mod own_engine;
mod pebble;
pub mod procfs;
mod prometheus;
mod receiver;
mod registry;
mod smtp;
mod sshd;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use capstan_engine::Engine;

pub use alertmanager::Alertmanager;
pub use browser::Browser;
pub use clickhouse::ClickHouse;
pub use daemon::{Daemon, docker, keep_credential, serve_refused};
pub use debian::{DEBIAN, DebianImage, debian_image, debian_root};
pub use git::{GitServer, git};
pub use image::{BUSYBOX, busybox_rootfs, ensure_busybox, push_versions, rootfs_with_file, tar_of};
pub use kube_api::{
    Applied, KubeApi, Seen as KubeRequest, kubeconfig, kubernetes_validate,
    kubernetes_validate_files,
};
pub use kubelet::KubeletLog;
pub use own_engine::OwnEngine;
pub use pebble::Pebble;
pub use prometheus::Prometheus;
pub use receiver::{Received, Receiver, receiver};
pub use registry::{
    OCI_INDEX, OCI_MANIFEST, Registry, RegistryOptions, Request as RegistryRequest, sha256,
};
pub use smtp::Smtp;
pub use sshd::Sshd;

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The run's engine address, exported by the test command.
pub fn docker_host() -> String {
    std::env::var("CAPSTAN_TEST_DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "CAPSTAN_TEST_DOCKER_HOST is not set: run the tests with scripts/test, which starts a private engine and registry"
        )
    })
}

/// The run's engine over tcp (`tcp://127.0.0.1:PORT`, loopback only).
pub fn docker_tcp() -> String {
    std::env::var("CAPSTAN_TEST_DOCKER_TCP").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_DOCKER_TCP is not set: run the tests with scripts/test")
    })
}

/// A manager of the run's three-node Swarm (one manager, two workers, each a host of its own:
/// `scripts/swarm-ground`), as `unix:///...`.
pub fn swarm_host() -> String {
    std::env::var("CAPSTAN_TEST_SWARM_HOST").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_SWARM_HOST is not set: run the tests with scripts/test")
    })
}

/// The engine of the run's Swarm node named `hostname` (`capt-nodeN`), as `unix:///...`: for
/// what a test must see on the node itself, not through a manager.
pub fn swarm_node_host(hostname: &str) -> String {
    let n: u8 = hostname
        .strip_prefix("capt-node")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{hostname:?} is not a node of the run's Swarm"));
    swarm_host().replace("/node1/", &format!("/node{n}/"))
}

/// A client's TLS directory (`ca.pem`, `cert.pem`, `key.pem`) for the run's Swarm hosts'
/// engines, which also listen on `tcp://10.217.0.1N:2376` for clients their CA signed
/// (`scripts/swarm-ground` makes them).
pub fn swarm_tls_dir() -> std::path::PathBuf {
    let host = swarm_host();
    let sock = std::path::Path::new(host.trim_start_matches("unix://"));
    sock.parent()
        .and_then(std::path::Path::parent)
        .unwrap_or_else(|| panic!("{host} is not a node's socket of the run's Swarm"))
        .join("tls/client")
}

/// Restarts host `node`'s dockerd of the run's Swarm (1: its manager) on the same data, as a
/// service manager does (`scripts/swarm-ground --restart-node`); returns once it is back in
/// the Swarm.
pub async fn restart_swarm_node(node: u8) {
    let script = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("../../scripts/swarm-ground");
    let out = tokio::process::Command::new(&script)
        .args(["--restart-node", &node.to_string()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "restarting host {node}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The registry the Swarm's nodes pull from (`10.217.0.1:5000`, on the test bridge; every
/// node's engine takes it as an insecure registry).
pub fn swarm_registry() -> String {
    std::env::var("CAPSTAN_TEST_SWARM_REGISTRY").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_SWARM_REGISTRY is not set: run the tests with scripts/test")
    })
}

/// Host `node` (1 to 3) of the run's Swarm cut off the others while held: its link to the test
/// bridge (`capt-swvN`, see `scripts/swarm-ground`) is down, as when a machine loses its
/// network; put back up when dropped. Its engine and containers keep running, unseen.
pub struct CutLink {
    link: String,
}

impl CutLink {
    /// Cuts host `node`'s link (needs root, as the run does).
    pub fn cut(node: u8) -> Self {
        let link = format!("capt-swv{node}");
        set_link(&link, "down").unwrap();
        Self { link }
    }
}

impl Drop for CutLink {
    fn drop(&mut self) {
        // dropped while a test unwinds too: say it, never panic again
        if let Err(e) = set_link(&self.link, "up") {
            eprintln!("{e}");
        }
    }
}

fn set_link(link: &str, state: &str) -> Result<(), String> {
    match std::process::Command::new("ip")
        .args(["link", "set", link, state])
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("ip link set {link} {state}: {s}")),
        Err(e) => Err(format!("cannot run ip link set {link} {state}: {e}")),
    }
}

/// The run's registry (`127.0.0.1:PORT`).
pub fn registry() -> String {
    std::env::var("CAPSTAN_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_REGISTRY is not set: run the tests with scripts/test")
    })
}

/// Where the harness keeps its files (own engines, daemon data dirs).
pub fn run_dir() -> std::path::PathBuf {
    std::env::var_os("CAPSTAN_TEST_RUN_DIR").map_or_else(
        || std::path::PathBuf::from("/var/tmp/capstan-test"),
        Into::into,
    )
}

/// A connected engine handle on the run's engine, with the test image present.
pub async fn engine() -> Engine {
    let engine = Engine::new(Some(&docker_host())).unwrap();
    engine
        .negotiate()
        .await
        .unwrap_or_else(|e| panic!("the test engine does not answer: {e}"));
    ensure_busybox(&engine).await;
    engine
}

/// The host's address on `engine`'s default bridge: where a container, or a build's `RUN`,
/// reaches a listener of the test.
pub async fn bridge_gateway(engine: &Engine) -> std::net::IpAddr {
    let networks = engine.networks_json().await.unwrap();
    let bridge = networks
        .iter()
        .find(|n| n["Name"] == "bridge")
        .expect("the test engine has a default bridge network");
    bridge["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no gateway on the engine's bridge: {bridge}"))
}

/// An HTTP listener a container reaches (on the engine's bridge) that answers nobody until the
/// test opens it: a build step that fetches it (`RUN wget -q -O- URL`) runs exactly as long as
/// the test needs, whatever the machine's speed.
pub struct Gate {
    /// `http://<gateway>:<port>/`
    pub url: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    pub async fn start(engine: &Engine) -> Self {
        let listener = tokio::net::TcpListener::bind((bridge_gateway(engine).await, 0))
            .await
            .unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (open, opened) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    // the request read whole first: a socket closed on unread data is reset,
                    // and the answer with it
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if opened.wait_for(|open| *open).await.is_ok() {
                        let _ = conn
                            .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nopen\n")
                            .await;
                        let _ = conn.shutdown().await;
                    }
                });
            }
        });
        Self { url, open }
    }

    /// Answers every request held and every later one.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// Whether `c` is one of `app`'s replicas: capstan's app label, and not a replica a rollout
/// set aside (renamed `<slot>-retiring-<id>`, out of rotation, stopping in the background).
pub fn replica_of(c: &capstan_model::Container, app: &str) -> bool {
    c.labels.get("io.capstan.app").map(String::as_str) == Some(app)
        && !capstan_model::is_retiring(&c.name)
}

/// A name no other test (or earlier run) uses: lowercase, valid as an image repository.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `timeout`. A
/// deadline, not a timing assertion: it only bounds how long a broken build hangs.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `url` answers 2xx (a server of the test's own starting), at most 30 s; panics
/// with the server's log otherwise.
pub(crate) async fn wait_ready(url: &str, what: &str, log: &std::path::Path) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what} did not become ready: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
