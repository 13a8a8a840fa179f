//! The fleet's membership on this machine's loopback: a hub (`[fleet] listen`) and agents
//! (`capstan agent`, each a full daemon with its own data dir and key), through the real CLI.
//! A join token lets one host in, once, before it expires, and only into the hub whose key it
//! pins; a removed host is cut off at once and stops dialing, and goes on working by itself.

use std::time::Duration;

use capstan_model::FleetHost;
use capstan_testkit::{Daemon, eventually, free_port};

use crate::bin;

const QUIET: &str = "[logs]\ncollect = false\n";

async fn token(hub: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["hosts", "join-token"];
    all.extend_from_slice(args);
    let (code, out, err) = hub.cli(&all).await;
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

async fn hosts(hub: &Daemon) -> Vec<FleetHost> {
    let (code, out, err) = hub.cli(&["hosts", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// A hub (`[fleet] listen` on `ip`, a free port; `extra` config besides) against `engine`,
/// and its fleet address.
async fn hub_on(engine: &str, ip: &str, extra: &str) -> (Daemon, String) {
    let port = free_port();
    let hub = Daemon::start_with(
        bin(),
        engine,
        &format!("{QUIET}{extra}\n[fleet]\nlisten = \"{ip}:{port}\"\n"),
    )
    .await;
    (hub, format!("https://{ip}:{port}"))
}

/// Waits until the hub lists `n` hosts, every one connected.
async fn all_connected(hub: &Daemon, n: usize) {
    eventually(Duration::from_secs(30), "every host connected", || async {
        let h = hosts(hub).await;
        (h.len() == n && h.iter().all(|h| h.state == "connected")).then_some(())
    })
    .await;
}

/// `capstan agent` that is expected to refuse to start: `(exit code, stderr)`.
async fn refused_agent(url: &str, token: &str) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin())
            .args([
                "agent", "--join", url, "--token", token, "--name", "refused",
            ])
            .arg("--data")
            .arg(data.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--docker-host",
                "unix:///nonexistent.sock",
            ])
            .output(),
    )
    .await
    .expect("a refused agent exits at once")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn hosts_join_once_with_a_token_pinning_the_hubs_key_and_a_removed_one_is_cut_off() {
    let engine = capstan_testkit::engine().await;
    let (hub, url) = hub_on(engine.host(), "127.0.0.1", "").await;

    // a host joins with a token carrying labels; the hub lists it connected
    let first = token(&hub, &["--labels", "env=test,zone=a"]).await;
    let one = Daemon::start_agent(
        bin(),
        engine.host(),
        QUIET,
        &["--join", &url, "--token", &first, "--name", "host-1"],
    )
    .await;
    let listed = eventually(Duration::from_secs(20), "host-1 connected", || async {
        let h = hosts(&hub).await;
        (h.len() == 1 && h[0].state == "connected" && h[0].engine.starts_with("docker "))
            .then_some(h)
    })
    .await;
    assert_eq!(listed[0].name, "host-1");
    assert_eq!(listed[0].labels["env"], "test");
    assert_eq!(listed[0].labels["zone"], "a");
    assert!(listed[0].fingerprint.starts_with("sha256:"));
    assert!(listed[0].address.starts_with("127.0.0.1:"), "{listed:?}");
    // a joined host is a target by its name
    let (code, out, err) = hub.cli(&["targets", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let targets: Vec<capstan_model::TargetStatus> = serde_json::from_str(&out).unwrap();
    let host = targets
        .iter()
        .find(|t| t.name == "host-1")
        .expect("host-1 listed");
    assert_eq!(host.kind, capstan_model::TargetKind::Host);
    assert!(host.healthy, "{host:?}");
    assert!(host.engine_versions[0].starts_with("docker "), "{host:?}");

    // the same token again: used up
    let (code, err) = refused_agent(&url, &first).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("used already (by host host-1)"), "{err}");

    // a token whose pinned key is not the hub's: the agent refuses the hub before sending it,
    // so the token is still good for the real hub afterwards
    let second = token(&hub, &[]).await;
    let mut parts: Vec<String> = second.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let (code, err) = refused_agent(&url, &parts.join(".")).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not the hub the join token was made on"),
        "{err}"
    );
    let two = Daemon::start_agent(
        bin(),
        engine.host(),
        QUIET,
        &["--join", &url, "--token", &second, "--name", "host-2"],
    )
    .await;
    all_connected(&hub, 2).await;

    // expired, malformed, no hub there, bad asks: each refused with exit 2 (3: unreachable)
    let short = token(&hub, &["--ttl", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, err) = refused_agent(&url, &short).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expired"), "{err}");
    let (code, err) = refused_agent(&url, "capstan-join-1.nonsense").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed"), "{err}");
    let spare = token(&hub, &[]).await;
    let (code, err) = refused_agent(&format!("https://127.0.0.1:{}", free_port()), &spare).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the hub"), "{err}");
    let (code, err) = refused_agent("http://127.0.0.1:1", &spare).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("https://HOST:PORT"), "{err}");
    for bad in [["--ttl", "0s"], ["--ttl", "30d"], ["--labels", "novalue"]] {
        let (code, _, err) = hub.cli(&["hosts", "join-token", bad[0], bad[1]]).await;
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    let (code, _, err) = hub.cli(&["hosts", "remove", "no-such-host"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no host named no-such-host"), "{err}");
    // an agent is no hub
    let (code, _, err) = one.cli(&["hosts"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("[fleet] listen"), "{err}");

    // removed: cut off at once, refused when it dials again, stops dialing; it goes on alone
    let (code, _, err) = hub.cli(&["hosts", "remove", "host-1"]).await;
    assert_eq!(code, 0, "{err}");
    let left = hosts(&hub).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "host-2");
    eventually(
        Duration::from_secs(20),
        "host-1 stopped dialing",
        || async {
            one.log()
                .contains("this host stopped dialing the hub")
                .then_some(())
        },
    )
    .await;
    let log = one.log();
    // the cut reached it as a closed connection (idle) or a failed call (shipping)
    assert!(log.contains("the link to the hub dropped"), "{log}");
    assert!(log.contains("not a member of the fleet"), "{log}");
    assert_eq!(one.health().await.status, "ok");
    assert_eq!(
        hosts(&hub).await[0].state,
        "connected",
        "host-2 is not affected"
    );
    drop(two);
}

/// The names of the `tag` events of `prefix` in `events`, each as often as it is there.
fn tagged(events: &[capstan_model::Event], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = events
        .iter()
        .filter(|e| e.action == "tag")
        .filter_map(|e| e.attributes.get("name"))
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect();
    names.sort();
    names
}

/// The tags of `prefix` that host-j's journal brought to the hub.
async fn from_host(hub: &Daemon, prefix: &str) -> Vec<String> {
    tagged(&hub.all_events("type=image&host=host-j").await, prefix)
}

/// A host's journal reaches the hub with `host`, each event once: the hub commits a batch and
/// its cursor together before it answers, and the agent resumes from the hub's cursor. The hub
/// is killed -9 in the middle; what the host journals meanwhile arrives after it is back.
#[tokio::test]
async fn a_hosts_journal_reaches_the_hub_once_across_the_hub_killed() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (mut hub, url) = hub_on(engine.host(), "127.0.0.1", "").await;
    let first = token(&hub, &[]).await;
    let agent = Daemon::start_agent(
        bin(),
        engine.host(),
        QUIET,
        &["--join", &url, "--token", &first, "--name", "host-j"],
    )
    .await;
    let prefix = capstan_testkit::unique("capt-fleet-journal");
    let names: Vec<String> = (0..300).map(|i| format!("{prefix}:{i}")).collect();
    for n in &names[..100] {
        engine.tag(capstan_testkit::BUSYBOX, n).await.unwrap();
    }
    eventually(Duration::from_secs(30), "100 events of host-j", || async {
        (from_host(&hub, &prefix).await.len() == 100).then_some(())
    })
    .await;

    // the hub dies; the host goes on journaling
    hub.kill9().await;
    for n in &names[100..] {
        engine.tag(capstan_testkit::BUSYBOX, n).await.unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "300 events on the host",
        || async {
            (tagged(&agent.all_events("type=image&action=tag").await, &prefix).len() == 300)
                .then_some(())
        },
    )
    .await;
    hub.restart().await;
    let arrived = eventually(Duration::from_mins(1), "300 events of host-j", || async {
        let got = from_host(&hub, &prefix).await;
        assert!(
            got.len() <= 300,
            "more than the host journaled: {}",
            got.len()
        );
        (got.len() == 300).then_some(got)
    })
    .await;
    let mut want = names.clone();
    want.sort();
    assert_eq!(arrived, want, "each of the host's events once");
    // with the host's name, and apart from the hub's own journal of the same engine
    let one = hub.all_events("type=image&action=tag&host=host-j").await;
    assert!(
        one.iter()
            .all(|e| e.attributes["host"] == "host-j" && e.scope.as_deref() == Some("host"))
    );
    let own = hub.all_events("type=image&action=tag&host=local").await;
    assert!(own.iter().all(|e| !e.attributes.contains_key("host")));
    let (code, out, err) = hub
        .cli(&[
            "events", "--host", "host-j", "--type", "image", "-o", "json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("host-j"), "{out}");
    for n in &names {
        let _ = engine.remove_image(n, false).await;
    }
}

/// A flood on a host reaches the hub's log store whole, each line once, with `host:` on it:
/// the hub is down while the host collects it, and killed -9 again while it is being shipped
/// (a batch and the host's cursor are committed together; the host resumes from the cursor).
#[tokio::test]
async fn a_hosts_flood_is_searchable_on_the_hub_once_across_the_hub_killed_twice() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (mut hub, url) = hub_on(engine.host(), "127.0.0.1", "").await;
    let first = token(&hub, &[]).await;
    let name = capstan_testkit::unique("fleet-flood");
    let agent = Daemon::start_agent(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
        &["--join", &url, "--token", &first, "--name", "host-l"],
    )
    .await;
    all_connected(&hub, 1).await;

    // the hub goes away; the host collects a flood meanwhile
    hub.kill9().await;
    let id = crate::logs::run_container(
        &engine,
        &name,
        "i=0; while [ $i -lt 20000 ]; do echo \"fleet-flood-line $i\"; i=$((i+1)); done; exec sleep 3600",
    )
    .await;
    crate::logs::wait_for(&agent, "fleet-flood-line", 20_000, Duration::from_mins(2)).await;

    // back, and killed again as soon as the first lines are there
    hub.restart().await;
    let q = "host:host-l fleet-flood-line";
    eventually(
        Duration::from_mins(1),
        "the first lines on the hub",
        || async {
            let page: capstan_model::LogPage = hub
                .get(&format!(
                    "/api/v1/logs?q={}&limit=1",
                    q.replace(' ', "%20").replace(':', "%3A")
                ))
                .await;
            (page.total > 0).then_some(())
        },
    )
    .await;
    hub.kill9().await;
    hub.restart().await;
    crate::logs::wait_for(&hub, q, 20_000, Duration::from_mins(2)).await;

    // each line once, with the host's name
    let (code, out, err) = hub.cli(&["logs", "--all", "-o", "json", q]).await;
    assert_eq!(code, 0, "{err}");
    crate::logs::assert_each_once(&out, 20_000, |line| {
        assert_eq!(line["host"], "host-l", "{line}");
    });
    engine.remove_container(&id, true).await.unwrap();
}

/// A host's metrics reach the hub's history with its `host` label, and an alert rule there,
/// over every host, fires for the host whose container breaches it, naming the host. The hub
/// collects no metrics of its own here: what fires is the host's.
#[tokio::test]
async fn a_metric_rule_on_the_hub_fires_for_the_host_that_breaches_it() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let name = capstan_testkit::unique("fleet-busy");
    let (hub, url) = hub_on(
        engine.host(),
        "127.0.0.1",
        &format!(
            "[metrics]\ncollect = false\n\n[[alerts.rules]]\nname = \"host-busy\"\n\
             expr = 'container_memory_working_set_bytes{{name=\"{name}\"}} > 0'\nfor = \"2s\"\n"
        ),
    )
    .await;
    let first = token(&hub, &[]).await;
    let _agent = Daemon::start_agent(
        bin(),
        engine.host(),
        &format!("{QUIET}[metrics]\ninterval = \"1s\"\n"),
        &["--join", &url, "--token", &first, "--name", "host-m"],
    )
    .await;
    let id = crate::logs::run_container(&engine, &name, "exec sleep 3600").await;
    let fired = eventually(
        Duration::from_secs(90),
        "host-busy firing for host-m",
        || async {
            let page: capstan_model::EventPage = hub.get("/api/v1/alerts/history?limit=1000").await;
            page.events.into_iter().find(|e| {
                e.actor == "host-busy"
                    && e.action == "alert_firing"
                    && e.attributes.get("host").map(String::as_str) == Some("host-m")
            })
        },
    )
    .await;
    assert_eq!(fired.attributes["name"], name, "{fired:?}");
    // the series, queried on the hub, carry the host
    let result: capstan_model::MetricsResult = hub
        .get(&format!(
            "/api/v1/metrics/query?query=container_memory_working_set_bytes%7Bname%3D%22{name}%22%7D"
        ))
        .await;
    let series = serde_json::to_value(&result).unwrap();
    assert!(series.to_string().contains("host-m"), "{series}");
    engine.remove_container(&id, true).await.unwrap();
}

/// Two of the run's three hosts (each a network namespace with its own dockerd,
/// `scripts/swarm-ground`) join a hub on the test bridge. Both are cut off for 20 s, during
/// which host 2 floods 20,000 lines and host 3 journals 300 image events, and the hub is
/// killed -9 and started again. Once the links are back, every line is searchable on the hub
/// once with `host:host-2`, and every event is there once with `host=host-3`.
#[tokio::test]
async fn fleet_hosts_lose_nothing_across_a_partition_and_the_hub_killed() {
    const IMAGE: &str = "capt-swarm/busybox:1";
    let (mut hub, url) = hub_on(&capstan_testkit::docker_host(), "10.217.0.1", "").await;
    let name = capstan_testkit::unique("fleet-part");
    let (t2, t3) = (token(&hub, &[]).await, token(&hub, &[]).await);
    let two = Daemon::start_agent_on(
        2,
        bin(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
        &["--join", &url, "--token", &t2, "--name", "host-2"],
    )
    .await;
    let _three = Daemon::start_agent_on(
        3,
        bin(),
        QUIET,
        &["--join", &url, "--token", &t3, "--name", "host-3"],
    )
    .await;
    all_connected(&hub, 2).await;
    let engine2 =
        capstan_engine::Engine::new(Some(&capstan_testkit::swarm_node_host("capt-node2"))).unwrap();
    let engine3 =
        capstan_engine::Engine::new(Some(&capstan_testkit::swarm_node_host("capt-node3"))).unwrap();

    // cut off: host 2 floods, host 3 journals, the hub dies and comes back
    let cut_at = tokio::time::Instant::now();
    let cuts = (
        capstan_testkit::CutLink::cut(2),
        capstan_testkit::CutLink::cut(3),
    );
    let id = engine2
        .create_container(
            &name,
            IMAGE,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do echo \"fleet-part-line $i\"; i=$((i+1)); done; exec sleep 3600",
            ],
            std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    engine2.start_container(&id).await.unwrap();
    let prefix = capstan_testkit::unique("capt-fleet-part");
    let names: Vec<String> = (0..300).map(|i| format!("{prefix}:{i}")).collect();
    for n in &names {
        engine3.tag(IMAGE, n).await.unwrap();
    }
    hub.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.restart().await;
    tokio::time::sleep_until(cut_at + Duration::from_secs(20)).await;
    drop(cuts);

    // back: each line and each event once
    let q = "host:host-2 fleet-part-line";
    crate::logs::wait_for(&hub, q, 20_000, Duration::from_mins(2)).await;
    let (code, out, err) = hub.cli(&["logs", "--all", "-o", "json", q]).await;
    assert_eq!(code, 0, "{err}");
    crate::logs::assert_each_once(&out, 20_000, |line| {
        assert_eq!(line["host"], "host-2", "{line}");
    });
    let arrived = eventually(Duration::from_mins(1), "300 events of host-3", || async {
        let got = tagged(&hub.all_events("type=image&host=host-3").await, &prefix);
        assert!(
            got.len() <= 300,
            "more than host-3 journaled: {}",
            got.len()
        );
        (got.len() == 300).then_some(got)
    })
    .await;
    let mut want = names.clone();
    want.sort();
    assert_eq!(arrived, want, "each event once");
    assert_eq!(
        hosts(&hub)
            .await
            .iter()
            .filter(|h| h.state == "connected")
            .count(),
        2
    );
    engine2.remove_container(&id, true).await.unwrap();
    for n in &names {
        let _ = engine3.remove_image(n, false).await;
    }
    drop(two);
}

/// The ledger of `app` on `daemon`, newest first.
async fn releases(daemon: &Daemon, app: &str) -> Vec<capstan_model::Release> {
    let (code, out, err) = daemon.cli(&["releases", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// An app deployed from the hub to a host (the run's host 2, in its namespace): the host's
/// agent runs the rollout, the hub keeps the ledger. A release whose health gate is still
/// waiting when the host is cut off for 25 s (long enough for both sides to take the
/// connection for dead) finishes on the host by itself, and the hub's ledger has its result
/// once the host is back. Its replicas are listed and it is rolled back from the hub. A
/// command queued while the host is cut off survives the hub killed -9; a release the agent
/// was running when it was killed -9 runs again when it starts. Taken down from the hub, the
/// app goes from the host. A deploy to a
/// host that is down is refused (exit 3) with nothing recorded, and an unknown host name is
/// exit 2.
#[tokio::test]
async fn fleet_an_app_deployed_to_a_host_finishes_there_across_a_cut() {
    let (mut hub, url) = hub_on(&capstan_testkit::docker_host(), "10.217.0.1", "").await;
    let t = token(&hub, &[]).await;
    let mut two = Daemon::start_agent_on(
        2,
        bin(),
        QUIET,
        &["--join", &url, "--token", &t, "--name", "host-2"],
    )
    .await;
    all_connected(&hub, 1).await;
    let app = capstan_testkit::unique("fleet-app");
    let dir = tempfile::tempdir().unwrap();
    let compose = |script: &str, check: &str| {
        format!(
            "name: {app}\nservices:\n  web:\n    image: capt-swarm/busybox:1\n    command: [\"sh\", \"-c\", \"{script}\"]\n    healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"{check}\"]\n      interval: 1s\n      retries: 30\n"
        )
    };

    // release 1, from the hub: run on the host, recorded on the hub
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose("echo one; exec sleep 3600", "true"),
    )
    .unwrap();
    let (code, out, err) = hub
        .cli_in(dir.path(), &["deploy", "--target", "host-2"], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let ledger = releases(&hub, &app).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].result, "succeeded", "{:#?}", ledger[0]);
    assert_eq!(ledger[0].source["target"], "host-2");
    let on_host = two.cli(&["ps", &app, "-o", "json"]).await;
    assert!(on_host.1.contains("\"running\""), "{on_host:?}");
    // what runs there, asked from the hub: the host's agent answers
    let (code, out, err) = hub.cli(&["ps", &app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"running\"") && out.contains(&format!("{app}-web-1")),
        "{out}"
    );

    // release 2 becomes healthy ~8 s after it starts; the host is cut off meanwhile
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose("sleep 8; touch /ready; exec sleep 3600", "test -f /ready"),
    )
    .unwrap();
    let deploying = deploy_in_background(&hub, dir.path());
    eventually(Duration::from_secs(20), "release 2 under way", || async {
        let r = releases(&hub, &app).await;
        (r.len() == 2 && r[0].result == "running").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let _cut = capstan_testkit::CutLink::cut(2);
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(
            releases(&hub, &app).await[0].result,
            "running",
            "the hub cannot know yet"
        );
    }
    returns_succeeded(&hub, &app, deploying, 2).await;

    // rolled back from the hub: release 1 again, on the host
    let (code, out, err) = hub.cli(&["rollback", &app]).await;
    assert_eq!(code, 0, "{out}{err}");
    let ledger = releases(&hub, &app).await;
    assert_eq!(ledger[0].number, 3);
    assert_eq!(ledger[0].result, "succeeded", "{:#?}", ledger[0]);
    assert_eq!(ledger[0].source["rollback_to"], 1);
    assert_eq!(ledger[0].source["target"], "host-2");

    // a deploy queued while the host is cut off, the hub killed -9 meanwhile: the hub kept
    // the command, offers it again once restarted, and records its end
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose("echo four; exec sleep 3600", "true"),
    )
    .unwrap();
    {
        let _cut = capstan_testkit::CutLink::cut(2);
        let queued = deploy_in_background(&hub, dir.path());
        eventually(Duration::from_secs(20), "release 4 queued", || async {
            let r = releases(&hub, &app).await;
            (r[0].number == 4 && r[0].result == "running").then_some(())
        })
        .await;
        hub.kill9().await;
        let _ = queued.await;
        hub.restart().await;
    }
    eventually(
        Duration::from_secs(90),
        "release 4 run and recorded",
        || async {
            let r = releases(&hub, &app).await;
            (r[0].number == 4 && r[0].result == "succeeded").then_some(())
        },
    )
    .await;
    all_connected(&hub, 1).await;

    // the agent killed -9 during a release: started again, it runs the release again and
    // reports it; the caller on the hub waited through it
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose("sleep 6; touch /ready; exec sleep 3600", "test -f /ready"),
    )
    .unwrap();
    let deploying = deploy_in_background(&hub, dir.path());
    eventually(
        Duration::from_secs(20),
        "release 5 under way on the host",
        || async {
            let r = releases(&two, &app).await;
            (r[0].result == "running").then_some(())
        },
    )
    .await;
    two.kill9().await;
    two.restart().await;
    returns_succeeded(&hub, &app, deploying, 5).await;

    // bad input: an unknown host; a host that is down (nothing recorded)
    let (code, _, err) = hub
        .cli_in(dir.path(), &["deploy", "--target", "no-such-host"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    // taken down from the hub: on the host, by its agent
    let (code, out, err) = hub.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{app}-web-1")), "{out}");
    let (code, out, _) = two.cli(&["ps", &app, "-o", "json"]).await;
    assert!(code != 0 || !out.contains("\"running\""), "{out}");
    let ledger = releases(&hub, &app).await;
    assert_eq!(ledger[0].result, "down", "{:#?}", ledger[0]);
    two.kill9().await;
    eventually(Duration::from_secs(30), "host-2 away", || async {
        (hosts(&hub).await[0].state == "away").then_some(())
    })
    .await;
    let (code, _, err) = hub
        .cli_in(dir.path(), &["deploy", "--target", "host-2"], &[])
        .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("host host-2 is not connected"), "{err}");
    assert_eq!(releases(&hub, &app).await.len(), 6, "nothing recorded");
}

/// Waits for a deploy of [`deploy_in_background`] to return (once the host reported), and
/// checks that it did so with success and that the hub's ledger says release `number`
/// succeeded.
async fn returns_succeeded(
    hub: &Daemon,
    app: &str,
    deploying: tokio::task::JoinHandle<std::process::Output>,
    number: i64,
) {
    let out = tokio::time::timeout(Duration::from_mins(2), deploying)
        .await
        .expect("the deploy returns once the host reports")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger = releases(hub, app).await;
    assert_eq!(ledger[0].number, number);
    assert_eq!(ledger[0].result, "succeeded", "{:#?}", ledger[0]);
}

/// `capstan deploy --target host-2` in `dir` against `hub`, on a task of its own.
fn deploy_in_background(
    hub: &Daemon,
    dir: &std::path::Path,
) -> tokio::task::JoinHandle<std::process::Output> {
    let (hub_url, token) = (hub.url.clone(), hub.token.clone());
    let dir = dir.to_owned();
    tokio::spawn(async move {
        tokio::process::Command::new(bin())
            .args(["deploy", "--target", "host-2"])
            .current_dir(dir)
            .env("CAPSTAN_URL", hub_url)
            .env("CAPSTAN_TOKEN", token)
            .output()
            .await
            .unwrap()
    })
}

/// The hub's dashboard: the Hosts page (in the navigation only on a hub) shows each host with
/// its labels, state, how far behind each stream is, its load and containers from the metrics
/// it ships; an admin makes a join token there that lets a second host in, and removes that
/// host, which is cut off at once.
#[tokio::test]
async fn the_hosts_page_shows_each_host_and_an_admin_joins_and_removes_one() {
    use crate::dashboard::{click, shoot, sign_in_with_token, text_of, wait_text};
    let engine = capstan_testkit::docker_host();
    let metrics = "[metrics]\ninterval = \"1s\"\n";
    let (hub, url) = hub_on(&engine, "127.0.0.1", metrics).await;
    let t = token(&hub, &["--labels", "zone=a"]).await;
    let agent_config = format!("{QUIET}{metrics}");
    let _one = Daemon::start_agent(
        bin(),
        &engine,
        &agent_config,
        &["--join", &url, "--token", &t, "--name", "edge-1"],
    )
    .await;
    all_connected(&hub, 1).await;
    // a container of its own on the host, measured there
    let docker = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&docker).await;
    let name = capstan_testkit::unique("capt-edge");
    let id = crate::logs::run_container(&docker, &name, "exec sleep 300").await;
    eventually(
        Duration::from_mins(1),
        "edge-1's metrics on the hub",
        || async {
            let h = hosts(&hub).await;
            (h[0].load1.is_some()
                && h[0].containers.is_some_and(|n| n >= 1)
                && h[0].lag.contains_key("metrics"))
            .then_some(())
        },
    )
    .await;

    let browser = capstan_testkit::Browser::start().await;
    let client = browser.client(1280, 900).await;
    sign_in_with_token(&client, &hub).await;
    click(&client, "#nav-hosts").await;
    wait_text(&client, "#hosts", "edge-1").await;
    for want in ["connected", "zone=a", "metrics ", "events "] {
        wait_text(&client, "#hosts", want).await;
    }
    shoot(&client, "hosts").await;

    // a join token made on the page lets a second host in
    click(&client, "#join-form button").await;
    let shown = wait_text(&client, "#join-token", "capstan-join-1.").await;
    let second = shown.lines().next().unwrap().trim().to_owned();
    let _two = Daemon::start_agent(
        bin(),
        &engine,
        &agent_config,
        &["--join", &url, "--token", &second, "--name", "edge-2"],
    )
    .await;
    all_connected(&hub, 2).await;
    client.refresh().await.unwrap();
    wait_text(&client, "#hosts", "edge-2").await;

    // removed from the page: cut off at once
    click(&client, "button[data-remove='edge-2']").await;
    client.accept_alert().await.unwrap();
    wait_text(&client, "#hosts-said", "Removed edge-2").await;
    let left = hosts(&hub).await;
    assert_eq!(
        left.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["edge-1"]
    );
    assert!(!text_of(&client, "#hosts").await.contains("edge-2"));
    docker.remove_container(&id, true).await.unwrap();
}

/// Deploys from `hub` to `target` an app whose one replica says hello and sleeps, and checks
/// that it runs on the engine at `node`: the app, what it says, and its directory.
async fn deploy_hello(
    hub: &Daemon,
    target: &str,
    node: &str,
) -> (String, String, tempfile::TempDir) {
    let app = capstan_testkit::unique(&format!("fleet-{target}"));
    let marker = format!("{app}-says-hello");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "name: {app}\nservices:\n  web:\n    image: capt-swarm/busybox:1\n    command: [\"sh\", \"-c\", \"echo {marker}; exec sleep 3600\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = hub
        .cli_in(dir.path(), &["deploy", "--target", target], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let names = capstan_testkit::docker(node, &["ps", "--format", "{{.Names}}"]);
    assert!(names.contains(&format!("{app}-web-1")), "{names}");
    (app, marker, dir)
}

/// Hosts without an agent, reached over ssh by an agent the hub runs itself: one whose key is
/// in the known-hosts file joins the fleet, takes an app deployed from the hub (its container
/// on that host's engine), and ships its journal and its logs (through the engine's API) with
/// `host`; one whose key is not is refused, saying why; a published port is refused on the
/// hub before anything is recorded, saying what is lost without an agent.
#[tokio::test]
async fn fleet_a_host_without_an_agent_is_reached_over_ssh_with_its_key_checked() {
    // an OpenSSH server in host 1's network namespace, whose sessions reach its dockerd
    let node = capstan_testkit::swarm_node_host("capt-node1");
    let sshd = capstan_testkit::Sshd::start(
        "10.217.0.11",
        2222,
        Some("/run/netns/capt-swn1"),
        &[("DOCKER_HOST", &node)],
    );
    // more containers than sshd lets one connection multiplex sessions (MaxSessions 10): the
    // agent follows each one's log through the engine, a connection each
    let busy = capstan_testkit::unique("fleet-ssh-busy");
    for i in 0..12 {
        capstan_testkit::docker(
            &node,
            &[
                "run",
                "-d",
                "--name",
                &format!("{busy}-{i}"),
                "capt-swarm/busybox:1",
                "sh",
                "-c",
                "while true; do echo busy; sleep 1; done",
            ],
        );
    }
    let target = |name: &str, known: &str| {
        format!(
            "[[targets]]\nname = \"{name}\"\nkind = \"host\"\ndocker_host = \"{}\"\nknown_hosts = \"{}\"\nidentity = \"{}\"\n",
            sshd.address,
            sshd.path(known),
            sshd.path("client_key"),
        )
    };
    let extra = format!(
        "{}{}",
        target("edge-ssh", "known_hosts"),
        target("edge-forged", "wrong_known_hosts")
    );
    let (hub, _) = hub_on(&capstan_testkit::docker_host(), "127.0.0.1", &extra).await;
    // edge-forged is unreachable at first because its link is not up yet, then because ssh
    // refused its host key: waited for until it says the latter (or the time is up, and the
    // assertion below shows what it says)
    let listed = eventually(Duration::from_mins(1), "edge-ssh connected", || async {
        let h = hosts(&hub).await;
        let ssh = h.iter().find(|h| h.name == "edge-ssh")?;
        let forged = h.iter().find(|h| h.name == "edge-forged")?;
        (ssh.state == "connected"
            && ssh.engine.starts_with("docker ")
            && forged.engine.starts_with("unreachable")
            && !forged.engine.contains("is not up yet"))
        .then_some(h)
    })
    .await;
    let forged = listed.iter().find(|h| h.name == "edge-forged").unwrap();
    assert!(
        forged.engine.contains("Host key verification failed"),
        "{forged:?}\n{}",
        std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default()
    );

    // an app deployed from the hub runs on that host's engine
    let (app, marker, dir) = deploy_hello(&hub, "edge-ssh", &node).await;

    // its journal and its lines reach the hub with `host`
    let q = format!("host:edge-ssh {marker}");
    crate::logs::wait_for(&hub, &q, 1, Duration::from_mins(1)).await;
    // and every busy container's, each through a connection of its own
    eventually(
        Duration::from_mins(1),
        "every busy container's lines",
        || async {
            let page: capstan_model::LogPage = hub
                .get("/api/v1/logs?q=host%3Aedge-ssh%20busy&limit=1000")
                .await;
            let seen: std::collections::BTreeSet<&str> = page
                .lines
                .iter()
                .map(|l| l.origin.container.as_str())
                .filter(|c| c.starts_with(&busy))
                .collect();
            (seen.len() == 12).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the container's start journaled",
        || async {
            let events = hub
                .all_events("host=edge-ssh&type=container&action=start")
                .await;
            events
                .iter()
                .any(|e| e.attributes.get("name") == Some(&format!("{app}-web-1")))
                .then_some(())
        },
    )
    .await;

    // what needs an agent on the host is refused there, saying so
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "name: {app}\nservices:\n  web:\n    image: capt-swarm/busybox:1\n    command: [\"sleep\", \"3600\"]\n    ports: [\"18080:80\"]\n"
        ),
    )
    .unwrap();
    let (code, out, err) = hub
        .cli_in(dir.path(), &["deploy", "--target", "edge-ssh"], &[])
        .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("published ports are served by capstan's proxy"),
        "{err}"
    );
    assert_eq!(releases(&hub, &app).await.len(), 1, "nothing recorded");

    let (code, _, err) = hub.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
    let names = capstan_testkit::docker(&node, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.contains(&format!("{app}-web-1")), "{names}");
    for i in 0..12 {
        capstan_testkit::docker(&node, &["rm", "-f", &format!("{busy}-{i}")]);
    }
}

/// A host without an agent reached over tcp with TLS both ways (the run's hosts' engines
/// listen on :2376 for clients their CA signed): with the CA that signed its engine's
/// certificate it joins the fleet and takes an app deployed from the hub, its lines on the hub
/// with `host`; with another CA its engine is not trusted, and the hub says so. The agents the
/// hub runs stop when it is killed -9.
#[tokio::test]
async fn fleet_a_host_without_an_agent_is_reached_over_tls_with_client_certificates() {
    let good = capstan_testkit::swarm_tls_dir();
    // the same client certificate, but a CA that did not sign the engine's
    let other = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(good.join(f), other.path().join(f)).unwrap();
    }
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=another-ca", "-keyout"])
        .arg(other.path().join("ca-key.pem"))
        .arg("-out")
        .arg(other.path().join("ca.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let target = |name: &str, dir: &std::path::Path| {
        format!(
            "[[targets]]\nname = \"{name}\"\nkind = \"host\"\ndocker_host = \"tcp://10.217.0.13:2376\"\ntls_dir = \"{}\"\n",
            dir.display()
        )
    };
    let extra = format!(
        "{}{}",
        target("edge-tls", &good),
        target("edge-untrusted", other.path())
    );
    let (mut hub, _) = hub_on(&capstan_testkit::docker_host(), "127.0.0.1", &extra).await;
    let listed = eventually(Duration::from_mins(1), "edge-tls connected", || async {
        let h = hosts(&hub).await;
        let tls = h.iter().find(|h| h.name == "edge-tls")?;
        let untrusted = h.iter().find(|h| h.name == "edge-untrusted")?;
        (tls.state == "connected"
            && tls.engine.starts_with("docker ")
            && untrusted.engine.starts_with("unreachable"))
        .then_some(h)
    })
    .await;
    let untrusted = listed.iter().find(|h| h.name == "edge-untrusted").unwrap();
    assert!(
        untrusted.engine.to_lowercase().contains("certificate"),
        "{untrusted:?}"
    );
    let (code, out, err) = hub.cli(&["targets", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let targets: Vec<capstan_model::TargetStatus> = serde_json::from_str(&out).unwrap();
    let status = |name: &str| targets.iter().find(|t| t.name == name).unwrap().clone();
    assert!(status("edge-tls").healthy, "{out}");
    assert!(!status("edge-untrusted").healthy, "{out}");

    let node = capstan_testkit::swarm_node_host("capt-node3");
    let (app, marker, _dir) = deploy_hello(&hub, "edge-tls", &node).await;
    crate::logs::wait_for(
        &hub,
        &format!("host:edge-tls {marker}"),
        1,
        Duration::from_mins(1),
    )
    .await;
    let (code, _, err) = hub.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");

    // the agents the hub ran go with it, even killed -9: none is left dialing the hosts
    let hosts_dir = hub.data_dir().join("hosts").display().to_string();
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &hosts_dir])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(running(), "the hub runs its hosts' agents");
    hub.kill9().await;
    eventually(Duration::from_secs(15), "its agents gone", || async {
        (!running()).then_some(())
    })
    .await;
}
