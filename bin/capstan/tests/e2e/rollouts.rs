//! Rolling updates whose old replicas take their whole grace period to stop (PID 1 ignores
//! SIGTERM): each one leaves rotation and its slot's name, and stops in the background while
//! the next batch starts; one a killed capstan left behind is removed by the next deploy.

use std::time::Duration;

use capstan_model::Container;
use capstan_testkit::{Daemon, eventually, free_port, unique};

use crate::bin;

/// `replicas` busybox httpd answering `$VERSION`, health-gated, start-first one at a time; PID
/// 1 is a shell that ignores SIGTERM (and httpd, its child, never gets it), so a stop takes
/// the whole `stop_grace_period`.
fn app(port: u16, version: &str, replicas: u32) -> String {
    format!(
        r#"services:
  web:
    image: capstan-test/busybox:1
    command: ["sh", "-c", "trap '' TERM; mkdir -p /www; echo $$VERSION > /www/index.html; httpd -f -p 80 -h /www"]
    environment:
      VERSION: {version}
    ports:
      - "{port}:80"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 5s
      retries: 3
    stop_grace_period: 60s
    deploy:
      replicas: {replicas}
      update_config:
        parallelism: 1
        order: start-first
"#
    )
}

/// Every container of `app` (replicas and those set aside), by name.
async fn containers(engine: &capstan_engine::Engine, app: &str) -> Vec<Container> {
    let mut out: Vec<Container> = engine
        .list_containers(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn deploy(daemon: &Daemon, dir: &std::path::Path, app: &str, compose: &str) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, out, err) = daemon.cli_in(dir, &["deploy", "-p", app], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
}

async fn body(addr: &str) -> String {
    reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn old_replicas_stop_in_the_background_out_of_rotation_and_leftovers_go_with_the_next_deploy()
{
    let engine = capstan_testkit::engine().await;
    let mut daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("capt-roll");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    deploy(&daemon, dir.path(), &name, &app(port, "v1", 3)).await;
    let first: Vec<String> = containers(&engine, &name)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(first.len(), 3);

    // the rollout returns while the old replicas still stop (each takes 60 s): it did not wait
    // for them, and they no longer serve
    deploy(&daemon, dir.path(), &name, &app(port, "v2", 3)).await;
    let now = containers(&engine, &name).await;
    let (aside, replicas): (Vec<&Container>, Vec<&Container>) =
        now.iter().partition(|c| c.name.contains("-retiring-"));
    assert_eq!(
        replicas.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        (1..=3)
            .map(|r| format!("{name}-web-{r}"))
            .collect::<Vec<_>>(),
        "the new replicas hold the slots' names"
    );
    assert!(replicas.iter().all(|c| !first.contains(&c.id)));
    assert_eq!(
        aside.len(),
        3,
        "the old ones stop in the background: {now:?}"
    );
    for old in &aside {
        assert!(first.contains(&old.id), "{old:?}");
        let slot = old.name.split("-retiring-").next().unwrap();
        assert!(slot.starts_with(&format!("{name}-web-")), "{}", old.name);
        assert_eq!(old.state, "running", "still in its grace period");
    }
    for _ in 0..20 {
        assert_eq!(body(&addr).await, "v2", "an old replica still in rotation");
    }
    // what runs is three replicas: nothing to do, and the app counts three
    let (code, plan, err) = daemon.cli_in(dir.path(), &["plan", "-p", &name], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("nothing to do"), "{plan}");
    let (_, apps, _) = daemon.cli(&["apps"]).await;
    assert!(
        apps.lines()
            .any(|l| l.starts_with(&name) && l.contains("3/3 running")),
        "{apps}"
    );
    // another release while they stop rolls as usual
    deploy(&daemon, dir.path(), &name, &app(port, "v3", 2)).await;
    assert_eq!(body(&addr).await, "v3");

    // capstan killed while old replicas are set aside: they stay out of rotation, and the
    // next deploy of the app stops and removes them (they still get their grace period)
    daemon.kill9().await;
    daemon.restart().await;
    let left: Vec<String> = containers(&engine, &name)
        .await
        .into_iter()
        .filter(|c| c.name.contains("-retiring-") && c.state == "running")
        .map(|c| c.id)
        .collect();
    assert!(!left.is_empty(), "the kill left replicas set aside");
    deploy(&daemon, dir.path(), &name, &app(port, "v3", 2)).await;
    assert_eq!(body(&addr).await, "v3");
    eventually(
        Duration::from_mins(1),
        "the replicas set aside removed",
        || async {
            let now = containers(&engine, &name).await;
            now.iter()
                .all(|c| !c.name.contains("-retiring-"))
                .then_some(())
        },
    )
    .await;
    let (code, _, err) = daemon.cli(&["down", &name]).await;
    assert_eq!(code, 0, "{err}");
    assert!(containers(&engine, &name).await.is_empty());
}
