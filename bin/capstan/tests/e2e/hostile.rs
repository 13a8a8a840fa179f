//! Hostile input against a running daemon, as a viewer would send it: what once killed the
//! daemon (a stack overflowed by a deep query or document) is a 400 naming the parameter, and
//! the daemon, its journal and its log pipeline live on. Idle connections by the thousand leave
//! a new client served, by the published ports and by the API.

use std::fmt::Write as _;
use std::time::Duration;

use capstan_testkit::{Daemon, unique};

use crate::bin;

#[tokio::test]
async fn deep_queries_and_documents_are_refused_and_the_daemon_lives() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-hostile");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n[metrics]\ninterval = \"1m\"\n"),
    )
    .await;
    let (code, out, err) = daemon
        .cli(&["tokens", "create", &name, "--role", "viewer", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let viewer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_owned();

    // 30,000 negations before a word killed the daemon; 10,000 nest too deep, 30,000 and
    // 60,000 are too long (a URL holds at most 64 KiB on either side, hence no 100,000 here)
    let refused: Vec<(String, &str, &str)> = [
        ("/api/v1/logs?q=", "q", '-', 30_000, "longer than"),
        ("/api/v1/logs?q=", "q", '-', 10_000, "nest deeper than 64"),
        ("/api/v1/logs?q=", "q", '-', 60_000, "longer than"),
        (
            "/api/v1/metrics/query?query=",
            "query",
            '(',
            10_000,
            "nest deeper than 64",
        ),
        (
            "/api/v1/metrics/query?query=",
            "query",
            '(',
            60_000,
            "longer than",
        ),
    ]
    .into_iter()
    .map(|(route, param, c, n, says)| (format!("{route}{}x", c.to_string().repeat(n)), param, says))
    .collect();
    for (path, param, says) in &refused {
        let (status, body) = daemon.get_raw(path, Some(&viewer)).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("\"{param}\"")) && message.contains(says),
            "{message}"
        );
        // the answer quotes a part of the query, not all of it
        assert!(message.len() < 400, "{message}");
    }

    // an image name the engine would read as a URL path (found by schemathesis: a 500)
    for image in ["%2Fetc", "a%0Ab", "UPPER%3A1"] {
        let (status, body) = daemon
            .post_raw(
                &format!("/api/v1/images/scan?image={image}"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 400, "{image}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("neither an image id nor a reference"),
            "{message}"
        );
    }

    // a plan of a Compose file 100,000 deep, as a viewer may ask for one
    let deep = format!(
        "services:\n  web:\n    image: busybox\nx-deep:\n  {}1\n",
        "- ".repeat(100_000)
    );
    let laughs = (1..10).fold(
        "x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned(),
        |mut text, i| {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            let _ = writeln!(text, "x-a{i}: &a{i} [{refs}]");
            text
        },
    );
    for (document, says) in [(deep, "nest deeper"), (laughs, "more than 1000000 values")] {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/api/v1/apps/{name}/plan", daemon.addr()))
            .bearer_auth(&viewer)
            .header("content-type", "application/yaml")
            .body(document)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body = resp.text().await.unwrap();
        assert!(body.contains(says), "{body}");
    }

    // live tails: 64 open at once, every client together; the next one waits
    let client = reqwest::Client::new();
    let mut tails = Vec::new();
    for _ in 0..capstan_api::MAX_TAILS {
        let resp = client
            .get(format!(
                "http://{}/api/v1/logs/stream?tail=0",
                daemon.addr()
            ))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tails.push(resp);
    }
    let (status, body) = daemon
        .get_raw("/api/v1/logs/stream?tail=0", Some(&viewer))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    // a closed one frees its place
    drop(tails.pop());
    capstan_testkit::eventually(Duration::from_secs(10), "a freed tail", || async {
        let resp = client
            .get(format!(
                "http://{}/api/v1/logs/stream?tail=0",
                daemon.addr()
            ))
            .bearer_auth(&viewer)
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then_some(resp)
    })
    .await;

    // still there: the API, the journal and the log pipeline answer
    let health = daemon.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    let (status, body) = daemon.get_raw("/api/v1/logs?q=error", Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
}

/// Opens `n` connections to `addr` from the loopback address `from`, and keeps them open.
async fn idle_connections(
    from: &str,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        // a connection the server closes at once still counts as tried
        if let Ok(stream) = socket.connect(addr).await {
            held.push(stream);
        }
    }
    held
}

/// Lowers process `pid`'s open-file limit, as a small default (1,024) would be.
fn lower_fd_limit(pid: u32, limit: u32) {
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A process's open file descriptors and resident memory (KiB).
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (fds, capstan_testkit::procfs::rss_kib(pid).0)
}

#[tokio::test]
async fn a_thousand_idle_connections_leave_a_new_client_served() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let app = unique("capt-idle");
    let port = capstan_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: capstan-test/busybox:1\n    init: true\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports: [\"{port}:80\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let get = |url: String| async move {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status().as_u16())
    };
    let site = format!("http://127.0.0.1:{port}/");
    assert_eq!(get(site.clone()).await.unwrap(), 200);

    // both processes with the small open-file limit many hosts default to; before the caps,
    // 1,000 idle connections from one address took every descriptor the proxy had (two each)
    let proxy = daemon.proxy_pid().unwrap();
    let serve = daemon.pid().unwrap();
    lower_fd_limit(proxy, 1024);
    lower_fd_limit(serve, 1024);
    let published: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let api: std::net::SocketAddr = daemon.addr().parse().unwrap();
    let held_proxy = idle_connections("127.0.0.2", published, 1000).await;
    let held_api = idle_connections("127.0.0.3", api, 1000).await;
    // past the sniffing wait, when an idle connection is forwarded as TCP
    tokio::time::sleep(Duration::from_secs(1)).await;

    // a new client is served, by the app and by the API
    assert_eq!(get(site).await.unwrap(), 200);
    let health = get(format!("http://{}/api/v1/health", daemon.addr()))
        .await
        .unwrap();
    assert_eq!(health, 200);
    let (proxy_fds, proxy_rss) = fds_and_rss(proxy);
    let (serve_fds, serve_rss) = fds_and_rss(serve);
    eprintln!(
        "with 1,000 idle connections each ({} and {} still open on the client side): proxy {proxy_fds} fds, {} MiB; daemon {serve_fds} fds, {} MiB",
        held_proxy.len(),
        held_api.len(),
        proxy_rss / 1024,
        serve_rss / 1024
    );
    assert!(proxy_fds < 1024 && serve_fds < 1024);
    let log = std::fs::read_to_string(daemon.data_dir().join("proxy.log")).unwrap();
    assert!(log.contains("connection cap reached"), "{log}");
    assert!(daemon.log().contains("API connection cap reached"));
    drop((held_proxy, held_api));
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}
