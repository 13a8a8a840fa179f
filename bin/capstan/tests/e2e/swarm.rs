//! Apps on a real three-node Swarm (`scripts/swarm-ground`: hosts in network namespaces, each
//! with its own dockerd, joined by the real tokens, pulling from a registry on the test
//! bridge): the same Compose file deployed with `--target`, one Swarm service per Compose
//! service, images pinned by digest, rolled health-gated by capstan and put back by capstan
//! when a release fails; the app remembers its target. Their names start with `swarm_`: they
//! run one at a time in their own nextest group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_engine::{Engine, SwarmTask};
use capstan_model::Release;
use capstan_testkit::load::{Load, Tally};
use capstan_testkit::{Daemon, eventually, free_port, unique};

use crate::bin;

/// A manager of the run's Swarm, and a repository of the Swarm's registry pushed `tags`
/// (busybox, each tag's image with its own `/marker`, so each has its own digest).
async fn images(tags: &[&str]) -> (Engine, String) {
    let manager = Engine::new(Some(&capstan_testkit::swarm_host())).unwrap();
    manager.negotiate().await.unwrap();
    // every node back and placing tasks: a test before may have cut one off or restarted the
    // manager (its workers reconnect some seconds later), and a Swarm places every task of a
    // service on the nodes it sees ready (seen: all four of web's on one node)
    capstan_testkit::eventually(
        std::time::Duration::from_mins(1),
        "every Swarm node ready and active",
        || {
            let manager = &manager;
            async move {
                let nodes = manager.swarm_nodes().await.ok()?;
                (nodes.len() >= 3
                    && nodes
                        .iter()
                        .all(|n| n.state == "ready" && n.availability == "active"))
                .then_some(())
            }
        },
    )
    .await;
    let repo = format!(
        "{}/capt/{}",
        capstan_testkit::swarm_registry(),
        unique("web")
    );
    capstan_testkit::push_versions(&manager, &repo, tags).await;
    (manager, repo)
}

/// A config that names the run's Swarm as target `lab`.
fn lab() -> String {
    format!(
        "[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"{}\"\n",
        capstan_testkit::swarm_host()
    )
}

/// Three services: web (4 replicas of `image`, httpd behind a healthcheck that `healthy`
/// decides), api (no healthcheck: gated on running), db (a named volume).
fn app(image: &str, healthy: bool, token: &str, port: u16) -> String {
    let check = if healthy {
        r#"["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]"#
    } else {
        r#"["CMD", "false"]"#
    };
    format!(
        r#"services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www; cat /marker > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports:
      - "{port}:80"
    healthcheck:
      test: {check}
      interval: 1s
      timeout: 3s
      retries: 2
    stop_grace_period: 2s
    deploy:
      replicas: 4
      update_config:
        parallelism: 2
        monitor: 1s
    configs:
      - source: motd
        target: /etc/motd
  api:
    image: {image}
    command: ["sh", "-c", "echo token=$$(cat /run/secrets/token); exec sleep 100000"]
    stop_grace_period: 1s
    depends_on: [db]
    secrets: [token]
  db:
    image: {image}
    command: ["sh", "-c", "echo up > /data/state; exec sleep 100000"]
    stop_grace_period: 1s
    volumes:
      - data:/data
volumes:
  data: {{}}
configs:
  motd:
    content: hello
secrets:
  token:
    content: {token}
"#
    )
}

/// The tasks the cluster wants running, by Compose service.
async fn running(manager: &Engine, app: &str) -> BTreeMap<String, Vec<SwarmTask>> {
    let services = manager
        .swarm_services("io.capstan.app", Some(app))
        .await
        .unwrap();
    let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
    let tasks = manager.swarm_tasks(&ids).await.unwrap();
    let mut out: BTreeMap<String, Vec<SwarmTask>> = BTreeMap::new();
    for s in &services {
        let name = s.labels["io.capstan.service"].clone();
        out.entry(name).or_default().extend(
            tasks
                .iter()
                .filter(|t| t.service_id == s.id && t.desired_state == "running")
                .cloned(),
        );
    }
    out
}

/// The digest every running task of `service` runs (panics when they differ).
fn digest_of(tasks: &BTreeMap<String, Vec<SwarmTask>>, service: &str) -> String {
    let digests: BTreeSet<&str> = tasks[service]
        .iter()
        .map(|t| t.image.split_once('@').map_or("", |(_, d)| d))
        .collect();
    assert_eq!(digests.len(), 1, "{service}: {:?}", tasks[service]);
    (*digests.first().unwrap()).to_owned()
}

/// Asserts that `app` has no service, network, config or secret on the cluster.
async fn nothing_left(manager: &Engine, app: &str) {
    let services = manager
        .swarm_services("io.capstan.app", Some(app))
        .await
        .unwrap();
    assert!(services.is_empty(), "{services:?}");
    let (networks, _) = manager
        .labeled_networks_and_volumes("io.capstan.app", app)
        .await
        .unwrap();
    assert!(networks.is_empty(), "{networks:?}");
    for secret in [false, true] {
        let left = manager
            .swarm_objects(secret, "io.capstan.app", app)
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// Runs `release` while clients (one keep-alive, four opening a connection per request) send
/// requests to `front`: its exit code and output, and what the clients saw.
async fn under_load(
    front: &str,
    release: impl std::future::Future<Output = (i32, String)>,
) -> (i32, String, Tally) {
    let load = Load::start(front, "/", 4);
    let (code, out) = release.await;
    (code, out, enough(load).await)
}

/// The load's tally once it has sent at least 2,000 requests, none of which failed.
async fn enough(load: Load) -> Tally {
    eventually(Duration::from_mins(1), "2,000 requests sent", || {
        let total = load.tally().total();
        async move { (total >= 2000).then_some(()) }
    })
    .await;
    let tally = load.finish().await;
    assert!(
        tally.failures.is_empty(),
        "{} of {} failed: {:?}",
        tally.failures.len(),
        tally.total(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    tally
}

/// The secret api's task read at its start (its first log line), read on the task's node: a
/// manager's log broker may say a node that came back from a network cut "is not available"
/// for a while (seen: over 30 s), which is Swarm's, not what these tests look at.
async fn token_of(manager: &Engine, tasks: &BTreeMap<String, Vec<SwarmTask>>) -> String {
    let task = tasks["api"][0].clone();
    let node = manager
        .swarm_nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == task.node_id)
        .unwrap_or_else(|| panic!("no node {} for {task:?}", task.node_id));
    let engine = Engine::new(Some(&capstan_testkit::swarm_node_host(&node.hostname))).unwrap();
    let logs = eventually(Duration::from_secs(30), "api's first log line", || {
        let (engine, task) = (engine.clone(), task.id.clone());
        async move {
            let container = engine
                .list_containers(true)
                .await
                .ok()?
                .into_iter()
                .find(|c| c.labels.get("com.docker.swarm.task.id") == Some(&task))?;
            let logs = engine.tail_logs(&container.id, 5).await.ok()?;
            logs.contains("token=").then_some(logs)
        }
    })
    .await;
    logs.lines()
        .find_map(|l| l.split_once("token=").map(|(_, t)| t.trim().to_owned()))
        .unwrap()
}

/// What each web replica answers at the endpoint its node published, as the API lists them.
async fn answers(daemon: &Daemon, app: &str) -> Vec<String> {
    let replicas: Vec<capstan_model::AppReplica> =
        daemon.get(&format!("/api/v1/apps/{app}/replicas")).await;
    let mut out = Vec::new();
    for r in replicas.iter().filter(|r| r.service == "web") {
        assert!(
            r.node
                .as_deref()
                .is_some_and(|n| n.starts_with("capt-node")),
            "{r:?}"
        );
        let endpoint = r.endpoints.first().unwrap_or_else(|| panic!("{r:?}"));
        let addr = endpoint.split_once("->").unwrap().0;
        let body = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.push(body.trim().to_owned());
    }
    out
}

async fn deploy(
    daemon: &Daemon,
    dir: &std::path::Path,
    args: &[&str],
    compose: &str,
) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    let (code, out, err) = daemon.cli_in(dir, &all, &[]).await;
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn swarm_an_app_is_deployed_pinned_rolled_put_back_by_capstan_and_taken_down() {
    let (manager, repo) = images(&["v1", "v2"]).await;
    let daemon = Daemon::start_with(bin(), &capstan_testkit::docker_host(), &lab()).await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("sw");
    let port = free_port();
    let front = format!("127.0.0.1:{port}");
    let v1 = format!("{repo}:v1");
    let v2 = format!("{repo}:v2");

    // release 1: three Swarm services, every task running and healthy, pinned by digest
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "lab"],
        &app(&v1, true, "t1", port),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let tasks = running(&manager, &name).await;
    assert_eq!(tasks.keys().collect::<Vec<_>>(), ["api", "db", "web"]);
    assert_eq!(tasks["web"].len(), 4, "{:?}", tasks["web"]);
    assert!(
        tasks.values().flatten().all(|t| t.state == "running"),
        "{tasks:?}"
    );
    assert!(
        tasks
            .values()
            .flatten()
            .all(|t| t.image.starts_with(&format!("{v1}@sha256:"))),
        "{tasks:?}"
    );
    let nodes: BTreeSet<&str> = tasks["web"].iter().map(|t| t.node_id.as_str()).collect();
    assert!(
        nodes.len() >= 2,
        "web's tasks all on one node: {:?}",
        tasks["web"]
    );
    let d1 = digest_of(&tasks, "web");
    // each web task publishes port 80 on a port its node picked
    assert!(
        tasks["web"]
            .iter()
            .all(|t| t.host_ports.iter().any(|(c, h, _)| *c == 80 && *h > 0)),
        "{:?}",
        tasks["web"]
    );

    // `ps` shows the tasks with their nodes, and each answers on the port its node picked
    let (code, out, err) = daemon.cli(&["ps", &name]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("on target lab") && out.contains("capt-node"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("web")).count(),
        4,
        "{out}"
    );
    assert_eq!(answers(&daemon, &name).await, ["v1"; 4]);
    // capstan's proxy serves the Compose port, spreading requests over the healthy tasks
    eventually(Duration::from_secs(30), "the proxy serving v1", || {
        let url = format!("http://{front}/");
        async move {
            let body = reqwest::get(url).await.ok()?.text().await.ok()?;
            (body.trim() == "v1").then_some(())
        }
    })
    .await;

    // nothing to do now, and the app remembers where it runs: no --target needed
    std::fs::write(dir.path().join("compose.yaml"), app(&v1, true, "t1", port)).unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["plan", "-p", &name, "-o", "json"], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let plan: capstan_model::Plan = serde_json::from_str(&out).unwrap();
    assert!(
        plan.services
            .iter()
            .all(|s| s.action == capstan_model::Action::Unchanged),
        "{plan:?}"
    );
    let apps: Vec<capstan_model::AppSummary> = daemon.get("/api/v1/apps").await;
    let mine = apps.iter().find(|a| a.name == name).unwrap();
    assert_eq!(
        (mine.target.as_str(), mine.containers, mine.running),
        ("lab", 6, 6),
        "{mine:?}"
    );

    // release 2: web (and the others, same image) roll to v2, health-gated by capstan, while
    // clients (one keep-alive, four opening a connection per request) see no failure
    let (code, out, tally) = under_load(
        &front,
        deploy(
            &daemon,
            dir.path(),
            &["-p", &name],
            &app(&v2, true, "t1", port),
        ),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        tally.bodies.contains_key("v1") && tally.bodies.contains_key("v2"),
        "{:?}",
        tally.bodies
    );
    println!(
        "v1 -> v2: {} requests {:?}, 0 failed",
        tally.total(),
        tally.bodies
    );
    let tasks = running(&manager, &name).await;
    let d2 = digest_of(&tasks, "web");
    assert_ne!(d1, d2);
    assert_eq!(tasks["web"].len(), 4, "{:?}", tasks["web"]);
    assert!(
        tasks["web"].iter().all(|t| t.state == "running"),
        "{tasks:?}"
    );
    assert_eq!(answers(&daemon, &name).await, ["v2"; 4]);
    assert_eq!(token_of(&manager, &tasks).await, "t1");

    // a changed secret rolls only the service that uses it, which reads the new one
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name],
        &app(&v2, true, "t2", port),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let after = running(&manager, &name).await;
    let ids = |t: &BTreeMap<String, Vec<SwarmTask>>, s: &str| -> BTreeSet<String> {
        t[s].iter().map(|t| t.id.clone()).collect()
    };
    assert_eq!(
        ids(&after, "web"),
        ids(&tasks, "web"),
        "web does not use the secret"
    );
    assert_eq!(ids(&after, "db"), ids(&tasks, "db"));
    assert_ne!(ids(&after, "api"), ids(&tasks, "api"));
    assert_eq!(token_of(&manager, &after).await, "t2");
    // the secret no service uses any more is gone; the config stays, one object
    let secrets = manager
        .swarm_objects(true, "io.capstan.app", &name)
        .await
        .unwrap();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    let configs = manager
        .swarm_objects(false, "io.capstan.app", &name)
        .await
        .unwrap();
    assert_eq!(configs.len(), 1, "{configs:?}");

    // release 4 never passes its healthcheck: exit 1, and capstan (not Swarm) puts v2 back
    let (code, out, tally) = under_load(
        &front,
        deploy(
            &daemon,
            dir.path(),
            &["-p", &name],
            &app(&v2, false, "t2", port),
        ),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        tally.bodies.keys().collect::<Vec<_>>(),
        ["v2"],
        "{:?}",
        tally.bodies
    );
    println!(
        "v4 failed, put back: {} requests {:?}, 0 failed",
        tally.total(),
        tally.bodies
    );
    assert!(out.contains("rolled back"), "{out}");
    // Swarm says nothing of a failed task by event: capstan journals each one it sees
    let failed = eventually(Duration::from_secs(30), "a failed task journaled", || {
        let (daemon, name) = (&daemon, &name);
        async move {
            let events = daemon.all_events("type=task&action=failed").await;
            events
                .into_iter()
                .find(|e| e.attributes.get("io.capstan.app") == Some(name))
        }
    })
    .await;
    assert_eq!(failed.scope.as_deref(), Some("swarm"));
    assert!(
        failed.attributes["name"].starts_with(&format!("{name}_web."))
            && failed.attributes["node"].starts_with("capt-node")
            && failed.attributes.contains_key("error"),
        "{failed:?}"
    );
    let tasks = running(&manager, &name).await;
    assert_eq!(digest_of(&tasks, "web"), d2);
    let back = eventually(
        Duration::from_mins(1),
        "web back on release 2, running",
        || {
            let manager = manager.clone();
            let name = name.clone();
            async move {
                let t = running(&manager, &name).await;
                (t["web"].len() == 4 && t["web"].iter().all(|t| t.state == "running")).then_some(t)
            }
        },
    )
    .await;
    assert_eq!(digest_of(&back, "web"), d2);
    let releases: Vec<Release> = daemon.get(&format!("/api/v1/apps/{name}/releases")).await;
    let results: Vec<(i64, &str)> = releases
        .iter()
        .map(|r| (r.number, r.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            (4, "rolled_back"),
            (3, "succeeded"),
            (2, "succeeded"),
            (1, "succeeded")
        ]
    );

    // rollback to release 1: v1's digest again, through the same rollout
    let (code, out, err) = daemon.cli(&["rollback", &name, "--to", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let tasks = running(&manager, &name).await;
    assert_eq!(digest_of(&tasks, "web"), d1);
    assert_eq!(digest_of(&tasks, "api"), d1);
    assert_eq!(
        token_of(&manager, &tasks).await,
        "t1",
        "release 1's secret is back"
    );

    // an app lives on one target: the local engine is refused, saying how to move it
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "local"],
        &app(&v1, true, "t1", port),
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("runs on target lab") && out.contains("capstan down"),
        "{out}"
    );

    // down removes every service and network the app made on the cluster
    let (code, out, err) = daemon.cli(&["down", &name]).await;
    assert_eq!(code, 0, "{out}{err}");
    nothing_left(&manager, &name).await;
}

#[tokio::test]
async fn swarm_bad_input_is_refused_before_anything_changes() {
    let (manager, repo) = images(&["v1"]).await;
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let config = format!(
        "{}\n[[targets]]\nname = \"gone\"\nkind = \"swarm\"\ndocker_host = \"{dead}\"\n",
        lab()
    );
    let daemon = Daemon::start_with(bin(), &capstan_testkit::docker_host(), &config).await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("swbad");
    let image = format!("{repo}:v1");

    // a key a Swarm service cannot honour: exit 2 naming file, line and key; nothing made
    let compose = format!(
        "services:\n  web:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n    privileged: true\n"
    );
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "lab"],
        &compose,
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("compose.yaml:5") && out.contains("services.web.privileged"),
        "{out}"
    );
    nothing_left(&manager, &name).await;
    let (code, out, err) = daemon.cli(&["releases", &name]).await;
    assert_ne!(code, 0, "no release is recorded: {out}{err}");

    // a target nobody configured: exit 2, naming the ones there are
    let plain =
        format!("services:\n  web:\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n");
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "mars"],
        &plain,
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("no target named \"mars\"") && out.contains("lab"),
        "{out}"
    );

    // a target that does not answer: exit 3, and no release recorded
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "gone"],
        &plain,
    )
    .await;
    assert_eq!(code, 3, "{out}");
    let (code, out, err) = daemon.cli(&["releases", &name]).await;
    assert_ne!(code, 0, "no release is recorded: {out}{err}");

    // an image the cluster's registry does not have: refused before any service is made
    let missing = format!("{repo}:nowhere");
    let compose =
        format!("services:\n  web:\n    image: {missing}\n    command: [\"sleep\", \"1000\"]\n");
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "lab"],
        &compose,
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("cannot resolve") && out.contains(&missing),
        "{out}"
    );
    assert!(
        manager
            .swarm_services("io.capstan.app", Some(&name))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A worker that drops off the network, as a machine does: the cluster's own node events are
/// journaled, the built-in `node_down` alert fires for it and resolves once it is back, and
/// Swarm runs its tasks on the others meanwhile.
#[tokio::test]
async fn swarm_a_node_lost_is_journaled_alerted_and_its_tasks_moved() {
    let (manager, repo) = images(&["v1"]).await;
    let config = format!(
        "{}
[alerts]
evaluate_every = \"1s\"\n",
        lab()
    );
    let mut daemon = Daemon::start_with(bin(), &capstan_testkit::docker_host(), &config).await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("swnode");
    let compose = format!(
        r#"services:
  web:
    image: {repo}:v1
    command: ["sh", "-c", "echo web-up; mkdir -p /www; cat /marker > /www/index.html; exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      retries: 2
    stop_grace_period: 1s
    deploy:
      replicas: 3
      placement:
        preferences:
          - spread: node.id
"#
    );
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &["-p", &name, "--target", "lab"],
        &compose,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let hostnames: BTreeMap<String, String> = manager
        .swarm_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, n.hostname))
        .collect();
    let tasks = running(&manager, &name).await;
    // a worker that runs one of web's tasks (the manager is host 1)
    let lost = ["capt-node3", "capt-node2"]
        .into_iter()
        .find(|h| tasks["web"].iter().any(|t| hostnames[&t.node_id] == *h))
        .unwrap_or_else(|| panic!("no task on a worker: {:?}", tasks["web"]));
    let host: u8 = lost.trim_start_matches("capt-node").parse().unwrap();

    // the app's page: its target, and each task on its node
    let browser = capstan_testkit::Browser::start().await;
    let client = browser.client(1280, 900).await;
    crate::dashboard::sign_in_with_token(&client, &daemon).await;
    crate::dashboard::goto(&client, &daemon, &format!("#/apps/{name}")).await;
    crate::dashboard::wait_text(&client, "#app-target", "lab").await;
    for t in &tasks["web"] {
        crate::dashboard::wait_text(&client, "#replicas", &hostnames[&t.node_id]).await;
    }
    crate::dashboard::shoot(&client, "swarm-app").await;

    // every task's line is collected through the manager, whatever its node, and found by
    // node and by task
    let on = |node: &str| {
        tasks["web"]
            .iter()
            .filter(|t| hostnames[&t.node_id] == node)
            .count() as u64
    };
    for node in ["capt-node1", "capt-node2", "capt-node3"] {
        let q = format!("app:{name} node:{node} web-up");
        crate::logs::wait_for(&daemon, &q, on(node), Duration::from_secs(30)).await;
    }
    let one = &tasks["web"][0];
    let q = format!("task:{} web-up", one.id);
    crate::logs::wait_for(&daemon, &q, 1, Duration::from_secs(30)).await;
    // capstan restarts: it goes on from where it was, repeating nothing (below)
    daemon.stop().await;
    daemon.restart().await;

    // when the node's state became `state` after `after` (ns), as the journal has it
    let became = |events: &[capstan_model::Event], state: &str, after: i64| {
        events
            .iter()
            .filter(|e| {
                e.time_nano > after
                    && e.attributes.get("name").map(String::as_str) == Some(lost)
                    && e.attributes.get("state.new").map(String::as_str) == Some(state)
            })
            .map(|e| e.time_nano)
            .min()
    };
    let cut_at = manager.now_nanos().await.unwrap();
    let firing = |alerts: &capstan_model::AlertList| {
        alerts.alerts.iter().any(|a| {
            a.rule == "node_down"
                && a.state == capstan_model::AlertState::Firing
                && a.labels.get("node").map(String::as_str) == Some(lost)
        })
    };
    let down_at = {
        let _cut = capstan_testkit::CutLink::cut(host);
        let down_at = eventually(Duration::from_mins(1), "the node's fall journaled", || {
            let daemon = &daemon;
            async move { became(&daemon.all_events("type=node").await, "down", cut_at) }
        })
        .await;
        eventually(Duration::from_secs(30), "node_down firing", || async {
            let alerts: capstan_model::AlertList = daemon.get("/api/v1/alerts").await;
            firing(&alerts).then_some(())
        })
        .await;
        eventually(
            Duration::from_mins(1),
            "web's tasks moved to the others",
            || {
                let (manager, name, hostnames) = (&manager, &name, &hostnames);
                async move {
                    let t = running(manager, name).await;
                    (t["web"].len() == 3
                        && t["web"]
                            .iter()
                            .all(|t| t.state == "running" && hostnames[&t.node_id] != lost))
                    .then_some(())
                }
            },
        )
        .await;
        // the page, asking again every 5 s, shows them there
        let what = format!("show 3 tasks running, none on {lost}");
        crate::dashboard::wait_shown(&client, "#replicas", &what, |t| {
            !t.contains(lost) && t.matches("running").count() == 3
        })
        .await;
        // the tasks Swarm started on the others said so once each, and nothing came twice
        let now = running(&manager, &name).await;
        let moved = now["web"]
            .iter()
            .filter(|t| !tasks["web"].iter().any(|o| o.id == t.id))
            .count() as u64;
        let q = format!("app:{name} web-up");
        crate::logs::wait_for(&daemon, &q, 3 + moved, Duration::from_secs(30)).await;
        down_at
    };
    // back on the network: it rejoins, and the alert resolves
    let restored_at = manager.now_nanos().await.unwrap();
    let ready_at = eventually(
        Duration::from_mins(1),
        "the node's return journaled",
        || {
            let daemon = &daemon;
            async move { became(&daemon.all_events("type=node").await, "ready", down_at) }
        },
    )
    .await;
    println!(
        "{lost} cut: down {:.1}s later; link back: ready {:.1}s later",
        (down_at - cut_at) as f64 / 1e9,
        (ready_at - restored_at) as f64 / 1e9
    );
    eventually(Duration::from_secs(30), "node_down resolved", || async {
        let alerts: capstan_model::AlertList = daemon.get("/api/v1/alerts").await;
        (!firing(&alerts)).then_some(())
    })
    .await;

    // the manager's engine restarts (its tasks with it): while its workers reconnect it
    // answers "node not available" to every task's logs; capstan follows the cluster again,
    // collects the lines of the tasks Swarm starts again, and repeats none
    capstan_testkit::restart_swarm_node(1).await;
    let started = eventually(Duration::from_mins(1), "web running again", || {
        let (manager, name) = (&manager, &name);
        async move {
            let t = running(manager, name).await;
            (t["web"].len() == 3 && t["web"].iter().all(|t| t.state == "running")).then_some(t)
        }
    })
    .await;
    let q = format!("app:{name} web-up")
        .replace(' ', "%20")
        .replace(':', "%3A");
    eventually(Duration::from_mins(1), "every running task's line", || {
        let (daemon, started, q) = (&daemon, &started, &q);
        async move {
            let page: capstan_model::LogPage =
                daemon.get(&format!("/api/v1/logs?q={q}&limit=1000")).await;
            let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
            for line in &page.lines {
                *per_task.entry(line.origin.task.clone()).or_default() += 1;
            }
            assert!(
                per_task.values().all(|n| *n == 1),
                "a line came twice: {per_task:?}"
            );
            started["web"]
                .iter()
                .all(|t| per_task.contains_key(&t.id))
                .then_some(())
        }
    })
    .await;

    let (code, out, err) = daemon.cli(&["down", &name]).await;
    assert_eq!(code, 0, "{out}{err}");
    nothing_left(&manager, &name).await;
    // and nothing came twice while the followers of the tasks taken down ended
    let page: capstan_model::LogPage = daemon.get(&format!("/api/v1/logs?q={q}&limit=1000")).await;
    let ids: Vec<&str> = page.lines.iter().map(|l| l.origin.task.as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a line came twice: {ids:?}");
}
