//! Container metrics through the daemon: read from this machine's cgroups (v1, cgroupfs),
//! exported at `/metrics` under cAdvisor's names, and scraped by a real Prometheus (Debian's)
//! with the admin token, whose PromQL answers carry the expected values.

use std::time::Duration;

use capstan_engine::ContainerSpec;
use capstan_testkit::{BUSYBOX, Daemon, eventually, unique};

use crate::bin;

/// The value of `metric` for the container `name` in a `/metrics` text.
fn value(text: &str, metric: &str, name: &str) -> Option<f64> {
    let label = format!("name=\"{name}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// A daemon reading every container's metrics each second.
async fn collecting_every_second(engine: &capstan_engine::Engine) -> Daemon {
    Daemon::start_with(
        bin(),
        engine.host(),
        // no history: these tests read the live figures
        "[logs]\ncollect = false\n[metrics]\ninterval = \"1s\"\nhistory = false\n",
    )
    .await
}

async fn scrape(daemon: &Daemon) -> String {
    daemon.metrics_text().await
}

#[tokio::test]
async fn container_metrics_are_exported_with_cadvisors_names_and_scraped_by_prometheus() {
    let engine = capstan_testkit::engine().await;
    let daemon = collecting_every_second(&engine).await;
    let name = unique("capt-metrics");
    let limit: i64 = 64 << 20;
    let spec = ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www".into(),
        ]),
        memory_bytes: Some(limit),
        ..ContainerSpec::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();

    // the limit, usage, cpu and network, under cAdvisor's names and labels
    // every container of the shared engine goes through the stats API: give it time
    let text = eventually(
        Duration::from_mins(2),
        "the container's metrics",
        || async {
            let text = scrape(&daemon).await;
            value(&text, "container_spec_memory_limit_bytes", &name).map(|_| text)
        },
    )
    .await;
    assert_eq!(
        value(&text, "container_spec_memory_limit_bytes", &name),
        Some(limit as f64)
    );
    for metric in [
        "container_cpu_usage_seconds_total",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_fs_reads_bytes_total",
        "container_threads",
        "container_last_seen",
    ] {
        assert!(
            value(&text, metric, &name).is_some(),
            "{metric} missing:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "id=\"/docker/{id}\",name=\"{name}\",image=\"{BUSYBOX}\""
        )),
        "labels"
    );
    assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter"));
    // the host's own, under node_exporter's names
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(
        text.contains(&format!("node_memory_MemTotal_bytes {}\n", total_kb * 1024)),
        "MemTotal"
    );
    // capstan's own: rollouts by how they ended
    assert!(text.contains("# TYPE capstan_releases_total counter"));
    for family in [
        "node_load1 ",
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
        "node_filesystem_avail_bytes{",
        "node_disk_read_bytes_total{",
    ] {
        assert!(text.contains(family), "{family} missing");
    }

    // network counters move when traffic flows
    let inspect = engine.inspect_container_json(&id).await.unwrap();
    let ip = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|n| n.values().find_map(|v| v["IPAddress"].as_str()))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| panic!("no address: {inspect}"))
        .to_owned();
    let before = value(&text, "container_network_receive_bytes_total", &name).unwrap();
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let body = http
            .get(format!("http://{ip}:80/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello\n");
    }
    eventually(
        Duration::from_secs(30),
        "network counters to move",
        || async {
            let text = scrape(&daemon).await;
            let after = value(&text, "container_network_receive_bytes_total", &name)?;
            let sent = value(&text, "container_network_transmit_bytes_total", &name)?;
            (after > before + 20.0 * 60.0 && sent > 20.0 * 100.0).then_some(())
        },
    )
    .await;

    // a real Prometheus scrapes /metrics with the admin token and answers PromQL
    let prometheus = capstan_testkit::Prometheus::start(&daemon.addr(), &daemon.token).await;
    let query = format!("container_spec_memory_limit_bytes{{name=\"{name}\"}}");
    let answer = eventually(Duration::from_mins(1), "Prometheus to have scraped", || {
        let (prometheus, query) = (&prometheus, &query);
        async move { prometheus.query(query).await.first().copied() }
    })
    .await;
    assert_eq!(answer as i64, limit);
    let query =
        format!("container_cpu_usage_seconds_total{{name=\"{name}\",id=\"/docker/{id}\"}} > 0");
    let cpu = eventually(Duration::from_mins(1), "a cpu sample", || {
        let (prometheus, query) = (&prometheus, &query);
        async move { prometheus.query(query).await.first().copied() }
    })
    .await;
    assert!(cpu > 0.0);
    engine.remove_container(&id, true).await.unwrap();
}

/// The container's `cpuacct.usage` (ns) as this machine's cgroup v1 tree has it, and when.
fn cpu_usage(id: &str) -> (f64, std::time::Instant) {
    let paths = [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage"),
    ];
    let text = paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("no cpuacct.usage for {id}"));
    (text.trim().parse().unwrap(), std::time::Instant::now())
}

async fn stats_of(
    daemon: &Daemon,
    name: &str,
    window: Option<&str>,
) -> Option<capstan_model::ContainerStats> {
    let path = match window {
        Some(w) => format!("/api/v1/metrics/containers?window={w}"),
        None => "/api/v1/metrics/containers".to_owned(),
    };
    let list: Vec<capstan_model::ContainerStats> = daemon.get(&path).await;
    list.into_iter().find(|s| s.name == name)
}

/// Waits for the collector's next reading of `name` after `seen`, and returns its time.
async fn next_reading(
    daemon: &Daemon,
    name: &str,
    seen: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    loop {
        if let Some(s) = stats_of(daemon, name, None).await
            && s.to > seen
        {
            return s.to;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A container held to half a core by `cpus: 0.5` burns all it may: the rate capstan reports
/// over a window agrees within 10% with the rate computed here from the same container's
/// cgroup counter over the same window (read right after capstan's readings at its ends).
#[tokio::test]
async fn a_cpu_limited_burner_is_reported_at_its_real_rate() {
    let engine = capstan_testkit::engine().await;
    let daemon = collecting_every_second(&engine).await;
    let name = unique("capt-burn");
    let spec = ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec!["sh".into(), "-c".into(), "while :; do :; done".into()]),
        nano_cpus: Some(500_000_000),
        ..ContainerSpec::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    let first = eventually(Duration::from_secs(30), "a reading with a rate", || async {
        stats_of(&daemon, &name, None)
            .await
            .filter(|s| s.cpu_cores.is_some())
    })
    .await;
    let mut last = first.to;
    let mut compared = None;
    for _ in 0..5 {
        let a = next_reading(&daemon, &name, last).await;
        let (u0, t0) = cpu_usage(&id);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b = next_reading(&daemon, &name, a).await;
        let (u1, t1) = cpu_usage(&id);
        last = b;
        let window = format!("{}ms", (b - a).num_milliseconds());
        let Some(s) = stats_of(&daemon, &name, Some(&window)).await else {
            continue;
        };
        if (s.from, s.to) != (a, b) {
            // a reading came in between: measure again
            continue;
        }
        let ours = (u1 - u0) / 1e9 / (t1 - t0).as_secs_f64();
        compared = Some((s.cpu_cores.unwrap(), ours, s.cpu_throttled));
        break;
    }
    let (reported, measured, throttled) = compared.expect("no window without a reading in between");
    assert!(
        (reported - measured).abs() <= 0.1 * measured,
        "capstan says {reported:.3} cores, the cgroup counter {measured:.3}"
    );
    // it burns, and no faster than its half core (how much of it a loaded host gives it is
    // the host's affair: the agreement above is what capstan answers for)
    assert!(
        measured > 0.02 && measured < 0.6,
        "the burner runs, held to at most half a core: {measured:.3}"
    );
    assert!(throttled.is_some_and(|t| t > 0.0), "{throttled:?}");
    engine.remove_container(&id, true).await.unwrap();
}

/// A remote engine's containers have no cgroups here: the engine's stats API is the source
/// (forced here with `source = "engine"` on the local engine), with the same names and values.
#[tokio::test]
async fn the_stats_api_stands_in_for_cgroups_of_a_remote_engine() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncollect = false\n[metrics]\ninterval = \"2s\"\nsource = \"engine\"\nhistory = false\n",
    )
    .await;
    let name = unique("capt-remote");
    let limit: i64 = 48 << 20;
    let spec = ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec!["sh".into(), "-c".into(), "while :; do :; done".into()]),
        memory_bytes: Some(limit),
        nano_cpus: Some(200_000_000),
        ..ContainerSpec::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    let text = eventually(
        Duration::from_secs(30),
        "the container's metrics",
        || async {
            let text = scrape(&daemon).await;
            value(&text, "container_cpu_usage_seconds_total", &name)
                .filter(|cpu| *cpu > 0.0)
                .map(|_| text)
        },
    )
    .await;
    assert_eq!(
        value(&text, "container_spec_memory_limit_bytes", &name),
        Some(limit as f64)
    );
    assert!(value(&text, "container_memory_working_set_bytes", &name).is_some());
    assert!(value(&text, "container_network_receive_bytes_total", &name).is_some());
    let stats = eventually(Duration::from_mins(2), "a cpu rate", || async {
        stats_of(&daemon, &name, None)
            .await
            .filter(|s| s.cpu_cores.is_some_and(|c| c > 0.0))
    })
    .await;
    assert!(stats.cpu_cores.unwrap() < 0.5, "{stats:?}");
    assert!(daemon.log().contains("through the engine's stats API"));
    engine.remove_container(&id, true).await.unwrap();
}
