//! API property tests: schemathesis (PyPI, installed by scripts/test) generates requests for
//! every operation of the daemon's own OpenAPI document (positive and negative data, each
//! documented status aimed at) and checks every answer: no 5xx, no status the document does
//! not list, no body or header off its documented schema, no content type it does not name,
//! and no request that breaks the schema accepted, nor one without credentials (every
//! operation that needs them answers 401). As an admin, an operator and a viewer, on an engine
//! of the test's own (what it deploys and removes touches nothing else). A hook records every
//! answer's status: each operation a role may not use must have answered that role 403.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use capstan_model::CreatedToken;
use capstan_testkit::{Daemon, OwnEngine};

use crate::bin;

/// Streams never end (a request waits on them until its timeout) and a build takes a tar
/// archive schemathesis cannot make; both have tests of their own.
const EXCLUDED: &str = "/stream$|/build/";

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,\
                      negative_data_rejection,ignored_auth";

/// `(method, path template, status)` of every answer a run saw.
type Seen = BTreeSet<(String, String, u16)>;

/// Runs schemathesis as `role` for `seconds` on the operations whose path matches `only`: its
/// exit status, output, and the statuses seen.
async fn schemathesis(
    daemon: &Daemon,
    role: &str,
    token: &str,
    seconds: u32,
    only: &str,
) -> (bool, String, Seen) {
    let exe = std::env::var("CAPSTAN_TEST_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_SCHEMATHESIS is not set: run the tests with scripts/test, which installs schemathesis")
    });
    let report = tempfile::tempdir().unwrap();
    let statuses = report.path().join("statuses.ndjson");
    let hooks = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("tests/e2e/schemathesis");
    let out = tokio::process::Command::new(&exe)
        .current_dir(report.path())
        .env("SCHEMATHESIS_HOOKS", "capstan_statuses")
        .env("PYTHONPATH", &hooks)
        .env("CAPSTAN_STATUSES", &statuses)
        .args(["run", &format!("{}/api/v1/openapi.json", daemon.url)])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--exclude-path-regex", EXCLUDED])
        .args(["--include-path-regex", only])
        .args(["--max-examples", "25", "--seed", "7", "--workers", "1"])
        .args(["--max-time", &seconds.to_string()])
        .args(["--request-timeout", "20", "--output-truncate", "true"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Seen = std::fs::read_to_string(&statuses)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<(String, String, u16)>(l).ok())
        .collect();
    eprintln!(
        "schemathesis as {role}: {}; {} distinct (operation, status) answers",
        cases(&text),
        seen.len()
    );
    (out.status.success(), text, seen)
}

/// The operations no run is given (see [`EXCLUDED`]).
fn excluded(path: &str) -> bool {
    path.ends_with("/stream") || path.contains("/build/")
}

/// The run's "N generated" figure.
fn cases(output: &str) -> String {
    output
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1)
        .map_or_else(|| "no count printed".to_owned(), |l| l.trim().to_owned())
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document_own_engine() {
    let mut own = OwnEngine::start().await;
    let _engine = own.engine().await;
    // the built-in alert rules on (a test daemon has them off unless it says `[alerts]`); a
    // fleet hub (its hosts' routes answer); a backup repository restic cannot make (its
    // failures answer as documented)
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), "st-password\n").unwrap();
    let daemon = Daemon::start_with(
        bin(),
        &own.host(),
        &format!(
            "[images]\nwatch = true\n[alerts]\ndefaults = true\n[fleet]\nlisten = \"127.0.0.1:{}\"\n\
             [backups]\nrepository = \"/proc/capstan-none/repo\"\npassword_file = \"{}\"\n",
            capstan_testkit::free_port(),
            password.path().display()
        ),
    )
    .await;
    // the admin runs last: its stateful phase lists the tokens and revokes them (as it may)
    let mut tokens = Vec::new();
    for role in ["viewer", "operator"] {
        let name = capstan_testkit::unique(&format!("st-{role}"));
        let (status, body) = daemon
            .post_raw(
                "/api/v1/tokens",
                &serde_json::json!({"name": name, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let created: CreatedToken = serde_json::from_value(body).unwrap();
        tokens.push((role.to_owned(), created.token, 40));
    }
    tokens.push(("admin".to_owned(), daemon.token.clone(), 60));
    let mut failed = Vec::new();
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for (role, token, seconds) in &tokens {
        let (ok, output, statuses) = schemathesis(&daemon, role, token, *seconds, ".").await;
        if !ok {
            failed.push(format!("=== as {role}:\n{output}"));
        }
        seen.insert(role.clone(), statuses);
    }
    // what config can turn off answers 404 (409 for a capstan that is no fleet hub) then: a
    // daemon with metrics and watching off, and no `[fleet]`
    let off = Daemon::start_with(
        bin(),
        &own.host(),
        "[metrics]\ncollect = false\n[images]\nwatch = false\n",
    )
    .await;
    let (ok, output, statuses) = schemathesis(
        &off,
        "admin, parts off",
        &off.token,
        10,
        "^/api/v1/(metrics|images/updates|hooks/registry|hosts|apps/[^/]+/(backups|restore))",
    )
    .await;
    if !ok {
        failed.push(format!("=== with parts off:\n{output}"));
    }
    seen.insert("off".to_owned(), statuses);
    // the daemon is still whole after all of it
    assert!(
        tokio::time::timeout(Duration::from_secs(10), daemon.health())
            .await
            .is_ok(),
        "the daemon stopped answering"
    );
    seen.insert(
        "made".to_owned(),
        made_on_purpose(&daemon, &off, &mut own).await,
    );
    // every operation above a role answered that role 403; every documented error answer was
    // seen; and how much of what the document lists was seen at all
    let document: serde_json::Value = daemon.get("/api/v1/openapi.json").await;
    let (mut documented, mut reached) = (0, 0);
    let mut not_refused = Vec::new();
    let mut errors_unseen = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if excluded(path) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let needs = op["x-capstan-role"].as_str().unwrap_or("open");
            for status in op["responses"].as_object().unwrap().keys() {
                documented += 1;
                let status: u16 = status.parse().unwrap();
                let key = (method.clone(), path.clone(), status);
                if seen.values().any(|s| s.contains(&key)) {
                    reached += 1;
                } else if status >= 400 && status != 401 {
                    errors_unseen.push(format!("{method} {path} {status}"));
                }
            }
            let below: &[&str] = match needs {
                "admin" => &["operator", "viewer"],
                "operator" => &["viewer"],
                _ => &[],
            };
            for role in below {
                if !seen[*role].contains(&(method.clone(), path.clone(), 403)) {
                    not_refused.push(format!("{method} {path} as {role}"));
                }
            }
        }
    }
    eprintln!(
        "documented (operation, status) answers seen: {reached} of {documented} \
         (401 for each is checked separately, by ignored_auth); error answers not seen: {}",
        errors_unseen.join(", ")
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(not_refused.is_empty(), "not answered 403: {not_refused:?}");
    assert!(
        errors_unseen.is_empty(),
        "documented error answers never seen: {errors_unseen:?}"
    );
}

/// Signs a delivery's body with the app's hook secret (the signature header's value).
type Signer<'a> = &'a dyn Fn(&[u8]) -> String;

/// The build a signed push of `commit` to st-hooked queues, its source set to `repository`
/// first, once it is `status`.
async fn pushed(
    daemon: &Daemon,
    http: &reqwest::Client,
    (hook_url, signed): (&str, Signer<'_>),
    repository: &str,
    commit: &str,
    status: &str,
) -> i64 {
    let (code, _) = daemon
        .put_raw(
            "/api/v1/apps/st-hooked/source",
            &serde_json::json!({ "repository": repository }),
        )
        .await;
    assert_eq!(code, 200);
    let push = format!(r#"{{"ref":"refs/heads/main","after":"{commit}","commits":[]}}"#);
    let queued: serde_json::Value = http
        .post(hook_url)
        .header("x-hub-signature-256", signed(push.as_bytes()))
        .header("x-github-event", "push")
        .body(push)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let build = queued["build"]
        .as_i64()
        .unwrap_or_else(|| panic!("{queued}"));
    capstan_testkit::eventually(Duration::from_secs(30), "the build's state", || async {
        let b: capstan_model::Build = daemon.get(&format!("/api/v1/builds/{build}")).await;
        (b.status == status).then_some(())
    })
    .await;
    build
}

/// A deploy of `compose` as `app` sent in the background: its status once it ends.
fn deploy_in_background(
    daemon: &Daemon,
    app: &str,
    compose: String,
) -> tokio::task::JoinHandle<reqwest::Result<u16>> {
    let (url, token) = (
        format!("{}/api/v1/apps/{app}/deploy", daemon.url),
        daemon.token.clone(),
    );
    tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(compose)
            .send()
            .await
            .map(|r| r.status().as_u16())
    })
}

/// Deploys `compose` as `app`, to its end.
async fn deployed(daemon: &Daemon, app: &str, compose: &str) {
    let (status, said) = daemon
        .post_text(
            &format!("/api/v1/apps/{app}/deploy"),
            "application/yaml",
            compose.to_owned(),
        )
        .await;
    assert_eq!(status, 200, "{said}");
}

/// The exec WebSocket's upgrade of `path` with `token`: the status it answers.
async fn upgrade(daemon: &Daemon, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}{path}", daemon.url))
        .bearer_auth(token)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "capstan.exec")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The day-two routes' answers generated requests cannot reach (st-slow has a release by now,
/// deployed from `compose`): each waits its turn while a deploy runs (409), a replica that
/// does not come back (422), an exec into a replica that is not there or not running, and an
/// operator's into an app the policy keeps for admins.
async fn day_two(daemon: &Daemon, compose: &str, note: &mut impl FnMut(&str, &str, u16)) {
    let post = |path: String, body: serde_json::Value| async move {
        daemon.post_raw(&path, &body).await.0
    };
    // while a deploy of st-slow waits on its health check, what else changes it waits: 409
    let changed = compose.replace(
        "    command:",
        "    environment: {ROUND: \"2\"}\n    command:",
    );
    let deploying = deploy_in_background(daemon, "st-slow", changed);
    capstan_testkit::eventually(Duration::from_secs(30), "release 2's replica", || async {
        let list: capstan_model::ContainerList =
            daemon.get("/api/v1/containers?all=true&app=st-slow").await;
        list.containers
            .iter()
            .any(|c| c.labels.get("io.capstan.release").map(String::as_str) == Some("2"))
            .then_some(())
    })
    .await;
    let one = serde_json::json!({"replicas": {"web": 1}});
    note(
        "POST",
        "/api/v1/apps/{app}/scale",
        post("/api/v1/apps/st-slow/scale".into(), one.clone()).await,
    );
    for op in ["stop", "start", "restart"] {
        let status = post(format!("/api/v1/apps/st-slow/{op}"), serde_json::json!({})).await;
        note("POST", &format!("/api/v1/apps/{{app}}/{op}"), status);
    }
    assert_eq!(
        deploying.await.unwrap().ok(),
        Some(200),
        "release 2 of st-slow"
    );
    // what the app does not have: 400 and 404
    let unknown = serde_json::json!({"replicas": {"nope": 1}});
    note(
        "POST",
        "/api/v1/apps/{app}/scale",
        post("/api/v1/apps/st-slow/scale".into(), unknown).await,
    );
    note(
        "POST",
        "/api/v1/apps/{app}/scale",
        post("/api/v1/apps/st-none/scale".into(), one).await,
    );
    for op in ["stop", "start", "restart"] {
        let status = post(
            format!("/api/v1/apps/st-slow/{op}?service=nope"),
            serde_json::json!({}),
        )
        .await;
        note("POST", &format!("/api/v1/apps/{{app}}/{op}"), status);
    }
    let (status, _) = daemon
        .post_raw("/api/v1/images/prune?keep=0", &serde_json::json!({}))
        .await;
    note("POST", "/api/v1/images/prune", status);
    // a replica that exits once it has run before: restarted or started, it does not come back
    let dies = "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sh\", \"-c\", \"[ -f /ran ] && exit 1; echo > /ran; exec sleep 600\"]\n";
    deployed(daemon, "st-dies", dies).await;
    let restarted = post("/api/v1/apps/st-dies/restart".into(), serde_json::json!({})).await;
    note("POST", "/api/v1/apps/{app}/restart", restarted);
    let started = post("/api/v1/apps/st-dies/start".into(), serde_json::json!({})).await;
    note("POST", "/api/v1/apps/{app}/start", started);
    // a backup and a restore of a running app, the repository one restic cannot make: 422
    let kept = "services:\n  db:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"600\"]\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {}\n";
    deployed(daemon, "st-kept", kept).await;
    let backed = post("/api/v1/apps/st-kept/backups".into(), serde_json::json!({})).await;
    note("POST", "/api/v1/apps/{app}/backups", backed);
    let restored = post(
        "/api/v1/apps/st-kept/restore".into(),
        serde_json::json!({"snapshot": "0123abcd"}),
    )
    .await;
    note("POST", "/api/v1/apps/{app}/restore", restored);
    // exec: a replica that is not there (404), one that is not running (409)
    let path = "/api/v1/apps/{app}/exec";
    let status = upgrade(
        daemon,
        "/api/v1/apps/st-slow/exec?service=web&replica=9&cmd=true",
        &daemon.token,
    )
    .await;
    note("GET", path, status);
    let status = upgrade(
        daemon,
        "/api/v1/apps/st-dies/exec?service=web&cmd=true",
        &daemon.token,
    )
    .await;
    note("GET", path, status);
    // an operator, into an app with a host directory bound in (an admin's deploy): 403
    let dir = tempfile::tempdir().unwrap();
    let bound = format!(
        "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"600\"]\n    volumes: [\"{}:/data:ro\"]\n",
        dir.path().display()
    );
    deployed(daemon, "st-bound", &bound).await;
    let (_, body) = daemon
        .post_raw(
            "/api/v1/tokens",
            &serde_json::json!({"name": capstan_testkit::unique("st-ops"), "role": "operator"}),
        )
        .await;
    let operator = body["token"].as_str().unwrap().to_owned();
    let status = upgrade(
        daemon,
        "/api/v1/apps/st-bound/exec?service=web&cmd=true",
        &operator,
    )
    .await;
    note("GET", path, status);
}

/// The error answers generated requests cannot reach, each made on purpose: a signed-in
/// change without its CSRF token, a built-in rule's removal, an allowance that is not there, a
/// registry never logged in to and one that cannot be reached, a
/// registry hook's bad body (with its secret), a deploy while the app rolls out, a test of a
/// rule whose source is off (on `off`, the daemon with metrics off), and what the daemon
/// answers once its engine has stopped (the engine is stopped at the end).
async fn made_on_purpose(daemon: &Daemon, off: &Daemon, own: &mut OwnEngine) -> Seen {
    let mut made = Seen::new();
    let mut note = |method: &str, path: &str, status: u16| {
        eprintln!("made on purpose: {method} {path} {status}");
        made.insert((method.to_owned(), path.to_owned(), status));
    };
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", daemon.url);
    // a session, signed in with a fresh viewer token; its changes without X-CSRF-Token. On
    // `off`, whose sign-ins schemathesis never tried: the generated ones, failing from this
    // address, may have made it wait (the answers are keyed by operation, not daemon)
    let session_url = |path: &str| format!("{}{path}", off.url);
    let (_, body) = off
        .post_raw(
            "/api/v1/tokens",
            &serde_json::json!({"name": capstan_testkit::unique("st-session"), "role": "viewer"}),
        )
        .await;
    let viewer: CreatedToken = serde_json::from_value(body).unwrap();
    let (cookie, _) = crate::day2::session(off, &viewer.token).await;
    for (method, path, template) in [
        (
            "POST",
            "/api/v1/apps/st-app/plan",
            "/api/v1/apps/{app}/plan",
        ),
        (
            "POST",
            "/api/v1/apps/st-app/render",
            "/api/v1/apps/{app}/render",
        ),
        (
            "POST",
            "/api/v1/alerts/rules/oom/test",
            "/api/v1/alerts/rules/{name}/test",
        ),
        ("DELETE", "/api/v1/session", "/api/v1/session"),
    ] {
        let status = http
            .request(method.parse().unwrap(), session_url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        note(method, template, status);
    }
    // a query parameter a route does not take is refused before anything is done (generated
    // requests send one only now and then): every operation that takes a query is sent one,
    // its path's names filled with ones nothing has
    let document: serde_json::Value = daemon.get("/api/v1/openapi.json").await;
    for (path, item) in document["paths"].as_object().unwrap() {
        let filled = path
            .replace("{id}", "1")
            .replace("{service}", "web")
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "st-none"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let takes_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if op["responses"].get("400").is_none() {
                continue;
            }
            let method = method.to_uppercase();
            // and a name no app may have (upper case, a space), refused for what it is
            let mut asked = Vec::new();
            if takes_query {
                asked.push(format!("{filled}?st-unknown=1"));
            }
            if path.contains("{app}") {
                asked.push(filled.replacen("st-none", "Bad%20Name", 1));
            }
            for asked in asked {
                let status = http
                    .request(method.parse().unwrap(), url(&asked))
                    .bearer_auth(&daemon.token)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                note(&method, path, status);
            }
        }
    }
    // a token that is not there, and one whose name is taken
    let (status, _) = daemon.delete_raw("/api/v1/tokens/st-no-such-token").await;
    note("DELETE", "/api/v1/tokens/{name}", status);
    let named = serde_json::json!({"name": capstan_testkit::unique("st-taken"), "role": "viewer"});
    let (first, _) = daemon.post_raw("/api/v1/tokens", &named).await;
    assert_eq!(first, 201);
    let (status, _) = daemon.post_raw("/api/v1/tokens", &named).await;
    note("POST", "/api/v1/tokens", status);
    // a built-in rule is the daemon's, not the API's
    let (status, _) = daemon.delete_raw("/api/v1/alerts/rules/oom").await;
    note("DELETE", "/api/v1/alerts/rules/{name}", status);
    // a rule that is not there, removed and tested (generated names rarely miss every rule's
    // name in a way the run is sure to try)
    let (status, _) = daemon
        .delete_raw("/api/v1/alerts/rules/st-no-such-rule")
        .await;
    note("DELETE", "/api/v1/alerts/rules/{name}", status);
    let (status, _) = daemon
        .post_raw(
            "/api/v1/alerts/rules/st-no-such-rule/test",
            &serde_json::json!({}),
        )
        .await;
    note("POST", "/api/v1/alerts/rules/{name}/test", status);
    // a metric rule where no metrics are kept cannot be tested
    let (status, body) = off
        .post_raw(
            "/api/v1/alerts/rules",
            &serde_json::json!({"name": "st-cpu", "expr": "container_cpu_usage_seconds_total > 1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = off
        .post_raw("/api/v1/alerts/rules/st-cpu/test", &serde_json::json!({}))
        .await;
    note("POST", "/api/v1/alerts/rules/{name}/test", status);
    // an allowance never given
    let (status, _) = daemon
        .delete_raw("/api/v1/policy/st-app?feature=privileged")
        .await;
    note("DELETE", "/api/v1/policy/{app}", status);
    // a scan of an image neither the engine nor its registry has (generated names point at
    // Docker Hub, which this machine's resolver answers at once or after 10 s)
    let (status, _) = daemon
        .post_raw(
            &format!(
                "/api/v1/images/scan?image={}/capt/st-none:1",
                capstan_testkit::registry()
            ),
            &serde_json::json!({}),
        )
        .await;
    note("POST", "/api/v1/images/scan", status);
    // a logout of a registry never logged in to, and a login to one that cannot be reached
    // (generated names are rarely registries, and are sent to a loopback port by the hook)
    let (status, _) = daemon.delete_raw("/api/v1/registries/127.0.0.1:9").await;
    note("DELETE", "/api/v1/registries/{registry}", status);
    let (status, _) = daemon
        .post_raw(
            "/api/v1/registries/127.0.0.1:9",
            &serde_json::json!({"username": "u", "password": "p"}),
        )
        .await;
    note("POST", "/api/v1/registries/{registry}", status);
    // the registry hook's secret, with a body that is no notification
    let shown = tokio::process::Command::new(bin())
        .args(["secrets", "show", "registry-hook", "--data"])
        .arg(daemon.data_dir())
        .output()
        .await
        .unwrap();
    let secret = String::from_utf8(shown.stdout).unwrap().trim().to_owned();
    let status = http
        .post(url(&format!("/api/v1/hooks/registry?secret={secret}")))
        .body("not a notification")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    note("POST", "/api/v1/hooks/registry", status);
    // an app's git hook: a signed body that is no provider's payload, and one too big to read
    let (status, hook) = daemon
        .post_raw("/api/v1/apps/st-hooked/hooks", &serde_json::json!({}))
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let signed = |body: &[u8]| {
        format!(
            "sha256={}",
            capstan_pipeline::signature::sign_hex(&secret, body)
        )
    };
    let status = http
        .post(url("/api/v1/hooks/git/st-hooked"))
        .header("x-hub-signature-256", signed(b"not json"))
        .header("x-github-event", "push")
        .body("not json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    note("POST", "/api/v1/hooks/git/{app}", status);
    // a build that ended (the app was never deployed): cancelling it is a conflict
    let hook_url = url("/api/v1/hooks/git/st-hooked");
    let build = pushed(
        daemon,
        &http,
        (&hook_url, &signed),
        "git://127.0.0.1:9/none.git",
        "0123456789012345678901234567890123456789",
        "failed",
    )
    .await;
    let (status, _) = daemon
        .post_raw(
            &format!("/api/v1/builds/{build}/cancel"),
            &serde_json::json!({}),
        )
        .await;
    note("POST", "/api/v1/builds/{id}/cancel", status);
    // running it again queues its commit anew; a build that runs still (the app deployed, its
    // fetch held by a server that never answers) cannot be run again yet
    let (status, again) = daemon
        .post_raw(
            &format!("/api/v1/builds/{build}/retry"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(again["detail"]["retry_of"], build, "{again}");
    note("POST", "/api/v1/builds/{id}/retry", status);
    let (status, said) = daemon
        .post_text(
            "/api/v1/apps/st-hooked/deploy",
            "application/yaml",
            "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"600\"]\n".to_owned(),
        )
        .await;
    assert_eq!(status, 200, "{said}");
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held = pushed(
        daemon,
        &http,
        (&hook_url, &signed),
        &format!("git://{}/none.git", silent.local_addr().unwrap()),
        "1123456789012345678901234567890123456789",
        "running",
    )
    .await;
    let (status, _) = daemon
        .post_raw(
            &format!("/api/v1/builds/{held}/retry"),
            &serde_json::json!({}),
        )
        .await;
    note("POST", "/api/v1/builds/{id}/retry", status);
    let (status, said) = daemon
        .post_raw(
            &format!("/api/v1/builds/{held}/cancel"),
            &serde_json::json!({}),
        )
        .await;
    if status != 200 {
        let builds: serde_json::Value = daemon.get("/api/v1/builds?app=st-hooked").await;
        panic!("a running build is cancelled: {status} {said}; the app's builds: {builds}");
    }
    drop(silent);
    let big = vec![b' '; capstan_pipeline::MAX_BODY + 1];
    let status = http
        .post(url("/api/v1/hooks/git/st-hooked"))
        .header("x-hub-signature-256", signed(&big))
        .body(big)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    note("POST", "/api/v1/hooks/git/{app}", status);
    // a deploy while the app's first one waits on a slow health check
    let compose = "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"600\"]\n    healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"sleep 3\"]\n      interval: 1s\n      timeout: 10s\n";
    let first = deploy_in_background(daemon, "st-slow", compose.to_owned());
    // its replica made, the first deploy holds the app while the check takes its 3 s
    capstan_testkit::eventually(Duration::from_secs(30), "the app's replica", || async {
        let list: capstan_model::ContainerList =
            daemon.get("/api/v1/containers?all=true&app=st-slow").await;
        (!list.containers.is_empty()).then_some(())
    })
    .await;
    let (second, _) = daemon
        .post_text(
            "/api/v1/apps/st-slow/deploy",
            "application/yaml",
            compose.to_owned(),
        )
        .await;
    note("POST", "/api/v1/apps/{app}/deploy", second);
    assert_eq!(first.await.unwrap().ok(), Some(200), "the first deploy");
    day_two(daemon, compose, &mut note).await;
    // failed sign-ins until the next must wait (the generated ones reach six for one name only
    // now and then); last of the sign-ins: this address waits from now on
    let mut status = 0;
    for _ in 0..10 {
        status = http
            .post(url("/api/v1/session"))
            .json(&serde_json::json!({"username": "st-nobody", "password": "wrong"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 429 {
            break;
        }
    }
    note("POST", "/api/v1/session", status);
    // the engine gone: what needs it says so
    own.stop().await;
    for path in ["/api/v1/containers", "/api/v1/security"] {
        let (status, _) = daemon.get_raw(path, Some(&daemon.token)).await;
        note("GET", path, status);
    }
    made
}
