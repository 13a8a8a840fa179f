//! Tokens with roles and the audit log, through the daemon: a viewer reads but cannot change,
//! an operator deploys (and the ledger names it) but cannot manage tokens, a revoked token stops
//! working at once, only a token's hash is kept, and every change is in the audit log with who
//! asked and from where.

use capstan_model::{AuditLog, CreatedToken, Release, Role, TokenList};
use capstan_testkit::{Daemon, unique};

use crate::bin;

/// `(status, body)` of a request with `token`.
async fn call(
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", daemon.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn create(daemon: &Daemon, name: &str, role: &str) -> CreatedToken {
    let (code, out, err) = daemon
        .cli(&["tokens", "create", name, "--role", role, "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn roles_decide_what_a_token_may_do_and_every_change_is_audited() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let (viewer_name, operator_name) = (unique("view"), unique("ops"));
    let viewer = create(&daemon, &viewer_name, "viewer").await;
    let operator = create(&daemon, &operator_name, "operator").await;
    assert_eq!(viewer.info.role, Role::Viewer);
    assert_eq!(viewer.info.created_by, "admin");
    assert!(viewer.token.starts_with("cap_"), "{}", viewer.token);

    // a viewer reads, and plans, but cannot change anything
    let (status, _) = call(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/apps",
        &viewer.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let app = unique("capt-roles");
    let (status, body) = call(
        &daemon,
        reqwest::Method::POST,
        &format!("/api/v1/apps/{app}/down"),
        &viewer.token,
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the operator role"),
        "{body}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    init: true\n",
    )
    .unwrap();
    let as_viewer = [("CAPSTAN_TOKEN", viewer.token.as_str())];
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["plan", "-p", &app], &as_viewer)
        .await;
    assert_eq!(code, 0, "a viewer may plan: {err}");
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &as_viewer)
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs the operator role"), "{err}");

    // an operator deploys, and the ledger names the token; tokens are an admin's
    let as_operator = [("CAPSTAN_TOKEN", operator.token.as_str())];
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &as_operator)
        .await;
    assert_eq!(code, 0, "{err}");
    let releases: Vec<Release> = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert_eq!(releases[0].actor, operator_name);
    let (status, _) = call(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/tokens",
        &operator.token,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/audit",
        &viewer.token,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // bad requests change nothing
    for (body, want) in [
        (serde_json::json!({"name": "x", "role": "root"}), 400),
        (serde_json::json!({"name": "admin", "role": "viewer"}), 400),
        (
            serde_json::json!({"name": "bad name", "role": "viewer"}),
            400,
        ),
        (
            serde_json::json!({"name": viewer_name, "role": "admin"}),
            409,
        ),
    ] {
        let (status, answer) = daemon.post_raw("/api/v1/tokens", &body).await;
        assert_eq!(status, want, "{body}: {answer}");
    }

    // listed without secrets; only the hash is on disk
    let (code, out, _) = daemon.cli(&["tokens", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains(&viewer.token) && !out.contains(&operator.token));
    let list: TokenList = serde_json::from_str(&out).unwrap();
    assert_eq!(list.tokens.len(), 2, "{out}");
    let listed = list.tokens.iter().find(|t| t.name == viewer_name).unwrap();
    assert!(listed.last_used.is_some(), "{listed:?}");
    let db = std::fs::read(daemon.data_dir().join("state.db")).unwrap();
    let secret = viewer.token.rsplit('_').next().unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the token's secret is not stored"
    );

    // revoked: refused at once
    let (code, _, err) = daemon.cli(&["tokens", "revoke", &viewer_name]).await;
    assert_eq!(code, 0, "{err}");
    let (status, body) = call(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/apps",
        &viewer.token,
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );

    // the audit log: who changed (or tried to change) what, when, from where
    let (code, out, err) = daemon.cli(&["audit", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let log: AuditLog = serde_json::from_str(&out).unwrap();
    let find = |who: &str, method: &str, path: &str, status: u16| {
        log.entries.iter().find(|e| {
            e.who == who && e.method == method && e.path.starts_with(path) && e.status == status
        })
    };
    let refused = find(
        &viewer_name,
        "POST",
        &format!("/api/v1/apps/{app}/down"),
        403,
    )
    .expect("the refused down is audited");
    assert!(refused.remote.starts_with("127.0.0.1:"), "{refused:?}");
    assert_eq!(refused.role, Role::Viewer);
    assert!(
        find(
            &operator_name,
            "POST",
            &format!("/api/v1/apps/{app}/deploy"),
            200
        )
        .is_some()
    );
    assert!(find("admin", "POST", "/api/v1/tokens", 201).is_some());
    assert!(
        find(
            "admin",
            "DELETE",
            &format!("/api/v1/tokens/{viewer_name}"),
            204
        )
        .is_some()
    );
    assert!(
        log.entries.iter().all(|e| e.method != "GET"),
        "reads are not audited"
    );
    let (code, out, _) = daemon.cli(&["audit"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("POST /api/v1/apps/{app}/deploy")),
        "{out}"
    );

    let (code, _, err) = daemon
        .cli_in(dir.path(), &["down", &app], &as_operator)
        .await;
    assert_eq!(code, 0, "{err}");
}
