//! CRI log benchmark (issue 22): a Kubernetes node's pod log (the kubelet's CRI format, written
//! by `capstan_testkit::KubeletLog`) read and stored, beside the json-file path in the same run:
//! the same lines (every other one JSON, ~200 bytes) written up front as a json-file log that
//! capstan follows the same way (moved in as a build log under its data dir: the same tailer,
//! store and pipeline as a container's file), each on a fresh daemon, twice each, alternating. Printed:
//! lines/s from start to stored, and CPU-seconds per GiB of text, with the ratio CRI /
//! json-file (target: within 10%). Prints figures; asserts nothing. Usage: `bench/run` or
//! `cri CAPSTAN [--lines N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_testkit::procfs::cpu_seconds;
use capstan_testkit::{Daemon, KubeletLog, OwnEngine};

/// The `i`th line: every other one JSON, ~200 bytes.
fn line(i: u64) -> String {
    let pad = "p".repeat(145);
    if i.is_multiple_of(2) {
        format!("{{\"level\":\"info\",\"msg\":\"request handled\",\"i\":{i},\"pad\":\"{pad}\"}}")
    } else {
        format!("plain line {i} user=alice status=200 took 3ms {pad}")
    }
}

/// `total` lines as the engine's json-file records, in `file`.
fn json_file(file: &Path, total: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let base = chrono::Utc::now();
    for i in 0..total {
        let time = (base + chrono::Duration::microseconds(i64::try_from(i).unwrap()))
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let record =
            serde_json::json!({"log": format!("{}\n", line(i)), "stream": "stdout", "time": time});
        writeln!(out, "{record}").unwrap();
    }
    out.flush().unwrap();
}

/// `total` lines as a kubelet writes a container's CRI log (one file: nothing rotated away).
fn cri(pods: &Path, total: u64) {
    let mut log = KubeletLog::new(pods, ("bench", "web-0", "b3nch"), "web", u64::MAX, 2);
    for i in 0..total {
        log.line("stdout", &line(i));
    }
}

/// Starts a daemon on `host` with `config`, `prepare` run on its data dir first; the time and
/// CPU it takes to store `total` lines, and the bytes of text it read.
async fn ingest(
    capstan: &Path,
    host: &str,
    config: &str,
    prepare: impl FnOnce(&Path),
    total: u64,
) -> (Duration, f64, u64) {
    let start = Instant::now();
    let daemon = Daemon::start_prepared(capstan, host, config, prepare).await;
    let pid = daemon.pid().unwrap();
    let stats = loop {
        let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
        if stats["pipeline"]["lines_stored"].as_u64().unwrap_or(0) >= total {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(pid);
    (
        elapsed,
        cpu,
        stats["pipeline"]["bytes_read"].as_u64().unwrap_or(0),
    )
}

#[tokio::main]
async fn main() {
    let (capstan, total) = capstan_bench::args("lines", 1_000_000);
    let own = OwnEngine::start().await;
    let host = own.host();
    let pods = tempfile::tempdir().unwrap();
    let written = Instant::now();
    cri(pods.path(), total);
    // the json-file, written beside the daemons' data dirs (the same filesystem): moved in
    // where capstan reads a build's log before each daemon starts
    let staged = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let json_log = staged.path().join("1.log");
    json_file(&json_log, total);
    println!(
        "{total} lines (~200 bytes, every other one JSON) written up front in each format ({:.1} s); each format stored by a fresh daemon, twice, alternating:",
        written.elapsed().as_secs_f64()
    );
    let none = "[logs]\ncontainers = [\"bench-none-*\"]\n";
    let with_pods = format!("{none}pods = \"{}\"\n", pods.path().display());
    let mut runs: Vec<(&str, f64, f64)> = Vec::new();
    for round in 0..2 {
        for kind in ["json-file", "cri"] {
            let (elapsed, cpu, bytes) = if kind == "cri" {
                ingest(&capstan, &host, &with_pods, |_| {}, total).await
            } else {
                let copy = staged.path().join("copy.log");
                std::fs::hard_link(&json_log, &copy).unwrap();
                let put = move |data: &Path| {
                    let dir = data.join("builds/logs/bench/web");
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::rename(&copy, dir.join("1.log")).unwrap();
                };
                ingest(&capstan, &host, none, put, total).await
            };
            let gib = bytes as f64 / f64::from(1 << 30);
            let per_s = total as f64 / elapsed.as_secs_f64();
            let cpu_per_gib = cpu / gib;
            println!(
                "  round {round} {kind:<9}  {per_s:>9.0} lines/s  {cpu_per_gib:>6.1} CPU-s per GiB  ({:.1} s, {cpu:.1} CPU-s, {:.0} MiB of text; the daemon's start included)",
                elapsed.as_secs_f64(),
                bytes as f64 / f64::from(1 << 20)
            );
            runs.push((kind, per_s, cpu_per_gib));
        }
    }
    let best = |kind: &str, pick: fn(&(&str, f64, f64)) -> f64, max: bool| {
        runs.iter().filter(|r| r.0 == kind).map(pick).fold(
            if max { f64::MIN } else { f64::MAX },
            |a, b| {
                if max { a.max(b) } else { a.min(b) }
            },
        )
    };
    let (j_rate, c_rate) = (best("json-file", |r| r.1, true), best("cri", |r| r.1, true));
    let (j_cpu, c_cpu) = (
        best("json-file", |r| r.2, false),
        best("cri", |r| r.2, false),
    );
    println!(
        "best of two: CRI {c_rate:.0} lines/s vs json-file {j_rate:.0} (ratio {:.2}); CRI {c_cpu:.1} CPU-s per GiB vs {j_cpu:.1} (ratio {:.2}; target: within 10%)",
        c_rate / j_rate,
        c_cpu / j_cpu
    );
    own.shutdown().await;
}
