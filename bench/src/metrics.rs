//! Container metrics benchmark (issue 6). 100 busybox containers run on an engine of the
//! benchmark's own; capstan collects their metrics every second for 60 s: its CPU (as a share
//! of one core) and RSS, and the time to render `/metrics`. Baseline in the same run: one
//! sweep of the engine's stats API over the same containers (`stream=false&one-shot=true`, one
//! after another, as a poller does): its wall time, and the CPU the whole host spends on it
//! (dockerd, containerd, the shims and the poller), against capstan's CPU per sweep. Target:
//! capstan under 2% of one core for 100 containers at 1 s. Prints figures; asserts nothing.
//! Usage: `bench/run` or `metrics CAPSTAN [--containers N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use capstan_testkit::procfs::{cpu_seconds, rss_kib};
use capstan_testkit::{Daemon, OwnEngine};

/// Busy CPU-seconds of the whole host so far (every CPU, idle and iowait excluded).
fn host_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle) as f64 / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (capstan, n) = capstan_bench::args("containers", 100);
    let seconds = 60_u64;
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (ids, took) =
        capstan_bench::start_busybox(&engine, n, "capt-bench-m", &["sleep", "3600"]).await;
    println!(
        "container metrics with {n} running containers (started in {:.1} s):",
        took.as_secs_f64()
    );
    let daemon = Daemon::start_with(
        &capstan,
        &own.host(),
        // the built-in alert rules on, as a user runs it
        "[logs]\ncollect = false\n[images]\nwatch = false\n[metrics]\ninterval = \"1s\"\n[alerts]\n",
    )
    .await;
    let pid = daemon.pid().unwrap();
    // every container read at least once
    loop {
        let stats: Vec<capstan_model::ContainerStats> =
            daemon.get("/api/v1/metrics/containers").await;
        if stats.len() as u64 >= n && stats.iter().all(|s| s.cpu_cores.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cpu0, host0, t0) = (cpu_seconds(pid), host_busy_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, host1, secs) = (
        cpu_seconds(pid),
        host_busy_seconds(),
        t0.elapsed().as_secs_f64(),
    );
    let (rss, peak) = rss_kib(pid);
    let capstan_cpu = cpu1 - cpu0;
    println!(
        "  capstan, 1 s interval for {secs:.0} s: {:.2}% of one core ({:.1} ms CPU per sweep of {n}), RSS {:.1} MB (peak {:.1} MB); the whole host was busy {:.1}% of one core meanwhile",
        capstan_cpu / secs * 100.0,
        capstan_cpu / secs * 1000.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        (host1 - host0) / secs * 100.0,
    );
    // /metrics rendering
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let body = daemon.metrics_text().await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  GET /metrics with {n} containers: {:.1} ms median, {:.1} ms max, {} kB",
        times[times.len() / 2],
        times[times.len() - 1],
        size / 1000
    );
    // the history: what a minute of every sweep costs on disk, and a query over it
    let size = |file: &str| std::fs::metadata(daemon.data_dir().join(file)).map_or(0, |m| m.len());
    let db = size("metrics.db") + size("metrics.db-wal");
    let mut times = Vec::new();
    let mut series = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r: capstan_model::MetricsResult = daemon
            .get("/api/v1/metrics/query?query=rate%28container_cpu_usage_seconds_total%5B10s%5D%29&since=1m&step=1s")
            .await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        series = r.series.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  history: {:.1} MB on disk after {secs:.0} s of 1 s sweeps; rate() of {series} series over the last minute at 1 s steps: {:.1} ms median",
        db as f64 / 1e6,
        times[times.len() / 2],
    );
    drop(daemon);
    // baseline: one sweep of the stats API, one container after another
    let (host0, t0) = (host_busy_seconds(), Instant::now());
    for id in &ids {
        engine.stats_once(id).await.unwrap();
    }
    let (sweep, host_cpu) = (t0.elapsed().as_secs_f64(), host_busy_seconds() - host0);
    let per_sweep = capstan_cpu / secs;
    println!(
        "  baseline, one stats-API sweep of {n}: {sweep:.1} s wall, {host_cpu:.2} CPU-s on the host (dockerd, containerd, shims, poller)"
    );
    println!(
        "  capstan's CPU per sweep / the stats API's: {:.4}x; a sweep every second is {:.0}x faster than the stats API can go (target: under 2% of one core)",
        per_sweep / host_cpu.max(1e-9),
        sweep
    );
    for id in &ids {
        let _ = engine.remove_container(id, true).await;
    }
    own.shutdown().await;
}
