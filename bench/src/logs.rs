//! Log ingest and query benchmark (issue 4). One container writes 2,000,000 lines (every other
//! one JSON, ~200 bytes) as fast as it can; capstan collects them into its embedded store.
//! Printed: end-to-end lines/s and MiB/s, CPU-seconds per GiB, capstan's peak RSS; and, in the
//! same run, the baseline: a minimal reader that reads and JSON-decodes the same json-file
//! (the physical limit), with the ratio. Then query latency p50/p99 for five query shapes
//! against `grep -c` of the same terms over the raw json-file. Runs on an engine of its own.
//! Prints figures; asserts nothing. Usage: `bench/run` or `logs CAPSTAN [--lines N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capstan_model::LogPage;
use capstan_testkit::procfs::{cpu_seconds, rss_anon_kib, rss_kib};
use capstan_testkit::{BUSYBOX, Daemon, OwnEngine};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Record {
    log: String,
    stream: String,
    time: String,
}

/// The physical limit: read the file and decode every record, nothing else.
fn baseline(path: &std::path::Path) -> (u64, u64, Duration) {
    let start = Instant::now();
    let file = std::fs::File::open(path).unwrap();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let (mut lines, mut bytes) = (0_u64, 0_u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).unwrap();
        if n == 0 {
            break;
        }
        let r: Record = serde_json::from_slice(&line).unwrap();
        bytes += r.log.len() as u64;
        lines += 1;
    }
    (lines, bytes, start.elapsed())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let (capstan, total) = capstan_bench::args("lines", 2_000_000);
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    let name = "bench-logs-writer";
    // collection on, for the writer only
    let daemon = Daemon::start_with(
        &capstan,
        &own.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
    )
    .await;
    let pid = daemon.pid().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // ~200 bytes a line; every other line JSON
    let half = total / 2;
    let pad = "p".repeat(145);
    let script = format!(
        "i=0; while [ $i -lt {half} ]; do \
         echo \"{{\\\"level\\\":\\\"info\\\",\\\"msg\\\":\\\"request handled\\\",\\\"i\\\":$i,\\\"pad\\\":\\\"{pad}\\\"}}\"; \
         echo \"plain line $i user=alice status=200 took 3ms {pad}\"; i=$((i+1)); done; sleep 3600"
    );
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let id = engine
        .create_container(name, BUSYBOX, &["sh", "-c", &script], HashMap::new())
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    let mut peak = 0;
    let mut peak_anon = 0;
    let stored = loop {
        let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
        let stored = stats["pipeline"]["lines_stored"].as_u64().unwrap_or(0);
        peak = peak.max(rss_kib(pid).1);
        peak_anon = peak_anon.max(rss_anon_kib(pid));
        if stored >= total {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    let bytes = stored["pipeline"]["bytes_read"].as_u64().unwrap_or(0);
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let json = engine.inspect_container_json(&id).await.unwrap();
    let path = PathBuf::from(json["LogPath"].as_str().unwrap());
    let (b_lines, b_bytes, b_time) = baseline(&path);
    let file_mib = std::fs::metadata(&path).unwrap().len() as f64 / (1024.0 * 1024.0);
    println!(
        "ingest of {total} lines ({mib:.0} MiB of text, {file_mib:.0} MiB of json-file), one container writing as fast as it can:"
    );
    println!(
        "  capstan, writer start to stored  {:>10.0} lines/s  {:>7.1} MiB/s  ({:.1} s)",
        total as f64 / elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  capstan CPU                      {:>10.1} CPU-s per GiB  ({:.1} MiB/s per core busy)",
        cpu / (mib / 1024.0),
        mib / cpu
    );
    println!(
        "  capstan peak RSS                 {:>10.1} MB  (heap, RssAnon: {:.1} MB; the rest is mapped index files)",
        peak as f64 / 1024.0,
        peak_anon as f64 / 1024.0
    );
    println!(
        "  baseline: read + JSON-decode     {:>10.0} lines/s  {:>7.1} MiB/s  ({b_lines} lines, {:.0} MiB)",
        b_lines as f64 / b_time.as_secs_f64(),
        b_bytes as f64 / (1024.0 * 1024.0) / b_time.as_secs_f64(),
        b_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  ratio capstan per core / baseline {:>9.2}  (target: >= 25 MiB/s per core into the indexed store)",
        (mib / cpu) / (b_bytes as f64 / (1024.0 * 1024.0) / b_time.as_secs_f64())
    );

    // queries: latency through the API vs grep -c over the json-file
    let shapes: [(&str, &str, &str); 5] = [
        ("term", "handled", "handled"),
        ("phrase", "\"request handled\"", "request handled"),
        ("field", "level:info", "\\\"level\\\":\\\"info\\\""),
        ("boolean", "alice AND NOT handled", "alice"),
        ("rare term", "\"plain line 777777\"", "plain line 777777 "),
    ];
    println!(
        "queries over {total} lines, 20 runs each (API, limit 100, count of all matches) vs grep -c (5 runs, median):"
    );
    for (shape, q, grep) in shapes {
        let mut times = Vec::new();
        let mut matched = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let url = format!(
                "/api/v1/logs?q={}&limit=100",
                q.replace(' ', "%20")
                    .replace('"', "%22")
                    .replace(':', "%3A")
            );
            let page: LogPage = daemon.get(&url).await;
            times.push(t.elapsed());
            matched = page.total;
        }
        let mut greps = Vec::new();
        let mut grep_count = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = std::process::Command::new("grep")
                .args(["-c", "-F", grep])
                .arg(&path)
                .output()
                .unwrap();
            greps.push(t.elapsed());
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .clone_into(&mut grep_count);
        }
        let p50 = percentile(&mut times, 0.5);
        let p99 = percentile(&mut times, 0.99);
        let g = percentile(&mut greps, 0.5);
        println!(
            "  {shape:<10} {q:<26} p50 {:>7.1} ms  p99 {:>7.1} ms  ({matched} lines) | grep -c {:>7.1} ms ({grep_count}) | grep/capstan {:>6.1}x",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            g.as_secs_f64() * 1000.0,
            g.as_secs_f64() / p50.as_secs_f64()
        );
    }
    engine.remove_container(&id, true).await.unwrap();
    drop(daemon);
    own.shutdown().await;
}
