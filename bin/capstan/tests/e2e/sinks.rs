//! Sinks through the daemon against real servers: every stored line reaches a file sink and a
//! real ClickHouse (Debian's clickhouse-server) at least once across a kill -9 of capstan and
//! an outage of the server, and ClickHouse's `ReplacingMergeTree` shows each line once.

use std::time::Duration;

use capstan_testkit::{ClickHouse, Daemon, unique};

use crate::bin;
use crate::logs::run_container;

#[tokio::test]
async fn a_file_sink_gets_every_line_at_least_once_across_kill_9() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-sink");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("lines.ndjson");
    let mut daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncontainers = [\"{name}\"]\n[[logs.sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\nquery = \"stream:stdout\"\n",
            file.display()
        ),
    )
    .await;
    let id = run_container(
        &engine,
        &name,
        "i=0; while [ $i -lt 20000 ]; do echo \"sink line $i\"; echo \"noise $i\" >&2; i=$((i+1)); done; sleep 3600",
    )
    .await;
    let ids_in_file = |file: std::path::PathBuf| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // whole lines only: the sink may be writing the last one right now
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let lines: Vec<capstan_model::LogLine> = whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            lines.iter().all(|l| l.origin.stream == "stdout"),
            "the sink's query holds"
        );
        lines
            .into_iter()
            .map(|l| l.id)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    capstan_testkit::eventually(Duration::from_mins(1), "the sink to start shipping", || {
        let f = file.clone();
        async move { (ids_in_file(f) > 0).then_some(()) }
    })
    .await;
    daemon.kill9().await;
    daemon.restart().await;
    // (seen once under a full CI run's load: not every line after 2 min; what the sink and the
    // collector said then is printed, for the next time)
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    loop {
        let ids = ids_in_file(file.clone());
        if ids == 20_000 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "after 2 min the file holds {ids} of the 20000 stdout lines\nsinks: {}\npipeline: {}\ndaemon log, newest first:\n{}",
                stats["sinks"],
                stats["pipeline"],
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert_eq!(stats["sinks"][0]["name"], "archive", "{stats}");
    // the same counters for Prometheus
    let metrics = daemon.get_stream("/metrics").await.text().await.unwrap();
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(sample("capstan_logs_last_seq") >= 40_000.0);
    assert!(sample("capstan_logs_sink_shipped_total{sink=\"archive\"}") >= 0.0);
    assert!(sample("capstan_logs_sink_rejected_total{sink=\"archive\"}") < 0.5);
    assert!(metrics.contains("# TYPE capstan_logs_sink_shipped_total counter"));
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn clickhouse_gets_every_line_once_across_an_outage_and_kill_9() {
    const LINES: u64 = 30_000;
    const FIRST: u64 = 10_000;
    let engine = capstan_testkit::engine().await;
    let mut ch = ClickHouse::start().await;
    let name = unique("capt-ch");
    let table = name.replace('-', "_");
    let mut daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncontainers = [\"{name}\"]\n[[logs.sinks]]\nname = \"ch\"\ntype = \"clickhouse\"\nendpoint = \"{}\"\ntable = \"{table}\"\nbatch_max_lines = 2000\nbatch_timeout = \"100ms\"\n",
            ch.endpoint()
        ),
    )
    .await;
    // a third of the lines, a pause in which the test stops the server, then the rest: those
    // come during the outage
    let id = run_container(
        &engine,
        &name,
        &format!("i=0; while [ $i -lt {LINES} ]; do echo \"ch line $i\"; i=$((i+1)); [ $i -eq {FIRST} ] && sleep 8; done; sleep 3600"),
    )
    .await;
    capstan_testkit::eventually(
        Duration::from_mins(1),
        "the first part in clickhouse",
        || {
            let sql = format!("SELECT count() FROM `{table}` FINAL");
            let ch = &ch;
            async move {
                let out = ch.query_lenient(&sql).await?;
                (out.trim().parse::<u64>().ok()? == FIRST).then_some(())
            }
        },
    )
    .await;
    let engine_kind: String = ch
        .query(&format!(
            "SELECT engine FROM system.tables WHERE database = 'default' AND name = '{table}'"
        ))
        .await;
    assert_eq!(engine_kind.trim(), "ReplacingMergeTree");

    // the outage: the server goes away while lines keep coming; the sink fails and waits
    ch.stop().await;
    capstan_testkit::eventually(
        Duration::from_mins(1),
        "the sink to see the outage",
        || async {
            let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
            (stats["sinks"][0]["failures"].as_u64()? > 0).then_some(())
        },
    )
    .await;
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert!(
        stats["sinks"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach")),
        "{stats}"
    );
    // and capstan dies during it too
    daemon.kill9().await;
    daemon.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ch.resume().await;

    capstan_testkit::eventually(
        Duration::from_mins(3),
        "every line in clickhouse",
        || async {
            let n = count(&ch, &format!("SELECT count() FROM `{table}` FINAL")).await;
            assert!(
                n <= LINES,
                "FINAL shows {n} rows, more than the {LINES} written"
            );
            (n == LINES).then_some(())
        },
    )
    .await;
    assert_eq!(
        count(&ch, &format!("SELECT uniqExact(id) FROM `{table}`")).await,
        LINES
    );
    assert_eq!(
        count(&ch, &format!(
            "SELECT count() FROM (SELECT id FROM `{table}` FINAL GROUP BY id HAVING count() > 1)"
        ))
        .await,
        0
    );
    let raw = ch
        .query(&format!(
            "SELECT raw, stream, container FROM `{table}` FINAL WHERE raw IN ('ch line 0', 'ch line {}') ORDER BY time_nano FORMAT TSV",
            LINES - 1
        ))
        .await;
    assert_eq!(
        raw,
        format!(
            "ch line 0\tstdout\t{name}\nch line {}\tstdout\t{name}\n",
            LINES - 1
        )
    );
    // an answer lost after the insert (capstan killed before its cursor moved): the batches
    // after line 5000 go again, and the table collapses them
    daemon.stop().await;
    std::fs::write(daemon.data_dir().join("logs/sinks/ch.cursor"), "5000").unwrap();
    daemon.restart().await;
    capstan_testkit::eventually(Duration::from_mins(1), "the batches sent again", || async {
        let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
        (stats["sinks"][0]["cursor"] == LINES).then_some(())
    })
    .await;
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert_eq!(stats["sinks"][0]["shipped"], LINES - 5000, "{stats}");
    // (count() without FINAL is no proof either way: background merges collapse repeats too)
    assert_eq!(
        count(&ch, &format!("SELECT count() FROM `{table}` FINAL")).await,
        LINES
    );
    engine.remove_container(&id, true).await.unwrap();
    drop(daemon);
}

async fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.query(sql).await.trim().parse().unwrap()
}
