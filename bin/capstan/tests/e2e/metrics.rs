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

async fn scrape(daemon: &Daemon) -> String {
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test]
async fn container_metrics_are_exported_with_cadvisors_names_and_scraped_by_prometheus() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncollect = false\n[metrics]\ninterval = \"1s\"\n",
    )
    .await;
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
    let text = eventually(
        Duration::from_secs(30),
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
