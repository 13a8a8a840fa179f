//! Fleet benchmark (issue 23): what a hub costs per host. A hub (`[fleet] listen`, collecting
//! nothing of its own) measured alone, with 3 real agents (`capstan agent`, each a full daemon
//! against the benchmark's engine), with 200 simulated hosts idle (`capstan fleet-load`: the
//! same binary in its load mode, each host on a connection of its own saying hello), and with
//! the same 200 busy (each 50 containers, 100 lines/s, a sweep of their metrics every 10 s:
//! 20,000 lines/s in all). Printed: the hub's CPU (share of a core) and RSS in each phase, its
//! CPU per 10 idle hosts against the target (< 1% of a core), and how long a line written on a
//! host takes to be searchable on the hub under the full load (target: <= 2 s). Prints
//! figures; asserts nothing. Usage: `bench/run` or `fleet CAPSTAN [--hosts N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_testkit::procfs::{cpu_seconds, rss_kib};
use capstan_testkit::{Daemon, OwnEngine, free_port};

/// How long each phase is measured.
const PHASE: Duration = Duration::from_secs(30);

/// The hub's share of a core and its RSS (MiB) over [`PHASE`].
async fn measure(hub: &Daemon) -> (f64, f64) {
    let pid = hub.pid().unwrap();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(PHASE).await;
    let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    let (rss, _) = rss_kib(pid);
    (share, rss as f64 / 1024.0)
}

/// `n` join tokens of `hub`.
async fn tokens(hub: &Daemon, n: u64) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, body) = hub
            .post_raw(
                "/api/v1/hosts/join-tokens",
                &serde_json::json!({"ttl": "1h"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        out.push(body["token"].as_str().unwrap().to_owned());
    }
    out
}

/// `capstan fleet-load` with `hosts`' tokens, each host sending `lines` lines a second.
fn load(capstan: &Path, url: &str, tokens: &Path, dir: &Path, lines: u32) -> tokio::process::Child {
    tokio::process::Command::new(capstan)
        .args(["fleet-load", "--join", url])
        .arg("--tokens")
        .arg(tokens)
        .arg("--dir")
        .arg(dir)
        .args([
            "--lines-per-second",
            &lines.to_string(),
            "--containers",
            "50",
        ])
        .args(["--metrics-every", if lines > 0 { "10s" } else { "0s" }])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// How far behind now the newest line on the hub is, sampled every second for [`PHASE`]:
/// (median, worst) in seconds.
async fn lag(hub: &Daemon) -> (f64, f64) {
    let mut lags = Vec::new();
    let end = Instant::now() + PHASE;
    while Instant::now() < end {
        let page: capstan_model::LogPage = hub.get("/api/v1/logs?q=host%3Asim-0&limit=1").await;
        if let Some(l) = page.lines.first() {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
            lags.push((now - l.time_nano) as f64 / 1e9);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    lags.sort_by(f64::total_cmp);
    let median = lags.get(lags.len() / 2).copied().unwrap_or(f64::NAN);
    (median, lags.last().copied().unwrap_or(f64::NAN))
}

#[tokio::main]
async fn main() {
    let (capstan, hosts) = capstan_bench::args("hosts", 200);
    let own = OwnEngine::start().await;
    let engine = own.host();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let hub = Daemon::start_with(
        &capstan,
        &engine,
        &format!("[logs]\ncollect = false\n[metrics]\ncollect = false\n[fleet]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .await;
    println!(
        "a hub collecting nothing of its own; each phase measured over {} s:",
        PHASE.as_secs()
    );
    let (alone, rss) = measure(&hub).await;
    println!(
        "  alone                         {:>6.2}% of a core  {rss:>6.0} MiB",
        alone * 100.0
    );

    // 3 real agents, idle (their engine runs nothing)
    let mut agents = Vec::new();
    for (i, token) in tokens(&hub, 3).await.iter().enumerate() {
        let name = format!("real-{i}");
        agents.push(
            Daemon::start_agent(
                &capstan,
                &engine,
                "[metrics]\ninterval = \"10s\"\n",
                &["--join", &url, "--token", token, "--name", &name],
            )
            .await,
        );
    }
    let (real, rss) = measure(&hub).await;
    println!(
        "  3 real agents                 {:>6.2}% of a core  {rss:>6.0} MiB  ({:.3}% per host over alone)",
        real * 100.0,
        (real - alone) * 100.0 / 3.0
    );
    drop(agents);

    // simulated hosts: idle, then busy
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, tokens(&hub, hosts).await.join("\n")).unwrap();
    let joined = Instant::now();
    let mut idle = load(&capstan, &url, &file, dir.path(), 0);
    loop {
        let listed: Vec<capstan_model::FleetHost> = hub.get("/api/v1/hosts").await;
        if listed.iter().filter(|h| h.state == "connected").count() as u64 >= hosts {
            break;
        }
        assert!(
            joined.elapsed() < Duration::from_mins(3),
            "the simulated hosts did not connect"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  ({hosts} simulated hosts joined and connected in {:.1} s)",
        joined.elapsed().as_secs_f64()
    );
    let (idle_share, rss) = measure(&hub).await;
    let per_ten = (idle_share - alone) * 100.0 * 10.0 / hosts as f64;
    println!(
        "  {hosts} idle hosts              {:>6.2}% of a core  {rss:>6.0} MiB  ({per_ten:.3}% of a core per 10 idle hosts; target < 1%, ratio {:.2})",
        idle_share * 100.0,
        per_ten / 1.0
    );
    idle.kill().await.unwrap();
    let mut busy = load(&capstan, &url, &file, dir.path(), 100);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let measured = tokio::join!(measure(&hub), lag(&hub));
    let ((busy_share, rss), (median, worst)) = measured;
    println!(
        "  {hosts} busy hosts ({} lines/s)  {:>6.2}% of a core  {rss:>6.0} MiB",
        hosts * 100,
        busy_share * 100.0
    );
    println!(
        "  a line written on a host, searchable on the hub after: median {median:.2} s, worst {worst:.2} s (target <= 2 s, ratio {:.2})",
        worst / 2.0
    );
    busy.kill().await.unwrap();
}
