//! Published ports through capstan's proxy: rollouts, a failing release and a daemon restart
//! under load drop no request.

use std::time::Duration;

use capstan_testkit::load::{Load, Tally};
use capstan_testkit::{Daemon, free_port, unique};

use crate::bin;

/// Three replicas of a busybox httpd answering `/` with `$VERSION`, and a CGI at
/// `/cgi-bin/slow` that takes 6 s; health-gated, start-first one replica at a time.
fn app(port: u16, version: &str, healthy: bool) -> String {
    let check = if healthy {
        r#"["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]"#
    } else {
        r#"["CMD", "false"]"#
    };
    format!(
        r#"services:
  web:
    image: capstan-test/busybox:1
    init: true
    command: ["sh", "-c", "echo $$VERSION > /www/index.html && exec httpd -f -p 80 -h /www"]
    environment:
      VERSION: {version}
    ports:
      - "{port}:80"
    configs:
      - source: slow
        target: /www/cgi-bin/slow
        mode: 0555
    healthcheck:
      test: {check}
      interval: 1s
      timeout: 10s
      retries: 2
    stop_grace_period: 15s
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        order: start-first
configs:
  slow:
    content: |
      #!/bin/sh
      sleep 6
      echo "Content-Type: text/plain"
      echo ""
      echo "slow-$$VERSION"
"#
    )
}

async fn deploy(
    daemon: &Daemon,
    dir: &std::path::Path,
    app_name: &str,
    compose: &str,
) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, stdout, stderr) = daemon.cli_in(dir, &["deploy", "-p", app_name], &[]).await;
    (code, format!("{stdout}{stderr}"))
}

/// GETs `path` on a fresh connection: (status, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap().trim().to_owned(),
    )
}

fn assert_clean(tally: &Tally, what: &str) {
    eprintln!(
        "{what}: {} requests ({} on one keep-alive connection), {} failed, bodies {:?}",
        tally.total(),
        tally.keepalive_requests,
        tally.failures.len(),
        tally.bodies
    );
    assert!(
        tally.failures.is_empty(),
        "{what}: {} of {} requests failed: {:?}",
        tally.failures.len(),
        tally.total(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    assert_eq!(
        tally.keepalive_connections, 1,
        "{what}: the keep-alive client had to reconnect"
    );
}

#[tokio::test]
async fn rollouts_failed_releases_and_daemon_restarts_drop_no_request() {
    let engine = capstan_testkit::engine().await;
    let mut daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("capt-proxy");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");

    let (code, out) = deploy(&daemon, dir.path(), &name, &app(port, "v1", true)).await;
    assert_eq!(code, 0, "{out}");
    let (status, body) = get(&addr, "/").await;
    assert_eq!((status, body.as_str()), (200, "v1"));
    // replicas never bind the host port themselves
    for c in engine.list_containers(false).await.unwrap() {
        if capstan_testkit::replica_of(&c, &name) {
            let json = engine.inspect_container_json(&c.id).await.unwrap();
            let bindings = &json["HostConfig"]["PortBindings"];
            assert!(
                bindings.is_null() || bindings.as_object().is_some_and(serde_json::Map::is_empty),
                "{bindings}"
            );
        }
    }
    let proxy_pid = daemon.proxy_pid().expect("the daemon started a proxy");

    // v1 → v2 under load, with slow requests in flight on the replicas being drained
    let load = Load::start(&addr, "/", 2);
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { get(&addr, "/cgi-bin/slow").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out) = deploy(&daemon, dir.path(), &name, &app(port, "v2", true)).await;
    assert_eq!(code, 0, "{out}");
    while load.tally().total() < 2000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tally = load.finish().await;
    assert_clean(&tally, "rollout v1 → v2");
    assert!(tally.total() >= 2000, "{tally:?}");
    assert!(tally.keepalive_requests >= 500, "{tally:?}");
    assert!(
        tally.bodies.contains_key("v1") && tally.bodies.contains_key("v2"),
        "{tally:?}"
    );
    assert!(
        tally.bodies.keys().all(|b| b == "v1" || b == "v2"),
        "{tally:?}"
    );
    for s in slow {
        // each was served to the end by a v1 replica that was being drained meanwhile
        assert_eq!(s.await.unwrap(), (200, "slow-v1".to_owned()));
    }
    for _ in 0..30 {
        assert_eq!(get(&addr, "/").await, (200, "v2".to_owned()));
    }

    // the daemon restarts while requests flow: the proxy, a process of its own, carries on
    let load = Load::start(&addr, "/", 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(daemon.stop().await.code(), Some(0));
    let during = load.tally().total();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        load.tally().total() > during,
        "requests flow while no daemon runs"
    );
    daemon.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.finish().await;
    assert_clean(&tally, "daemon restart");
    assert_eq!(tally.bodies.keys().collect::<Vec<_>>(), ["v2"], "{tally:?}");
    assert_eq!(
        daemon.proxy_pid(),
        Some(proxy_pid),
        "the restarted daemon re-adopted the proxy"
    );
    let status: serde_json::Value = daemon.get("/api/v1/proxy").await;
    assert_eq!(status["running"], true, "{status}");
    let route = &status["proxy"]["routes"][0];
    assert_eq!(route["local"], addr.as_str(), "{status}");
    assert_eq!(route["backends"].as_array().unwrap().len(), 3, "{status}");
    let (code, ps, err) = daemon.cli(&["ps", &name]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        ps.matches(&format!("{addr}->80")).count(),
        3,
        "every replica in rotation:\n{ps}"
    );

    // a release whose healthcheck never passes rolls back by itself, and nobody notices
    let load = Load::start(&addr, "/", 2);
    let (code, out) = deploy(&daemon, dir.path(), &name, &app(port, "v3", false)).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rolled back"), "{out}");
    let tally = load.finish().await;
    assert_clean(&tally, "failed release");
    assert_eq!(tally.bodies.keys().collect::<Vec<_>>(), ["v2"], "{tally:?}");
    let releases: serde_json::Value = daemon.get(&format!("/api/v1/apps/{name}/releases")).await;
    assert_eq!(releases[0]["result"], "rolled_back", "{releases}");

    // down: the port closes with the app
    let out = daemon.cli(&["down", &name]).await;
    assert_eq!(out.0, 0, "{out:?}");
    capstan_testkit::eventually(Duration::from_secs(10), "the port to close", || async {
        tokio::net::TcpStream::connect(&addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// A Compose file cannot wear capstan's labels: another app's labels and a port claim of its
/// own making take no port. The proxy reads what each release publishes from the ledger.
#[tokio::test]
async fn an_app_cannot_take_another_apps_port_with_labels() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let owner = unique("capt-owner");
    let thief = unique("capt-thief");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let httpd = |body: &str, extra: &str| {
        format!(
            r#"services:
  web:
    image: capstan-test/busybox:1
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      retries: 5
{extra}"#
        )
    };
    let honest = httpd("owner", &format!("    ports:\n      - \"{port}:80\"\n"));
    let (code, out) = deploy(&daemon, dir.path(), &owner, &honest).await;
    assert_eq!(code, 0, "{out}");
    let claim = format!(r#"[{{"ip":"127.0.0.1","published":{port},"target":80}}]"#);
    let forged = httpd(
        "thief",
        &format!(
            "    labels:\n      io.capstan.ports: '{claim}'\n      io.capstan.app: {owner}\n      io.capstan.release: \"1\"\n      com.example.kept: \"yes\"\n"
        ),
    );
    let other = tempfile::tempdir().unwrap();
    let (code, out) = deploy(&daemon, other.path(), &thief, &forged).await;
    assert_eq!(code, 0, "{out}");
    for _ in 0..20 {
        let (status, body) = get(&addr, "/").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "owner"),
            "the port was taken"
        );
    }
    let mine: Vec<_> = engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name.starts_with(&format!("{thief}-")))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let labels = &mine[0].labels;
    assert_eq!(labels["io.capstan.app"], thief, "{labels:?}");
    assert!(!labels.contains_key("io.capstan.ports"), "{labels:?}");
    assert_eq!(labels["com.example.kept"], "yes", "other labels stay");
    for app in [&owner, &thief] {
        let (code, _, err) = daemon.cli(&["down", app]).await;
        assert_eq!(code, 0, "{err}");
    }
}
