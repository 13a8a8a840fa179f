//! Plans of Compose apps against what runs on the real engine.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use capstan_deploy::{Action, Names, Plan, SecretPaths, container_spec};
use capstan_testkit::{Daemon, unique};

use crate::bin;

/// The CLI run in `dir` (where the Compose file is) against `daemon`.
fn capstan_in(daemon: &Daemon, dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("CAPSTAN_URL", &daemon.url)
        .env("CAPSTAN_TOKEN", &daemon.token);
    cmd
}

const APP: &str = "services:\n  db:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n  web:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    environment: {MODE: one}\n    depends_on:\n      db: {condition: service_healthy}\n    deploy: {replicas: 2}\n  cache:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n";

#[tokio::test]
async fn plan_shows_what_a_deploy_would_change_and_why() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), APP).unwrap();
    let app = unique("capt-plan");
    let plan_cli = |extra: &[&str]| {
        let mut cmd = capstan_in(
            &daemon,
            dir.path(),
            &["plan", "-f", "compose.yaml", "-p", &app],
        );
        cmd.args(extra);
        cmd
    };

    // nothing runs: create everything, dependencies first
    let out = plan_cli(&["-o", "json"]).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Plan = serde_json::from_slice(&out.stdout).unwrap();
    let action = |plan: &Plan, s: &str| {
        plan.services
            .iter()
            .find(|p| p.service == s)
            .unwrap()
            .action
            .clone()
    };
    assert_eq!(action(&plan, "web"), Action::Create { replicas: 2 });
    assert_eq!(
        plan.levels,
        vec![
            vec!["cache".to_owned(), "db".to_owned()],
            vec!["web".to_owned()]
        ]
    );

    // what a deploy would make, made by hand: the plan is empty
    let project = capstan_compose::load(&capstan_compose::Options {
        project_name: Some(app.clone()),
        working_dir: dir.path().to_owned(),
        text: None,
        ..Default::default()
    })
    .unwrap()
    .project;
    let names = Names::of(&project);
    let network = capstan_deploy::network_spec(&project, "default");
    engine.ensure_network(&network).await.unwrap();
    let mut ids = Vec::new();
    for (service, replicas) in [("db", 1), ("web", 2), ("cache", 1)] {
        for r in 1..=replicas {
            let spec =
                container_spec(&project, service, r, 1, &SecretPaths::new(dir.path())).unwrap();
            let id = engine
                .create_from_spec(&names.container(service, r), &spec)
                .await
                .unwrap();
            engine.start_container(&id).await.unwrap();
            ids.push(id);
        }
    }
    let out = plan_cli(&[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing to do"), "{text}");

    // a changed environment recreates web only; a stopped replica is repaired
    std::fs::write(
        dir.path().join("compose.yaml"),
        APP.replace("MODE: one", "MODE: two"),
    )
    .unwrap();
    engine.remove_container(&ids[0], true).await.unwrap(); // db gone by hand
    let out = plan_cli(&["-o", "json"]).output().await.unwrap();
    let plan: Plan = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        matches!(action(&plan, "web"), Action::Recreate { .. }),
        "{plan:?}"
    );
    assert_eq!(action(&plan, "db"), Action::Create { replicas: 1 });
    assert_eq!(action(&plan, "cache"), Action::Unchanged);
    let out = plan_cli(&[]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web") && l.contains("recreate")),
        "{text}"
    );

    // bad input: the path and the model disagree, a malformed model
    let (status, _) = daemon
        .post_raw(
            "/api/v1/apps/other/plan",
            &serde_json::json!({ "project": project }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = daemon
        .post_raw(
            &format!("/api/v1/apps/{app}/plan"),
            &serde_json::json!({"project": {"name": app, "services": {"web": {"imagee": "x"}}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("imagee"),
        "{body}"
    );

    for id in &ids[1..] {
        engine.remove_container(id, true).await.unwrap();
    }
    engine.remove_network(&network.name).await.unwrap();
}

const FULL: &str = r#"
services:
  db:
    image: capstan-test/busybox:1
    command: ["sh", "-c", "test -f /data/first || echo $$$$ > /data/first; exec sleep 3600"]
    volumes: [data:/data]
    init: true
    healthcheck: {test: "test -f /data/first", interval: 1s, timeout: 2s, retries: 20}
  web:
    image: capstan-test/busybox:1
    command: ["sh", "-c", "mkdir -p /tmp/www && echo $$MODE > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www"]
    environment: {MODE: one}
    expose: ["80"]
    init: true
    healthcheck: {test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:80/"], interval: 1s, timeout: 2s, retries: 5}
    depends_on: {db: {condition: service_healthy}}
    deploy: {replicas: 2, update_config: {parallelism: 1, order: start-first}}
    secrets: [token, {source: keystore, mode: 0440}]
    configs: [{source: site, target: /etc/site.conf}]
  cache:
    image: capstan-test/busybox:1
    command: sleep 3600
    init: true
secrets:
  token: {file: ./token.txt}
  keystore: {file: ./keystore.bin}
configs:
  site: {content: hello}
volumes:
  data: {}
"#;

#[tokio::test]
async fn deploy_redeploy_roll_back_and_down() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), FULL).unwrap();
    std::fs::write(dir.path().join("token.txt"), "s3cret").unwrap();
    // not UTF-8: travels as base64, lands byte for byte
    let keystore: Vec<u8> = vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0xff, 0x80];
    std::fs::write(dir.path().join("keystore.bin"), &keystore).unwrap();
    let app = unique("capt-deploy");
    let cli = |args: &[&str]| capstan_in(&daemon, dir.path(), args);
    let deploy = || cli(&["deploy", "-p", &app]);
    let mine = |engine: capstan_engine::Engine, app: String| async move {
        let mut m: Vec<(String, String, String)> = engine
            .list_containers(true)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| capstan_testkit::replica_of(c, &app))
            .map(|c| (c.name, c.id, c.state))
            .collect();
        m.sort();
        m
    };

    // first release: dependencies first, health-gated
    let out = deploy().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("release 1 succeeded"), "{stdout}");
    // steps are shown as they happen, before the summary
    let waiting = stdout
        .find("db-1 started, waiting until it is healthy")
        .expect(&stdout);
    assert!(
        waiting < stdout.find("release 1 succeeded").unwrap(),
        "{stdout}"
    );
    let first = mine(engine.clone(), app.clone()).await;
    let names: Vec<&str> = first.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{app}-cache-1"),
            format!("{app}-db-1"),
            format!("{app}-web-1"),
            format!("{app}-web-2")
        ]
    );
    assert!(first.iter().all(|(_, _, s)| s == "running"), "{first:?}");

    // the secret and the config are files with the right content and mode
    let web = engine.inspect_container_json(&first[2].1).await.unwrap();
    let mounts = web["HostConfig"]["Mounts"].as_array().unwrap();
    let source = |target: &str| {
        mounts
            .iter()
            .find(|m| m["Target"] == target)
            .and_then(|m| m["Source"].as_str())
            .unwrap()
            .to_owned()
    };
    let secret = source("/run/secrets/token");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o400
    );
    // in plain text only on the daemon's tmpfs; under the data dir, sealed (secrets.rs tests
    // that no file there holds the value)
    assert!(
        !secret.starts_with(daemon.data_dir().to_str().unwrap()),
        "a secret in plain text under the data dir: {secret}"
    );
    let sealed = daemon
        .data_dir()
        .join("apps")
        .join(&app)
        .join("secrets/token.sealed");
    let kept = std::fs::read(&sealed).unwrap();
    assert!(
        !kept.windows(6).any(|w| w == b"s3cret"),
        "{}",
        sealed.display()
    );
    let binary = source("/run/secrets/keystore");
    assert_eq!(std::fs::read(&binary).unwrap(), keystore);
    assert_eq!(
        std::fs::metadata(&binary).unwrap().permissions().mode() & 0o777,
        0o440
    );
    assert_eq!(
        std::fs::read_to_string(source("/etc/site.conf")).unwrap(),
        "hello"
    );
    let db = engine.inspect_container_json(&first[1].1).await.unwrap();
    let data_dir = db["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/data")
        .and_then(|m| m["Source"].as_str())
        .unwrap()
        .to_owned();
    let stamp = std::fs::read_to_string(format!("{data_dir}/first")).unwrap();

    // nothing to do afterwards
    let out = cli(&["plan", "-p", &app]).output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // a changed environment rolls web only, and the plan says why
    std::fs::write(
        dir.path().join("compose.yaml"),
        FULL.replace("MODE: one", "MODE: two"),
    )
    .unwrap();
    let out = cli(&["plan", "-p", &app]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web") && l.contains("environment changed")),
        "{text}"
    );
    let out = cli(&["deploy", "-p", &app, "-o", "json"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON lines: the steps, then the report
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["service"] == "web"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["report"]["outcome"], "succeeded");
    let second = mine(engine.clone(), app.clone()).await;
    assert_eq!(second[0].1, first[0].1, "cache untouched");
    assert_eq!(second[1].1, first[1].1, "db untouched");
    assert_ne!(second[2].1, first[2].1, "web replaced");
    assert_eq!(
        second.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>(),
        first.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read_to_string(format!("{data_dir}/first")).unwrap(),
        stamp,
        "volume data survives"
    );

    // a release whose healthcheck never passes: rolled back, exit 1, the old replicas serve on
    std::fs::write(
        dir.path().join("compose.yaml"),
        FULL.replace("MODE: one", "MODE: three")
            .replace("http://127.0.0.1:80/", "http://127.0.0.1:81/")
            .replace("retries: 5", "retries: 2"),
    )
    .unwrap();
    let out = deploy().output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rolled back") && err.contains("unhealthy"),
        "{err}"
    );
    let third = mine(engine.clone(), app.clone()).await;
    assert_eq!(
        third
            .iter()
            .map(|(_, id, _)| id.clone())
            .collect::<Vec<_>>(),
        second
            .iter()
            .map(|(_, id, _)| id.clone())
            .collect::<Vec<_>>(),
        "nothing replaced"
    );
    let out = cli(&["releases", &app, "-o", "json"])
        .output()
        .await
        .unwrap();
    let releases: Vec<capstan_model::Release> = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<(i64, &str)> = releases
        .iter()
        .map(|r| (r.number, r.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [(3, "rolled_back"), (2, "succeeded"), (1, "succeeded")]
    );
    // journaled for alert rules (`event = "rolled_back"`) and notification channels
    let rolled = daemon
        .all_events("type=capstan&action=release_rolled_back")
        .await;
    assert!(
        rolled.iter().any(|e| e.actor == app
            && e.attributes.get("release").map(String::as_str) == Some("3")),
        "{rolled:?}"
    );
    assert!(
        releases[0].images["web"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let out = cli(&["apps"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&app) && l.contains("4/4 running")),
        "{text}"
    );

    // rollback to the first release: its definition, through the same rollout
    let out = cli(&["rollback", &app, "--to", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let fourth = mine(engine.clone(), app.clone()).await;
    let web = engine.inspect_container_json(&fourth[2].1).await.unwrap();
    let env: Vec<&str> = web["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"MODE=one"), "{env:?}");
    let out = cli(&["releases", &app, "-o", "json"])
        .output()
        .await
        .unwrap();
    let releases: Vec<capstan_model::Release> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (releases[0].number, releases[0].result.as_str()),
        (4, "succeeded")
    );
    assert_eq!(releases[0].source["rollback_to"], 1);
    let out = cli(&["rollback", &app, "--to", "99"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // bad input changes nothing: a UDP port the engine publishes goes to one container
    let before = mine(engine.clone(), app.clone()).await;
    std::fs::write(
        dir.path().join("compose.yaml"),
        FULL.replace("expose: [\"80\"]", "ports: [\"127.0.0.1:18080:80/udp\"]"),
    )
    .unwrap();
    let out = deploy().output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services.web.ports")
            && stderr.contains("18080:80/udp is published by the engine")
            && stderr.contains("one replica"),
        "{stderr}"
    );
    assert_eq!(mine(engine.clone(), app.clone()).await, before);

    // a host port another program holds fails the deploy before anything changes
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("compose.yaml"),
        FULL.replace("expose: [\"80\"]", &format!("ports: [\"{port}:80\"]"))
            .replace("MODE: one", "MODE: taken"),
    )
    .unwrap();
    let out = deploy().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("another program"),
        "{stderr}"
    );
    assert_eq!(mine(engine.clone(), app.clone()).await, before);
    drop(taken);

    // down removes containers, networks and (asked) volumes
    let out = cli(&["down", &app, "--volumes"]).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mine(engine.clone(), app.clone()).await.is_empty());
    let (nets, vols) = engine
        .labeled_networks_and_volumes("io.capstan.app", &app)
        .await
        .unwrap();
    assert!(nets.is_empty() && vols.is_empty(), "{nets:?} {vols:?}");
}

const HEALING: &str = r#"
services:
  svc:
    image: capstan-test/busybox:1
    command: sleep 3600
    init: true
    restart: always
    deploy: {replicas: 2}
  sick:
    image: capstan-test/busybox:1
    command: ["sh", "-c", "sleep 4; echo > /bad; exec sleep 3600"]
    init: true
    healthcheck: {test: "test ! -f /bad", interval: 1s, timeout: 10s, retries: 1}
"#;

#[tokio::test]
async fn replicas_removed_stopped_or_unhealthy_are_healed() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), HEALING).unwrap();
    let app = unique("capt-heal");
    let cli = |args: &[&str]| capstan_in(&daemon, dir.path(), args);
    let out = cli(&["deploy", "-p", &app]).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |name: String| {
        let engine = engine.clone();
        async move {
            engine
                .list_containers(true)
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.name == name)
        }
    };
    let one = find(format!("{app}-svc-1")).await.unwrap();
    let two = find(format!("{app}-svc-2")).await.unwrap();

    // removed by hand: recreated
    engine.remove_container(&one.id, true).await.unwrap();
    // stopped by hand (the engine will not restart it): replaced
    engine.stop_container(&two.id, 1).await.unwrap();
    capstan_testkit::eventually(std::time::Duration::from_mins(1), "replicas healed", || {
        let find = &find;
        let (app, one, two) = (&app, &one, &two);
        async move {
            let a = find(format!("{app}-svc-1")).await?;
            let b = find(format!("{app}-svc-2")).await?;
            (a.id != one.id && a.state == "running" && b.id != two.id && b.state == "running")
                .then_some(())
        }
    })
    .await;
    // an unhealthy replica is restarted, and every action is journaled for alert rules
    let events = capstan_testkit::eventually(
        std::time::Duration::from_mins(1),
        "healing journaled",
        || {
            let (daemon, app) = (&daemon, &app);
            async move {
                let events = daemon.all_events("type=capstan&since=10m").await;
                let ours: Vec<_> = events
                    .into_iter()
                    .filter(|e| e.attributes.get("app") == Some(app))
                    .collect();
                let seen: BTreeSet<String> = ours
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e.action,
                            e.attributes["detail"].split(' ').next().unwrap_or_default()
                        )
                    })
                    .collect();
                (seen.contains("heal missing")
                    && seen.contains("heal exited")
                    && seen.contains("restart_unhealthy unhealthy:"))
                .then_some(ours)
            }
        },
    )
    .await;
    let heals: Vec<_> = events.iter().filter(|e| e.action == "heal").collect();
    assert!(
        heals.iter().any(|e| e.attributes["detail"] == "missing"),
        "{heals:?}"
    );
    assert!(
        heals
            .iter()
            .any(|e| e.attributes["detail"].starts_with("exited")),
        "{heals:?}"
    );
    // events come newest first: the first restart is the last of them
    let restart = events
        .iter()
        .rev()
        .find(|e| e.action == "restart_unhealthy")
        .unwrap();
    assert_eq!(restart.attributes["service"], "sick");
    assert!(
        restart.attributes["detail"].contains("restart 1 of 5"),
        "{restart:?}"
    );

    // down stays down: nothing is resurrected
    let out = cli(&["down", &app]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(find(format!("{app}-svc-1")).await.is_none());
}

#[tokio::test]
async fn a_terminal_gets_a_progress_display_redrawn_in_place() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  a:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    init: true\n    deploy: {replicas: 2}\n  b:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    init: true\n",
    )
    .unwrap();
    let app = unique("capt-tty");
    // `script` runs the CLI on a pseudo-terminal
    let command = format!("{} deploy -p {app}", bin().display());
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("CAPSTAN_URL", &daemon.url)
        .env("CAPSTAN_TOKEN", &daemon.token)
        .env("COLUMNS", "120")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // one line per service, redrawn: cursor up and clear line, a mark for done
    assert!(text.contains("\x1b[2F\x1b[2K"), "{text:?}");
    assert!(text.contains("+ a "), "{text:?}");
    assert!(text.contains("release 1 succeeded"), "{text:?}");
    // not on a pipe: plain lines, no escape codes
    let (code, plain, _) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0);
    let out = capstan_in(&daemon, dir.path(), &["deploy", "-p", &app])
        .output()
        .await
        .unwrap();
    let plain_deploy = String::from_utf8_lossy(&out.stdout);
    assert!(!plain_deploy.contains('\x1b'), "{plain_deploy:?} {plain}");
    assert!(plain_deploy.contains("replica 2 ready"), "{plain_deploy}");
    daemon.cli(&["down", &app]).await;
}
