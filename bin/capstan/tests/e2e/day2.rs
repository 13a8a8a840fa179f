//! Day-two commands on a deployed app, through the real CLI against the real engine: `scale`
//! is a release of its own in the ledger; `stop` keeps a service stopped across self-healing
//! (which does restart another service's replica stopped behind capstan's back in the same
//! pass); `start` brings it back; `restart` restarts each replica in place, one at a time;
//! wrong names and numbers are refused with exit 2 and nothing changed; a viewer may do none
//! of it (403), and each change is in the audit log.

use std::time::Duration;

use capstan_model::{Operated, Release};
use capstan_testkit::{Daemon, eventually, unique};

use crate::bin;

/// A worker with one replica and a web service, both `restart: always` (so that self-healing
/// would start an exited replica again).
const APP: &str = "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n    init: true\n    restart: always\n    stop_grace_period: 1s\n  worker:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n    init: true\n    restart: always\n    stop_grace_period: 1s\n";

/// Writes `compose` as `compose.yaml` in `dir` and deploys it as `app` (exit 0 asserted).
async fn deploy(daemon: &Daemon, dir: &std::path::Path, app: &str, compose: &str) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, _, err) = daemon
        .cli_in(dir, &["deploy", "-f", "compose.yaml", "-p", app], &[])
        .await;
    assert_eq!(code, 0, "{err}");
}

/// Signs in to `daemon` with `token` over the API: the session's cookie and CSRF token.
pub(crate) async fn session(daemon: &Daemon, token: &str) -> (String, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/session", daemon.url))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .filter(|c| c.starts_with("capstan_session="))
        })
        .unwrap()
        .to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// One service, `web`, sleeping.
const WEB: &str = "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n    init: true\n";
const BUSYBOX_IMAGE: &str = "capstan-test/busybox:1";

async fn releases(daemon: &Daemon, app: &str) -> Vec<Release> {
    let (code, out, err) = daemon.cli(&["releases", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The app's replicas of `service` on the engine: (name, state), by name.
async fn replicas(
    engine: &capstan_engine::Engine,
    app: &str,
    service: &str,
) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = engine
        .list_containers(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            capstan_testkit::replica_of(c, app)
                && c.labels.get("io.capstan.service").map(String::as_str) == Some(service)
        })
        .map(|c| (c.name, c.state))
        .collect();
    found.sort();
    found
}

/// The app's `heal` events in the journal.
async fn heals(daemon: &Daemon, app: &str) -> Vec<capstan_model::Event> {
    daemon
        .all_events("type=capstan&action=heal")
        .await
        .into_iter()
        .filter(|e| e.attributes.get("app").map(String::as_str) == Some(app))
        .collect()
}

fn operated(out: &str) -> Operated {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn scale_is_a_release_a_stopped_service_stays_stopped_and_restart_goes_one_by_one() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-day2");
    deploy(&daemon, dir.path(), &app, APP).await;

    // scale up and down: each a release whose source says what changed
    for (to, from, number) in [(3, 1, 2), (2, 3, 3)] {
        let (code, out, err) = daemon
            .cli(&["scale", &app, &format!("web={to}"), "-o", "json"])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        let ledger = releases(&daemon, &app).await;
        assert_eq!(ledger.len(), number, "{ledger:?}");
        assert_eq!(ledger[0].result, "succeeded");
        assert_eq!(
            ledger[0].source["scale"]["web"],
            serde_json::json!({"from": from, "to": to}),
            "{:?}",
            ledger[0].source
        );
        let web = replicas(&engine, &app, "web").await;
        assert_eq!(web.len(), to as usize, "{web:?}");
        assert!(web.iter().all(|(_, s)| s == "running"), "{web:?}");
    }

    // bad input: exit 2, and the ledger is as it was
    for (args, says) in [
        (vec!["scale", &app, "nope=2"], "no service \"nope\""),
        (vec!["scale", &app, "web=many"], "not a number of replicas"),
        (vec!["scale", &app, "web=1001"], "more than 1000"),
        (vec!["scale", "capt-day2-none", "web=1"], "runs no release"),
        (vec!["stop", &app, "nope"], "no service \"nope\""),
        (
            vec!["stop", &app, "web", "--replica", "3"],
            "there is no replica 3",
        ),
        (
            vec!["restart", &app, "web", "--replica", "0"],
            "there is no replica 0",
        ),
    ] {
        let (code, out, err) = daemon.cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(releases(&daemon, &app).await.len(), 3);

    // a viewer may look, not change: 403, nothing stopped
    let (_, body) = daemon
        .post_raw(
            "/api/v1/tokens",
            &serde_json::json!({"name": unique("day2-viewer"), "role": "viewer"}),
        )
        .await;
    let viewer = body["token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    for path in ["stop", "start", "restart", "scale"] {
        let status = http
            .post(format!("{}/api/v1/apps/{app}/{path}", daemon.url))
            .bearer_auth(&viewer)
            .json(&serde_json::json!({"replicas": {"web": 1}}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{path}");
    }

    // stop the web service: both replicas stop and stay stopped
    let (code, out, err) = daemon.cli(&["stop", &app, "web", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let stopped = operated(&out);
    assert_eq!(stopped.replicas.len(), 2, "{stopped:?}");
    assert!(
        stopped
            .replicas
            .iter()
            .all(|r| r.done == "stopped" && r.state == "exited"),
        "{stopped:?}"
    );
    // the worker's container stopped behind capstan's back: self-healing starts it again,
    // and the pass that does so leaves the stopped web service alone
    let worker = replicas(&engine, &app, "worker").await;
    capstan_testkit::docker(engine.host(), &["stop", "-t", "1", &worker[0].0]);
    let healed = eventually(Duration::from_mins(1), "the worker healed", || async {
        let healed = heals(&daemon, &app).await;
        (!healed.is_empty()).then_some(healed)
    })
    .await;
    assert!(
        healed.iter().all(|e| e.attributes["service"] == "worker"),
        "{healed:?}"
    );
    // and one more pass (every 10 s) for good measure
    tokio::time::sleep(Duration::from_secs(12)).await;
    let web = replicas(&engine, &app, "web").await;
    assert!(
        web.iter().all(|(_, s)| s == "exited"),
        "healed back: {web:?}"
    );
    let healed = heals(&daemon, &app).await;
    assert!(
        healed.iter().all(|e| e.attributes["service"] == "worker"),
        "{healed:?}"
    );

    // start one replica of the stopped service: the other stays stopped
    let (code, out, err) = daemon
        .cli(&["start", &app, "web", "--replica", "2", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let started = operated(&out);
    assert_eq!(started.replicas.len(), 1);
    assert_eq!(
        (
            started.replicas[0].replica,
            started.replicas[0].state.as_str()
        ),
        (2, "running")
    );
    let (code, out, err) = daemon.cli(&["start", &app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let all = operated(&out);
    let done: Vec<(&str, u32, &str)> = all
        .replicas
        .iter()
        .map(|r| (r.service.as_str(), r.replica, r.done.as_str()))
        .collect();
    assert_eq!(
        done,
        vec![
            ("web", 1, "started"),
            ("web", 2, "already running"),
            ("worker", 1, "already running")
        ]
    );

    // a rolling restart: same containers, each started again, one after the other
    let started_at = |name: &str| {
        capstan_testkit::docker(
            engine.host(),
            &["inspect", "-f", "{{.State.StartedAt}}", name],
        )
        .trim()
        .to_owned()
    };
    let web = replicas(&engine, &app, "web").await;
    let before: Vec<String> = web.iter().map(|(n, _)| started_at(n)).collect();
    let (code, out, err) = daemon.cli(&["restart", &app, "web", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let restarted = operated(&out);
    assert_eq!(restarted.replicas.len(), 2);
    assert!(
        restarted
            .replicas
            .iter()
            .all(|r| r.done == "restarted" && r.state == "running")
    );
    let after: Vec<String> = web.iter().map(|(n, _)| started_at(n)).collect();
    assert!(
        before[0] != after[0] && before[1] != after[1],
        "{before:?} {after:?}"
    );
    // one by one: the second started after the first was back
    assert!(after[0] < after[1], "{after:?}");

    // a release ends a deliberate stop: stopped again, then scaled, it runs
    let (code, _, err) = daemon.cli(&["stop", &app, "worker"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = daemon.cli(&["scale", &app, "worker=2"]).await;
    assert_eq!(code, 0, "{err}");
    let worker = replicas(&engine, &app, "worker").await;
    assert_eq!(worker.len(), 2, "{worker:?}");
    assert!(worker.iter().all(|(_, s)| s == "running"), "{worker:?}");

    // the audit log names each change
    let (code, out, err) = daemon.cli(&["audit", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    for op in ["stop", "start", "restart", "scale"] {
        assert!(
            out.contains(&format!("/api/v1/apps/{app}/{op}")),
            "{op} is not audited: {out}"
        );
    }
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}

/// `capstan exec` under `script`, which gives it a pseudo-terminal: `input` is typed once the
/// output shows `after`; the exit code and everything it printed.
async fn exec_in_pty(daemon: &Daemon, args: &str, after: &str, input: &str) -> (i32, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut child = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", bin().display()))
        .arg("/dev/null")
        .env("CAPSTAN_URL", &daemon.url)
        .env("CAPSTAN_TOKEN", &daemon.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0_u8; 4096];
    // the prompt comes without a newline: it must show before any input is typed
    tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains(after) {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the output ended before {after:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {after:?} in: {}", String::from_utf8_lossy(&seen)));
    stdin.write_all(input.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    stdout.read_to_end(&mut seen).await.unwrap();
    let status = child.wait().await.unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}

#[tokio::test]
async fn exec_passes_output_input_and_exit_codes_through_and_a_terminal_unbuffered() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let (app, host_app) = (unique("capt-exec"), unique("capt-exec-root"));
    deploy(&daemon, dir.path(), &app, WEB).await;
    // a host directory bound in: an admin's deploy, past what an operator may deploy
    let bound = format!(
        "services:\n  root:\n    image: capstan-test/busybox:1\n    command: [\"sleep\", \"3600\"]\n    init: true\n    volumes: [\"{}:/data:ro\"]\n",
        dir.path().display()
    );
    deploy(&daemon, dir.path(), &host_app, &bound).await;

    // stdout and stderr apart, and the exit code passed through
    let (code, out, err) = daemon
        .cli(&[
            "exec",
            &app,
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    // input from a pipe, to its end
    let (code, out, err) = daemon
        .cli_with_input(
            &["exec", "-i", &app, "web", "--", "busybox", "wc", "-l"],
            "a\nb\nc\n",
        )
        .await;
    assert_eq!((code, out.trim()), (0, "3"), "{err}");
    // a command that is not there: the engine's code for it
    let (code, out, err) = daemon
        .cli(&["exec", &app, "web", "--", "no-such-command"])
        .await;
    assert!(matches!(code, 126 | 127), "{code}: {out}{err}");

    // a terminal: a prompt without a newline shows at once, the input is echoed by the
    // terminal, the command sees a tty
    let (code, out) = exec_in_pty(
        &daemon,
        &format!(
            "exec -it {app} web -- sh -c 'busybox tty; printf \"ready> \"; read x; echo got:$x; exit 5'"
        ),
        "ready> ",
        "abc\r",
    )
    .await;
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("got:abc"), "{out}");
    // -t without a terminal is refused
    let (code, _, err) = daemon.cli(&["exec", "-t", &app, "web", "--", "true"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-t needs a terminal"), "{err}");

    // bad input: exit 2, with what there is
    let (code, _, err) = daemon
        .cli(&["exec", &app, "web", "--replica", "5", "--", "true"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no replica 5 of service \"web\" (it has: web 1)"),
        "{err}"
    );
    let (code, _, err) = daemon
        .cli(&["exec", "capt-exec-none", "web", "--", "true"])
        .await;
    assert_eq!(code, 2, "{err}");

    // roles: a viewer may not; an operator may not into an app the policy keeps for admins
    let token = |role: &'static str| {
        let daemon = &daemon;
        async move {
            let (_, body) = daemon
                .post_raw(
                    "/api/v1/tokens",
                    &serde_json::json!({"name": unique(&format!("exec-{role}")), "role": role}),
                )
                .await;
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let (viewer, operator) = (token("viewer").await, token("operator").await);
    let as_who = |token: String, app: String| {
        let daemon = &daemon;
        async move {
            daemon
                .cli_in(
                    std::path::Path::new("."),
                    &[
                        "exec",
                        &app,
                        if app.contains("root") { "root" } else { "web" },
                        "--",
                        "busybox",
                        "id",
                        "-u",
                    ],
                    &[("CAPSTAN_TOKEN", &token)],
                )
                .await
        }
    };
    let (code, _, err) = as_who(viewer, app.clone()).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs the operator role"), "{err}");
    let (code, out, err) = as_who(operator.clone(), app.clone()).await;
    assert_eq!((code, out.trim()), (0, "0"), "{err}");
    let (code, _, err) = as_who(operator, host_app.clone()).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("needs an admin") && err.contains("services.root.volumes: a bind mount"),
        "{err}"
    );
    let (code, out, err) = daemon
        .cli(&["exec", &host_app, "root", "--", "busybox", "id", "-u"])
        .await;
    assert_eq!((code, out.trim()), (0, "0"), "an admin may: {err}");

    // each exec is in the audit log, command and all
    let (code, out, err) = daemon.cli(&["audit", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "/api/v1/apps/{app}/exec?service=web&replica=1&cmd=sh&cmd=-c"
        )),
        "{out}"
    );
    for name in [&app, &host_app] {
        let (code, _, err) = daemon.cli(&["down", name]).await;
        assert_eq!(code, 0, "{err}");
    }
}

/// The exec WebSocket's upgrade, signed in with `cookie`, offering `protocols`: the status.
async fn upgrade_status(daemon: &Daemon, path: &str, cookie: &str, protocols: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}{path}", daemon.url))
        .header("cookie", cookie)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", protocols)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_container_page_has_a_terminal_for_operators_and_a_page_without_csrf_gets_none() {
    use crate::dashboard::{click, goto, present, shoot, sign_in_with_token, text_of, wait_text};
    use fantoccini::Locator;
    use fantoccini::key::Key;
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-term");
    deploy(&daemon, dir.path(), &app, WEB).await;
    let (web, _) = replicas(&engine, &app, "web").await.remove(0);

    let browser = capstan_testkit::Browser::start().await;
    let client = browser.client(1280, 900).await;
    sign_in_with_token(&client, &daemon).await;
    goto(&client, &daemon, &format!("#/containers/{web}")).await;
    present(&client, "#term-form").await;
    click(&client, "#term-form button[type=submit]").await;
    wait_text(&client, "#term-status", "Connected: sh").await;
    // typed into the terminal (its input is xterm's textarea), run in the replica
    let typing = client
        .find(Locator::Css(".xterm-helper-textarea"))
        .await
        .unwrap();
    typing
        .send_keys(&format!("echo capstan-$((6*7)){}", Key::Enter))
        .await
        .unwrap();
    wait_text(&client, "#term", "capstan-42").await;
    shoot(&client, "terminal").await;
    let typing = client
        .find(Locator::Css(".xterm-helper-textarea"))
        .await
        .unwrap();
    typing
        .send_keys(&format!("exit 3{}", Key::Enter))
        .await
        .unwrap();
    wait_text(&client, "#term-status", "Exited with code 3").await;

    // a viewer's page has no terminal
    let (_, body) = daemon
        .post_raw(
            "/api/v1/tokens",
            &serde_json::json!({"name": unique("term-viewer"), "role": "viewer"}),
        )
        .await;
    let viewer = body["token"].as_str().unwrap().to_owned();
    client.delete_all_cookies().await.unwrap();
    goto(&client, &daemon, "").await;
    present(&client, "#signin").await;
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&format!("{viewer}{}", Key::Enter))
        .await
        .unwrap();
    present(&client, "#signout").await;
    goto(&client, &daemon, &format!("#/containers/{web}")).await;
    present(&client, "#h-clogs").await;
    assert!(
        client.find(Locator::Css("#term-form")).await.is_err(),
        "a viewer is offered a terminal: {}",
        text_of(&client, "#main").await
    );

    // the WebSocket itself: a signed-in page must offer the session's CSRF token
    let (cookie, csrf) = session(&daemon, &daemon.token).await;
    let (cookie, csrf) = (cookie.as_str(), csrf.as_str());
    let path = format!("/api/v1/apps/{app}/exec?service=web&cmd=true");
    assert_eq!(
        upgrade_status(&daemon, &path, cookie, "capstan.exec").await,
        403
    );
    assert_eq!(
        upgrade_status(&daemon, &path, cookie, "capstan.exec, capstan.csrf.wrong").await,
        403
    );
    assert_eq!(
        upgrade_status(
            &daemon,
            &path,
            cookie,
            &format!("capstan.exec, capstan.csrf.{csrf}")
        )
        .await,
        101
    );
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn prune_removes_only_old_images_capstan_brought_and_a_deploy_pulls_one_back() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let registry =
        capstan_testkit::Registry::start(capstan_testkit::RegistryOptions::default()).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let repo = format!("{}/{}", registry.host(), unique("capt-prune"));
    let app = unique("capt-prune");
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    // five releases, each on an image of its own from the registry
    for v in 1..=5 {
        let image = format!("{repo}:v{v}");
        crate::updates::push_version_as(&engine, &image, &format!("{v}.0"), false, None).await;
        ids.push(engine.inspect_image(&image).await.unwrap().unwrap().id);
        deploy(
            &daemon,
            dir.path(),
            &app,
            &WEB.replace(BUSYBOX_IMAGE, &image),
        )
        .await;
    }
    // v2 is also someone else's; an image capstan never deployed is nobody's business
    let theirs = format!("{}:kept", unique("capt-theirs"));
    engine.tag(&ids[1], &theirs).await.unwrap();
    let mine = format!("{}:1", unique("capt-mine"));
    engine.tag(capstan_testkit::BUSYBOX, &mine).await.unwrap();

    // a dry run says what would go and removes nothing
    let (code, out, err) = daemon
        .cli(&["images", "prune", "--keep", "2", "--dry-run", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let dry: capstan_model::PruneReport = serde_json::from_str(&out).unwrap();
    let removed: Vec<&str> = dry.removed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(removed.len(), 2, "{dry:?}");
    assert!(
        removed.contains(&ids[0].as_str()) && removed.contains(&ids[2].as_str()),
        "{dry:?}"
    );
    assert_eq!(dry.left.len(), 1, "{dry:?}");
    assert_eq!(dry.left[0].id, ids[1]);
    assert!(dry.left[0].reason.contains(&theirs), "{dry:?}");
    assert!(engine.inspect_image(&ids[0]).await.unwrap().is_some());

    // bad input: exit 2, nothing removed
    let (code, _, err) = daemon.cli(&["images", "prune", "--keep", "0"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("keep at least 1"), "{err}");

    // the prune: v1 and v3 go, journaled; the last two releases', v2 (tagged by another) and
    // the image capstan never deployed stay
    let (code, out, err) = daemon
        .cli(&["images", "prune", "--keep", "2", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let done: capstan_model::PruneReport = serde_json::from_str(&out).unwrap();
    assert_eq!(done.removed.len(), 2, "{done:?}");
    assert!(done.reclaimed > 0);
    for (i, gone) in [(0, true), (1, false), (2, true), (3, false), (4, false)] {
        assert_eq!(
            engine.inspect_image(&ids[i]).await.unwrap().is_none(),
            gone,
            "v{}",
            i + 1
        );
    }
    assert!(engine.inspect_image(&mine).await.unwrap().is_some());
    assert!(
        engine
            .inspect_image(capstan_testkit::BUSYBOX)
            .await
            .unwrap()
            .is_some()
    );
    let journaled: Vec<String> = daemon
        .all_events("type=capstan&action=image_pruned")
        .await
        .into_iter()
        .filter(|e| e.attributes.get("apps").is_some_and(|a| a.contains(&app)))
        .map(|e| e.actor)
        .collect();
    assert_eq!(journaled.len(), 2, "{journaled:?}");
    assert!(journaled.contains(&ids[0]) && journaled.contains(&ids[2]));
    // nothing more to do
    let (code, out, err) = daemon
        .cli(&["images", "prune", "--keep", "2", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let again: capstan_model::PruneReport = serde_json::from_str(&out).unwrap();
    assert!(
        again.removed.iter().all(|i| !i.apps.contains(&app)),
        "{again:?}"
    );

    // deployed again, a pruned image comes back from its registry
    let v1 = format!("{repo}:v1");
    deploy(&daemon, dir.path(), &app, &WEB.replace(BUSYBOX_IMAGE, &v1)).await;
    assert_eq!(
        engine
            .inspect_image(&format!("{repo}:v1"))
            .await
            .unwrap()
            .unwrap()
            .id,
        ids[0]
    );
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
    let _ = engine.remove_image(&theirs, true).await;
    let _ = engine.remove_image(&mine, false).await;
}
