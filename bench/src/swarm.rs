//! Swarm benchmark (issue 20): on the three-node Swarm of `scripts/swarm-ground --keep`, a cold
//! deploy of a 10-service app and a 12-replica rolling update, capstan (`deploy --target`,
//! which returns once every task passed its health gate) against `docker stack deploy` plus
//! polling the services until every task runs the new definition, healthy, and the update is
//! completed: the same Compose file, the same images from the same registry, in the same run.
//! Prints figures and ratios; asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_bench::run;
use capstan_engine::Engine;
use capstan_testkit::Daemon;

const MANAGER: &str = "unix:///var/tmp/capstan-swarm/node1/docker.sock";
const REGISTRY: &str = "10.217.0.1:5000";

/// `services` services of `replicas` replicas each, running `image`, with a healthcheck that
/// passes at once (interval 1s) and capstan's update settings (start-first, one at a time).
fn app(services: usize, replicas: usize, image: &str) -> String {
    let mut y = String::from("version: \"3.8\"\nservices:\n");
    for i in 0..services {
        let _ = write!(
            y,
            "  s{i}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    \
             healthcheck: {{test: [\"CMD\", \"true\"], interval: 1s, timeout: 1s, retries: 3}}\n    \
             stop_grace_period: 1s\n    \
             deploy: {{replicas: {replicas}, update_config: {{parallelism: 1, order: start-first, monitor: 1s, failure_action: pause}}}}\n"
        );
    }
    y
}

/// Waits until the services labelled `key=value` number `services`, each with `replicas` tasks
/// running `image` (by tag, digest pinned or not) and no update under way.
async fn converged(
    manager: &Engine,
    key: &str,
    value: &str,
    services: usize,
    replicas: usize,
    image: &str,
) {
    loop {
        let found = manager.swarm_services(key, Some(value)).await.unwrap();
        let ids: Vec<String> = found.iter().map(|s| s.id.clone()).collect();
        let tasks = manager.swarm_tasks(&ids).await.unwrap();
        let settled = found.iter().all(|s| {
            s.update_state.as_deref().is_none_or(|u| u == "completed")
                && tasks
                    .iter()
                    .filter(|t| t.service_id == s.id && t.desired_state == "running")
                    .filter(|t| t.state == "running" && t.image.starts_with(image))
                    .count()
                    == replicas
                && tasks
                    .iter()
                    .filter(|t| t.service_id == s.id && t.desired_state == "running")
                    .count()
                    == replicas
        });
        if found.len() == services && settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until nothing labelled `key=value` is left on the cluster (services and networks).
async fn gone(manager: &Engine, key: &str, value: &str) {
    loop {
        let services = manager.swarm_services(key, Some(value)).await.unwrap();
        let (networks, _) = manager
            .labeled_networks_and_volumes(key, value)
            .await
            .unwrap();
        if services.is_empty() && networks.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Prints both tools' rounds, medians and the ratio of the medians.
fn report(title: &str, ours_name: &str, ours: &[Duration], theirs: &[Duration]) {
    let rounds = |v: &[Duration]| {
        v.iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (c, d) = (median(ours.to_vec()), median(theirs.to_vec()));
    println!(
        "{title}:\n  {ours_name:<27}{:.2} s  (rounds {})\n  {:<27}{:.2} s  (rounds {})\n  ratio {:.2} (target <= 1.0)",
        c.as_secs_f64(),
        rounds(ours),
        "docker stack deploy + poll",
        d.as_secs_f64(),
        rounds(theirs),
        c.as_secs_f64() / d.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let (capstan, _) = capstan_bench::args("none", 0);
    let manager = Engine::new(Some(MANAGER)).unwrap();
    manager
        .negotiate()
        .await
        .expect("the Swarm ground is not there: scripts/swarm-ground --keep");
    // two images of distinct digests in the registry the nodes pull from
    let repo = format!("{REGISTRY}/capt/bench");
    capstan_testkit::push_versions(&manager, &repo, &["v1", "v2"]).await;
    let config =
        format!("[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"{MANAGER}\"\n");
    let daemon = Daemon::start_with(&capstan, MANAGER, &config).await;
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], dir: &Path| capstan_bench::cli(&capstan, &daemon, args, dir);
    let docker = |args: &[&str], dir: &Path| {
        let mut c = tokio::process::Command::new("docker");
        c.arg("-H").arg(MANAGER).args(args).current_dir(dir);
        c
    };
    let v1 = format!("{repo}:v1");
    let v2 = format!("{repo}:v2");

    // cold deploy of 10 services, and taking them down
    std::fs::write(dir.path().join("compose.yaml"), app(10, 1, &v1)).unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let name = format!("benchc{round}");
        let took = run(&mut cli(
            &["deploy", "-p", &name, "--target", "lab"],
            dir.path(),
        ))
        .await;
        ours.push(took);
        run(&mut cli(&["down", &name], dir.path())).await;
        gone(&manager, "io.capstan.app", &name).await;

        let name = format!("benchk{round}");
        let start = Instant::now();
        run(&mut docker(
            &["stack", "deploy", "-c", "compose.yaml", &name],
            dir.path(),
        ))
        .await;
        converged(&manager, "com.docker.stack.namespace", &name, 10, 1, &v1).await;
        theirs.push(start.elapsed());
        run(&mut docker(&["stack", "rm", &name], dir.path())).await;
        gone(&manager, "com.docker.stack.namespace", &name).await;
    }
    report(
        "cold deploy, 10 services on 3 nodes, to converged and healthy (median of 3)",
        "capstan deploy --target",
        &ours,
        &theirs,
    );

    // a rolling update of 12 replicas, one at a time, start-first
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let name = format!("benchr{round}");
        std::fs::write(dir.path().join("compose.yaml"), app(1, 12, &v1)).unwrap();
        run(&mut cli(
            &["deploy", "-p", &name, "--target", "lab"],
            dir.path(),
        ))
        .await;
        std::fs::write(dir.path().join("compose.yaml"), app(1, 12, &v2)).unwrap();
        ours.push(run(&mut cli(&["deploy", "-p", &name], dir.path())).await);
        run(&mut cli(&["down", &name], dir.path())).await;
        gone(&manager, "io.capstan.app", &name).await;

        let name = format!("benchu{round}");
        std::fs::write(dir.path().join("compose.yaml"), app(1, 12, &v1)).unwrap();
        run(&mut docker(
            &["stack", "deploy", "-c", "compose.yaml", &name],
            dir.path(),
        ))
        .await;
        converged(&manager, "com.docker.stack.namespace", &name, 1, 12, &v1).await;
        std::fs::write(dir.path().join("compose.yaml"), app(1, 12, &v2)).unwrap();
        let start = Instant::now();
        run(&mut docker(
            &["stack", "deploy", "-c", "compose.yaml", &name],
            dir.path(),
        ))
        .await;
        converged(&manager, "com.docker.stack.namespace", &name, 1, 12, &v2).await;
        theirs.push(start.elapsed());
        run(&mut docker(&["stack", "rm", &name], dir.path())).await;
        gone(&manager, "com.docker.stack.namespace", &name).await;
    }
    report(
        "rolling update, 12 replicas, parallelism 1, start-first (median of 2)",
        "capstan deploy",
        &ours,
        &theirs,
    );
}
