//! Journal ingest benchmark (issue 2): a burst of real engine events made through the engine,
//! events/s persisted and capstan's peak RSS; then capstan's idle RSS with 100 containers and
//! 200 images known. Runs on an engine of its own. Prints figures; asserts nothing.
//!
//! Baseline measured in the same run: `docker events` (the engine's own CLI) following the same
//! burst and writing it to a file, which is the floor for "read every event and keep it".
//!
//! Usage: `bench/run` (builds release binaries first). Sizes: `--events N --containers N
//! --images N`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capstan_engine::Engine;
use capstan_testkit::procfs::{cpu_seconds, rss_kib as rss};
use capstan_testkit::{BUSYBOX, Daemon, OwnEngine, rootfs_with_file};

struct Args {
    capstan: PathBuf,
    events: usize,
    containers: usize,
    images: usize,
}

fn args() -> Args {
    let mut a = Args {
        capstan: PathBuf::from("target/release/capstan"),
        events: 20_000,
        containers: 100,
        images: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--capstan" => a.capstan = value.into(),
            "--events" => a.events = value.parse().unwrap(),
            "--containers" => a.containers = value.parse().unwrap(),
            "--images" => a.images = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Tags and untags until `events` events were made, from `workers` tasks.
async fn burst(engine: &Engine, events: usize, workers: usize, tag: &str) -> Duration {
    let start = Instant::now();
    let per = events / 2 / workers;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let engine = engine.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let r = format!("bench/{tag}-w{w}-{i}:1");
                engine.tag(BUSYBOX, &r).await.unwrap();
                engine.remove_image(&r, false).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn journal_events(daemon: &Daemon) -> i64 {
    daemon.health().await.journal.events
}

#[tokio::main]
async fn main() {
    let args = args();
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    // the daemon as users run it: log collection on
    let mut daemon = Daemon::start_with(&args.capstan, &own.host(), "").await;
    let pid = daemon.pid().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_start, _) = rss(pid);

    // baseline: the engine's own CLI following the same burst into a file
    let baseline_out = std::env::temp_dir().join("capstan-bench-docker-events.jsonl");
    let mut docker_events = tokio::process::Command::new("docker")
        .args(["events", "--format", "{{json .}}"])
        .env("DOCKER_HOST", own.host())
        .stdout(std::fs::File::create(&baseline_out).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("the docker CLI is needed for the baseline");
    let docker_pid = docker_events.id().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = journal_events(&daemon).await;
    let (cpu0, docker_cpu0) = (cpu_seconds(pid), cpu_seconds(docker_pid));
    let t0 = Instant::now();
    let made_in = burst(&engine, args.events, 8, "burst").await;
    let target = before + args.events as i64;
    let mut peak_seen = 0;
    loop {
        let n = journal_events(&daemon).await;
        peak_seen = peak_seen.max(rss(pid).1);
        if n >= target {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_mins(10),
            "journal stuck at {n} of {target}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let persisted_in = t0.elapsed();
    let baseline_lines = loop {
        let lines = std::fs::read_to_string(&baseline_out)
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= args.events || t0.elapsed() > persisted_in + Duration::from_secs(30) {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, docker_hwm) = rss(docker_pid);
    let cpu = cpu_seconds(pid) - cpu0;
    let docker_cpu = cpu_seconds(docker_pid) - docker_cpu0;
    docker_events.kill().await.unwrap();
    let (_, peak) = rss(pid);
    let made_rate = args.events as f64 / made_in.as_secs_f64();
    let persisted_rate = args.events as f64 / persisted_in.as_secs_f64();
    println!(
        "journal ingest: {} engine events made by 8 workers (tag/untag)",
        args.events
    );
    println!(
        "  engine produced them in          {:>8.2} s  ({made_rate:>8.0} events/s)",
        made_in.as_secs_f64()
    );
    println!(
        "  capstan persisted all in         {:>8.2} s  ({persisted_rate:>8.0} events/s, each with inventory and lifecycle)",
        persisted_in.as_secs_f64()
    );
    println!(
        "  lag behind the engine at the end {:>8.0} ms",
        persisted_in.saturating_sub(made_in).as_secs_f64() * 1e3
    );
    println!(
        "  capstan RSS: start {:.1} MB, peak {:.1} MB",
        kib_mb(rss_start),
        kib_mb(peak.max(peak_seen))
    );
    println!(
        "  baseline `docker events > file`: {baseline_lines} lines, peak RSS {:.1} MB",
        kib_mb(docker_hwm)
    );
    println!(
        "  ratio capstan/baseline peak RSS: {:.2}",
        peak.max(peak_seen) as f64 / docker_hwm.max(1) as f64
    );
    let per_k = |cpu: f64| cpu * 1000.0 * 1000.0 / args.events as f64;
    println!(
        "  CPU per 1,000 events: capstan {:.0} ms (capacity ~{:.0} events/s on one core), baseline {:.0} ms; ratio {:.1}",
        per_k(cpu),
        args.events as f64 / cpu.max(0.001),
        per_k(docker_cpu),
        cpu / docker_cpu.max(0.001)
    );

    // idle with many containers and images known
    let t1 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..args.images {
        let r = format!("bench/img{i}:1");
        engine
            .import_rootfs(rootfs_with_file(Some(&r)), &r)
            .await
            .unwrap();
        ids.push(r);
    }
    let mut started = Vec::new();
    for i in 0..args.containers {
        let id = engine
            .create_container(
                &format!("bench-c{i}"),
                BUSYBOX,
                &["sleep", "3600"],
                HashMap::new(),
            )
            .await
            .unwrap();
        engine.start_container(&id).await.unwrap();
        started.push(id);
    }
    println!(
        "idle: made {} images and {} running containers in {:.1} s",
        args.images,
        args.containers,
        t1.elapsed().as_secs_f64()
    );
    // a fresh start: the startup diff learns everything, then the daemon idles
    assert!(daemon.stop().await.success());
    daemon.restart().await;
    let pid = daemon.pid().unwrap();
    let images: capstan_model::ImageList = daemon.get("/api/v1/images").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle, hwm) = rss(pid);
    println!(
        "  capstan idle RSS {:.1} MB (peak {:.1} MB) with {} images and {} containers known; target < 40 MB: {}",
        kib_mb(idle),
        kib_mb(hwm),
        images.images.len(),
        started.len(),
        if kib_mb(idle) < 40.0 { "met" } else { "MISSED" }
    );
    for id in started {
        engine.remove_container(&id, true).await.unwrap();
    }
    drop(daemon);
    own.shutdown().await;
}

fn kib_mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
