//! Deploy benchmark (issues 3 and 19): cold deploy and down of a 20-service Compose app whose
//! healthchecks pass at once (interval 1s), capstan against Debian's docker-compose 1.29 and
//! against the engine's own floor (the same 20 containers created and started in parallel
//! through the API, until each passed its first healthcheck), all in the same run and to the
//! same end state: `capstan deploy` returning (it waits for health itself) vs
//! `docker-compose up -d` plus waiting until every container reports healthy. Then a rolling
//! update of 10 replicas whose PID 1 ignores SIGTERM (stop_grace_period 10s), against 10 times
//! what one replica takes to start and pass its first healthcheck. Runs on an engine of its
//! own. Prints figures and ratios; asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_bench::run;
use capstan_engine::Engine;
use capstan_testkit::load::Load;
use capstan_testkit::{Daemon, OwnEngine};

fn app(services: usize) -> String {
    let mut y = String::from("services:\n");
    for i in 0..services {
        let _ = write!(
            y,
            "  s{i}:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    init: true\n    healthcheck: {{test: [\"CMD\", \"true\"], interval: 1s, timeout: 1s, retries: 3}}\n"
        );
    }
    y
}

/// Like [`run`], with what the command printed.
async fn run_out(cmd: &mut tokio::process::Command) -> (Duration, String) {
    let start = Instant::now();
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        start.elapsed(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until `count` running containers labelled `label=value` all report healthy.
async fn all_healthy(engine: &Engine, label: &str, value: &str, count: usize) {
    loop {
        let cs: Vec<_> = engine
            .list_containers(false)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.labels.get(label).map(String::as_str) == Some(value))
            .collect();
        if cs.len() == count && cs.iter().all(|c| c.status.contains("(healthy)")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The engine's floor: `n` containers of the benchmark's kind created and started at once
/// through the API, until each passed its first healthcheck; then removed.
/// With `network`, they join a network of their own (made first, outside the time), as an
/// app's replicas and Compose's containers do; without, the engine's default bridge.
async fn engine_floor(
    engine: &Engine,
    n: usize,
    init: bool,
    network: bool,
    round: usize,
) -> Duration {
    engine_floor_at(engine, n, n, init, network, round).await
}

/// [`engine_floor`] with at most `at_once` creates and starts in flight.
async fn engine_floor_at(
    engine: &Engine,
    n: usize,
    at_once: usize,
    init: bool,
    network: bool,
    round: usize,
) -> Duration {
    use capstan_engine::{ContainerSpec, Healthcheck};
    use futures_util::StreamExt;
    let tag = format!("floor-{n}-{at_once}-{network}-{round}");
    let networks = if network {
        engine
            .ensure_network(&capstan_engine::NetworkSpec {
                name: tag.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        vec![capstan_engine::Attachment {
            network: tag.clone(),
            aliases: vec![],
            ipv4_address: None,
            ipv6_address: None,
        }]
    } else {
        Vec::new()
    };
    let spec = ContainerSpec {
        image: "capstan-test/busybox:1".into(),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        init: Some(init),
        labels: [("capstan.bench".to_owned(), tag.clone())].into(),
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval_ns: Some(1_000_000_000),
            timeout_ns: Some(1_000_000_000),
            retries: Some(3),
            ..Default::default()
        }),
        networks,
        ..Default::default()
    };
    let start = Instant::now();
    let ids: Vec<String> = futures_util::stream::iter((0..n).map(|i| {
        let (spec, name) = (&spec, format!("{tag}-{i}"));
        async move {
            let id = engine.create_from_spec(&name, spec).await.unwrap();
            engine.start_container(&id).await.unwrap();
            id
        }
    }))
    .buffer_unordered(at_once)
    .collect()
    .await;
    all_healthy(engine, "capstan.bench", &tag, n).await;
    let took = start.elapsed();
    // detached first: a busy 20.10 engine may keep a removed container's endpoint otherwise
    futures_util::future::join_all(ids.iter().map(|id| engine.remove_container_detached(id))).await;
    if network && let Err(e) = engine.remove_network(&tag).await {
        println!("(network {tag} left behind: {e})");
    }
    took
}

/// The median of `values`.
fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Where a deploy's time went, from its report: the slowest service's own seconds (create,
/// start, health gate) and the rest (CLI, API, checks, plan, images, networks).
fn breakdown(total: Duration, report: &str) -> String {
    // progress lines, then `{"report": ...}`
    let report: serde_json::Value = report
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["report"].clone())
        .unwrap_or_default();
    let slowest = report["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["seconds"].as_f64())
        .fold(0.0, f64::max);
    format!(
        "slowest service {slowest:.2} s, the rest (CLI, API, checks, plan, images, networks) {:.2} s",
        total.as_secs_f64() - slowest
    )
}

/// Published ports: requests through capstan's proxy against the same requests sent straight to
/// a replica's address, then a rolling update under that load (its failures are counted).
async fn proxy(
    engine: &Engine,
    cli: &impl Fn(&[&str], &Path) -> tokio::process::Command,
    dir: &Path,
) {
    let port = capstan_testkit::free_port();
    let web = |version: &str| {
        format!(
            "services:\n  web:\n    image: capstan-test/busybox:1\n    init: true\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports: [\"{port}:80\"]\n    healthcheck: {{test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1/\"], interval: 1s, timeout: 1s, retries: 3}}\n    deploy: {{replicas: 3, update_config: {{parallelism: 1, order: start-first}}}}\n"
        )
    };
    std::fs::write(dir.join("compose.yaml"), web("v1")).unwrap();
    run(&mut cli(&["deploy", "-p", "benchp", "-o", "json"], dir)).await;
    let replica = engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "benchp-web-1")
        .unwrap();
    let ip = engine
        .container_status(&replica.id)
        .await
        .unwrap()
        .unwrap()
        .addresses
        .into_values()
        .next()
        .unwrap();
    let measure = |load: Load| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        load.finish().await
    };
    // busybox httpd closes every connection, so the fair comparison opens one per request
    let direct = measure(Load::fresh_only(&format!("{ip}:80"), "/", 3)).await;
    let proxied = measure(Load::fresh_only(&format!("127.0.0.1:{port}"), "/", 3)).await;
    let kept = measure(Load::start(&format!("127.0.0.1:{port}"), "/", 0)).await;
    println!("HTTP, 5 s each, 3 clients opening a connection per request:");
    println!(
        "  straight to one replica       {:>7.0} req/s ({} failed)",
        direct.total() as f64 / 5.0,
        direct.failures.len()
    );
    println!(
        "  through capstan proxy (3)     {:>7.0} req/s ({} failed)",
        proxied.total() as f64 / 5.0,
        proxied.failures.len()
    );
    println!(
        "  ratio proxy/direct            {:>7.2}",
        proxied.total() as f64 / direct.total().max(1) as f64
    );
    println!(
        "  one keep-alive client through the proxy: {:.0} req/s on {} connection ({} failed)",
        kept.total() as f64 / 5.0,
        kept.keepalive_connections,
        kept.failures.len()
    );
    std::fs::write(dir.join("compose.yaml"), web("v2")).unwrap();
    let load = Load::start(&format!("127.0.0.1:{port}"), "/", 2);
    let roll = run(&mut cli(&["deploy", "-p", "benchp", "-o", "json"], dir)).await;
    let tally = load.finish().await;
    println!(
        "rolling update of 3 replicas behind the proxy under load: {:.2} s, {} requests, {} failed",
        roll.as_secs_f64(),
        tally.total(),
        tally.failures.len()
    );
    run(&mut cli(&["down", "benchp"], dir)).await;
}

#[tokio::main]
async fn main() {
    let (capstan, _) = capstan_bench::args("none", 0);
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    // the daemon as users run it: log collection on
    let daemon = Daemon::start_with(&capstan, &own.host(), "").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), app(20)).unwrap();
    let cli = |args: &[&str], dir: &Path| capstan_bench::cli(&capstan, &daemon, args, dir);

    if std::env::var_os("FLOOR_ONLY").is_some() {
        for (at_once, network) in [(20, false), (20, true), (8, true), (4, true)] {
            let mut t = Vec::new();
            for round in 0..3 {
                t.push(engine_floor_at(&engine, 20, at_once, true, network, round).await);
            }
            println!(
                "floor with {at_once} at once, own network {network}: {:.2} s",
                median(t).as_secs_f64()
            );
        }
        return;
    }
    let mut rounds = Vec::new();
    let mut breakdowns = Vec::new();
    for round in 0..3 {
        let (c_up, report) = run_out(&mut cli(
            &["deploy", "-p", "benchc", "-o", "json"],
            dir.path(),
        ))
        .await;
        breakdowns.push(breakdown(c_up, &report));
        let c_down = run(&mut cli(&["down", "benchc"], dir.path())).await;
        let start = Instant::now();
        run(tokio::process::Command::new("docker-compose")
            .args(["-p", "benchd", "up", "-d"])
            .current_dir(dir.path())
            .env("DOCKER_HOST", own.host()))
        .await;
        all_healthy(&engine, "com.docker.compose.project", "benchd", 20).await;
        let d_up = start.elapsed();
        let d_down = run(tokio::process::Command::new("docker-compose")
            .args(["-p", "benchd", "down"])
            .current_dir(dir.path())
            .env("DOCKER_HOST", own.host()))
        .await;
        let floor = engine_floor(&engine, 20, true, true, round).await;
        let bare = engine_floor(&engine, 20, true, false, round).await;
        println!(
            "round {round}: capstan deploy {:.2}s down {:.2}s | docker-compose up -d + healthy {:.2}s down {:.2}s | engine floor {:.2}s (default bridge {:.2}s)",
            c_up.as_secs_f64(),
            c_down.as_secs_f64(),
            d_up.as_secs_f64(),
            d_down.as_secs_f64(),
            floor.as_secs_f64(),
            bare.as_secs_f64()
        );
        println!("  capstan: {}", breakdowns[round]);
        rounds.push([c_up, c_down, d_up, d_down, floor, bare]);
    }
    let pick = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
    let (cu, cd, du, dd, fl, bare) = (pick(0), pick(1), pick(2), pick(3), pick(4), pick(5));
    println!("cold deploy of 20 services with healthchecks (median of 3):");
    println!("  capstan deploy            {:>6.2} s", cu.as_secs_f64());
    println!("  docker-compose + healthy  {:>6.2} s", du.as_secs_f64());
    println!(
        "  engine floor              {:>6.2} s  (the same 20 containers on a network of their own, created and started at once through the API, until healthy)",
        fl.as_secs_f64()
    );
    println!(
        "  engine floor, bare        {:>6.2} s  (the same on the engine's default bridge)",
        bare.as_secs_f64()
    );
    println!(
        "  ratio capstan/compose     {:>6.2}  (target <= 0.7)",
        cu.as_secs_f64() / du.as_secs_f64()
    );
    println!(
        "  ratio capstan/floor       {:>6.2}  (target <= 1.1; {:.2} against the bare floor)",
        cu.as_secs_f64() / fl.as_secs_f64(),
        cu.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  ratio compose/floor       {:>6.2}",
        du.as_secs_f64() / fl.as_secs_f64()
    );
    println!(
        "down: capstan {:.2} s, docker-compose {:.2} s, ratio {:.2}",
        cd.as_secs_f64(),
        dd.as_secs_f64(),
        cd.as_secs_f64() / dd.as_secs_f64()
    );

    // a rolling update of 10 replicas, one at a time, start-first, health-gated, whose PID 1
    // ignores SIGTERM (a shell or sleep as PID 1 without init): each old one takes its whole
    // stop_grace_period to stop
    let mut one = Vec::new();
    for round in 0..3 {
        one.push(engine_floor(&engine, 1, false, true, round).await);
    }
    let one = median(one);
    let rolling = "services:\n  web:\n    image: capstan-test/busybox:1\n    command: sleep 3600\n    stop_grace_period: 10s\n    environment: {V: '1'}\n    healthcheck: {test: [\"CMD\", \"true\"], interval: 1s, timeout: 1s, retries: 3}\n    deploy: {replicas: 10, update_config: {parallelism: 1, order: start-first}}\n";
    std::fs::write(dir.path().join("compose.yaml"), rolling).unwrap();
    run(&mut cli(
        &["deploy", "-p", "benchr", "-o", "json"],
        dir.path(),
    ))
    .await;
    std::fs::write(
        dir.path().join("compose.yaml"),
        rolling.replace("V: '1'", "V: '2'"),
    )
    .unwrap();
    let roll = run(&mut cli(
        &["deploy", "-p", "benchr", "-o", "json"],
        dir.path(),
    ))
    .await;
    let ten = one * 10;
    println!(
        "rolling update of 10 replicas (parallelism 1, start-first, health-gated, PID 1 ignores SIGTERM, stop_grace_period 10s):"
    );
    println!(
        "  capstan deploy                        {:>6.2} s",
        roll.as_secs_f64()
    );
    println!(
        "  one replica started until healthy     {:>6.2} s (median of 3, through the API); 10 x that {:.2} s",
        one.as_secs_f64(),
        ten.as_secs_f64()
    );
    println!(
        "  ratio                                 {:>6.2}  (target <= 1.3; each old replica's 10 s stop in the critical path would add 100 s)",
        roll.as_secs_f64() / ten.as_secs_f64()
    );
    // the old replicas stop in the background: down once they are gone
    run(&mut cli(&["down", "benchr"], dir.path())).await;

    proxy(&engine, &cli, dir.path()).await;
    drop(daemon);
    own.shutdown().await;
}
