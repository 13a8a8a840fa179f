//! Plans of Compose apps against what runs on the real engine.

use capstan_deploy::{Action, Names, Plan, SecretPaths, container_spec, labels};
use capstan_testkit::{Daemon, unique};

use crate::bin;

const APP: &str = "services:\n  db:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n  web:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    environment: {MODE: one}\n    depends_on:\n      db: {condition: service_healthy}\n    deploy: {replicas: 2}\n  cache:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n";

#[tokio::test]
async fn plan_shows_what_a_deploy_would_change_and_why() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), APP).unwrap();
    let app = unique("capt-plan");
    let plan_cli = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(["plan", "-f", "compose.yaml", "-p", &app])
            .args(extra)
            .current_dir(dir.path())
            .env("CAPSTAN_URL", &daemon.url)
            .env("CAPSTAN_TOKEN", &daemon.token);
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
        ..Default::default()
    })
    .unwrap()
    .project;
    let names = Names::of(&project);
    let network = names.network(&project, "default");
    engine
        .ensure_network(&network, false, &labels(&app, None, &[]))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (service, replicas) in [("db", 1), ("web", 2), ("cache", 1)] {
        for r in 1..=replicas {
            let spec = container_spec(
                &project,
                service,
                r,
                1,
                &SecretPaths {
                    dir: dir.path().into(),
                },
            )
            .unwrap();
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
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/apps/other/plan", daemon.url))
        .bearer_auth(&daemon.token)
        .json(&project)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/apps/{app}/plan", daemon.url))
        .bearer_auth(&daemon.token)
        .json(&serde_json::json!({"name": app, "services": {"web": {"imagee": "x"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
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
    engine.remove_network(&network).await.unwrap();
}
