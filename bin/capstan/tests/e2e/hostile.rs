//! Hostile input against a running daemon, as a viewer would send it: what once killed the
//! daemon (a stack overflowed by a deep query or document) is a 400 naming the parameter, and
//! the daemon, its journal and its log pipeline live on.

use std::fmt::Write as _;

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

    // (a URL holds at most 64 KiB on either side, so the longest queries here are 60,000)
    let refused = [
        // 30,000 negations before a word: this killed the daemon
        (
            format!("/api/v1/logs?q={}error", "-".repeat(30_000)),
            "q",
            "longer than",
        ),
        (
            format!("/api/v1/logs?q={}error", "-".repeat(10_000)),
            "q",
            "nest deeper than 64",
        ),
        (
            format!("/api/v1/logs?q={}error", "-".repeat(60_000)),
            "q",
            "longer than",
        ),
        (
            format!("/api/v1/metrics/query?query={}x", "(".repeat(10_000)),
            "query",
            "nest deeper than 64",
        ),
        (
            format!("/api/v1/metrics/query?query={}x", "(".repeat(60_000)),
            "query",
            "longer than",
        ),
    ];
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

    // still there: the API, the journal and the log pipeline answer
    let health = daemon.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    let (status, body) = daemon.get_raw("/api/v1/logs?q=error", Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
}
