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

/// Everything the state database holds on disk, its write-ahead log included.
fn stored_bytes(daemon: &Daemon) -> Vec<u8> {
    let mut out = Vec::new();
    for file in ["state.db", "state.db-wal"] {
        out.extend(std::fs::read(daemon.data_dir().join(file)).unwrap_or_default());
    }
    out
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut out, b| {
            use std::fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        })
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
    let db = stored_bytes(&daemon);
    let secret = viewer.token.rsplit('_').next().unwrap();
    assert!(
        db.windows(64)
            .any(|w| w == sha256_hex(&viewer.token).as_bytes()),
        "its hash is stored"
    );
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

/// A browser's requests: no bearer token, only the cookie it was given, and headers it adds.
async fn browser(
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", daemon.url));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("capstan_session={c}"));
    }
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// `POST /api/v1/session` as a browser does it.
async fn sign_in(daemon: &Daemon, body: serde_json::Value) -> reqwest::Response {
    browser(
        daemon,
        reqwest::Method::POST,
        "/api/v1/session",
        None,
        None,
        Some(body),
    )
    .await
}

#[tokio::test]
async fn users_sign_in_to_a_session_whose_changes_need_its_csrf_token() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let add = |name: &str, role: &str, password: &str| {
        let (bin, url, token, name, role, password) = (
            bin().to_owned(),
            daemon.url.clone(),
            daemon.token.clone(),
            name.to_owned(),
            role.to_owned(),
            password.to_owned(),
        );
        async move {
            use tokio::io::AsyncWriteExt as _;
            let mut child = tokio::process::Command::new(bin)
                .args(["users", "add", &name, "--role", &role])
                .env("CAPSTAN_URL", url)
                .env("CAPSTAN_TOKEN", token)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{password}\n").as_bytes())
                .await
                .unwrap();
            drop(stdin);
            child.wait_with_output().await.unwrap()
        }
    };
    let out = add(&alice, "operator", "correct horse battery").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add(&bob, "viewer", "another long password").await;
    assert!(out.status.success());
    let out = add("carol", "viewer", "short").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user.password: at least 12 characters"));

    // a wrong password is refused without saying which part was wrong
    let resp = sign_in(
        &daemon,
        serde_json::json!({"username": alice, "password": "wrong password!"}),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = sign_in(
        &daemon,
        serde_json::json!({"username": "nobody", "password": "wrong password!"}),
    )
    .await;
    assert_eq!(resp.status(), 401);
    // a 60 KB name: refused like any wrong one, with no hashing, and the audit log keeps none
    // of it
    let huge_name = "x".repeat(60_000);
    let resp = sign_in(
        &daemon,
        serde_json::json!({"username": huge_name, "password": "wrong password!"}),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let (code, audit, err) = daemon.cli(&["audit", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(audit.contains("(not a user name)"), "{audit}");
    assert!(!audit.contains(&huge_name[..200]));

    // signed in: a cookie the page's scripts cannot read, and a CSRF token in the answer
    let resp = sign_in(
        &daemon,
        serde_json::json!({"username": alice, "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("capstan_session=")
        .unwrap()
        .to_owned();
    let session: capstan_model::Session = resp.json().await.unwrap();
    assert_eq!(session.who, alice);
    assert_eq!(session.role, Role::Operator);

    let app = unique("capt-session");
    let down = format!("/api/v1/apps/{app}/down");
    // reads need only the cookie
    let resp = browser(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/apps",
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    // a change without the CSRF token (a forged cross-site request) is refused
    let resp = browser(
        &daemon,
        reqwest::Method::POST,
        &down,
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token"),
        "{body}"
    );
    let resp = browser(
        &daemon,
        reqwest::Method::POST,
        &down,
        Some(&cookie),
        Some("forged"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = browser(
        &daemon,
        reqwest::Method::POST,
        &down,
        Some(&cookie),
        Some(&session.csrf_token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    // an operator manages no users
    let resp = browser(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/users",
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status(), 403);

    // a token signs in too, with its role
    let viewer = create(&daemon, &unique("view"), "viewer").await;
    let resp = sign_in(&daemon, serde_json::json!({"token": viewer.token})).await;
    assert_eq!(resp.status(), 200);
    let as_token: capstan_model::Session = resp.json().await.unwrap();
    assert_eq!(as_token.role, Role::Viewer);

    // signed out: the cookie is worth nothing
    let resp = browser(
        &daemon,
        reqwest::Method::DELETE,
        "/api/v1/session",
        Some(&cookie),
        Some(&session.csrf_token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let resp = browser(
        &daemon,
        reqwest::Method::GET,
        "/api/v1/apps",
        Some(&cookie),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status(), 401);

    // only argon2 hashes are stored; users are listed without them
    let db = stored_bytes(&daemon);
    let has = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!has("correct horse battery"));
    assert!(has("$argon2id$"));
    let (code, out, _) = daemon.cli(&["users", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains("argon2"), "{out}");
    let users: capstan_model::UserList = serde_json::from_str(&out).unwrap();
    assert_eq!(users.users.len(), 2);

    // the audit log has the sign-ins, refused ones too, and the signed-in change
    let log: AuditLog = daemon.get("/api/v1/audit?limit=1000").await;
    let seen = |who: &str, path: &str, status: u16| {
        log.entries
            .iter()
            .any(|e| e.who == who && e.path.starts_with(path) && e.status == status)
    };
    assert!(seen(&alice, "/api/v1/session", 401));
    assert!(seen(&alice, "/api/v1/session", 200));
    assert!(seen(&alice, &down, 403));
    assert!(seen(&alice, &down, 200));
    let (code, _, err) = daemon.cli(&["users", "remove", &bob]).await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn tls_from_certificate_files_serves_https_with_secure_cookies() {
    let engine = capstan_testkit::engine().await;
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let mut daemon = Daemon::start_with(bin(), engine.host(), &tls).await;
    assert!(
        daemon.url.starts_with("https://127.0.0.1:"),
        "{}",
        daemon.url
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/api/v1/health", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .post(format!("{}/api/v1/session", daemon.url))
        .json(&serde_json::json!({"token": daemon.token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("; Secure"), "{set}");
    // the audit log has the client's address over TLS too
    let log: AuditLog = client
        .get(format!("{}/api/v1/audit", daemon.url))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.entries[0].remote.starts_with("127.0.0.1:"), "{log:?}");
    // plain HTTP on the same port gets no answer it can read
    let plain = daemon.url.replace("https://", "http://");
    assert!(
        reqwest::get(format!("{plain}/api/v1/health"))
            .await
            .is_err_and(|e| !e.is_status())
    );
    // a client that does not trust the certificate is refused the handshake
    assert!(
        reqwest::get(format!("{}/api/v1/health", daemon.url))
            .await
            .is_err()
    );
    daemon.stop().await;

    // a bad key or certificate stops capstan at start, naming the key
    std::fs::write(&key, "not a key\n").unwrap();
    let err = capstan_testkit::serve_refused(bin(), &tls).await;
    assert!(err.contains("tls.key: cannot read a private key"), "{err}");
    let missing = tls.replace("cert.pem", "missing.pem");
    let err = capstan_testkit::serve_refused(bin(), &missing).await;
    assert!(err.contains("tls.cert"), "{err}");
}

#[tokio::test]
async fn a_hundred_wrong_sign_ins_from_one_address_are_slowed_and_answered_429() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dana = unique("dana");
    let (status, body) = daemon
        .post_raw(
            "/api/v1/users",
            &serde_json::json!({"name": dana, "role": "viewer", "password": "a long right password"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut waits = Vec::new();
    for _ in 0..100 {
        let resp = sign_in(
            &daemon,
            serde_json::json!({"username": dana, "password": "a wrong guess"}),
        )
        .await;
        *statuses.entry(resp.status().as_u16()).or_default() += 1;
        if let Some(wait) = resp.headers().get("retry-after") {
            waits.push(wait.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    // five tries, then each one waits: the guesses after that were never checked
    assert_eq!(statuses, [(401, 5), (429, 95)].into_iter().collect());
    assert!(waits.iter().all(|w| (1..=900).contains(w)), "{waits:?}");
    // the right password too, while the wait lasts (from this address, or for this name)
    let resp = sign_in(
        &daemon,
        serde_json::json!({"username": dana, "password": "a long right password"}),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let error: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "too_many_requests", "{error}");
    // a token still works: the wait is for sign-ins, not for the API
    let (status, _) = daemon.get_raw("/api/v1/apps", Some(&daemon.token)).await;
    assert_eq!(status, 200);
    let log: AuditLog = daemon.get("/api/v1/audit?limit=1000").await;
    let refused = log
        .entries
        .iter()
        .filter(|e| e.path == "/api/v1/session" && e.status == 429)
        .count();
    assert_eq!(refused, 96, "every refusal is audited");
}
