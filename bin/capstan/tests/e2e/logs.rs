//! Log collection against the real engine: every line of a container's json-file log lands in
//! the store exactly once, also across a kill -9 of capstan in the middle of a flood; long
//! lines are rejoined, streams kept apart, and queries return exactly the expected lines.

use std::collections::HashMap;
use std::time::Duration;

use capstan_model::LogPage;
use capstan_testkit::{BUSYBOX, Daemon, unique};

use crate::bin;

pub(crate) async fn run_container(
    engine: &capstan_engine::Engine,
    name: &str,
    script: &str,
) -> String {
    let id = engine
        .create_container(name, BUSYBOX, &["sh", "-c", script], HashMap::new())
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    id
}

/// A daemon collecting the logs of container `name` only (the run's other tests share the
/// engine).
pub(crate) async fn only_logs_of(engine: &capstan_engine::Engine, name: &str) -> Daemon {
    Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
    )
    .await
}

async fn page(daemon: &Daemon, q: &str, limit: usize) -> LogPage {
    let q = q
        .replace(' ', "%20")
        .replace('"', "%22")
        .replace(':', "%3A");
    daemon
        .get(&format!("/api/v1/logs?q={q}&limit={limit}"))
        .await
}

/// Waits until `q` matches `n` lines (and fails when it matches more).
pub(crate) async fn wait_for(daemon: &Daemon, q: &str, n: u64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = page(daemon, q, 1).await;
        assert!(
            p.total <= n,
            "{q}: {} lines, more than the {n} written",
            p.total
        );
        if p.total == n {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            // what the pipeline and the daemon say, to tell a stuck reader from a slow one
            let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "timed out after {timeout:?} waiting for {n} lines matching {q}: {} stored\n\
                 pipeline: {}\ndaemon log, newest first:\n{}",
                p.total,
                stats["pipeline"],
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `lines` (as `capstan logs -o json` prints them, a line each) end with the
/// numbers 0 to `n - 1`, each once; `check` looks at each line too.
pub(crate) fn assert_each_once(lines: &str, n: u32, check: impl Fn(&serde_json::Value)) {
    let mut numbers: Vec<u32> = lines
        .lines()
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            check(&line);
            let raw = line["raw"].as_str().unwrap();
            raw.rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..n).collect::<Vec<_>>(), "every line once");
}

/// A container running `script` whose json-file rotates at 1 MiB, keeping 3 files.
async fn create_rotating(engine: &capstan_engine::Engine, name: &str, script: &str) -> String {
    create_logging(
        engine,
        name,
        script,
        &[("max-size", "1m"), ("max-file", "3")],
    )
    .await
}

/// A container running `script` with these json-file options.
async fn create_logging(
    engine: &capstan_engine::Engine,
    name: &str,
    script: &str,
    options: &[(&str, &str)],
) -> String {
    let spec = capstan_engine::ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        logging: Some((
            "json-file".into(),
            options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )),
        ..capstan_engine::ContainerSpec::default()
    };
    engine.create_from_spec(name, &spec).await.unwrap()
}

/// Every line is one the script wrote whole (starting with `prefix`, or its last,
/// `written-all`), and none is there twice.
fn each_whole_and_once(lines: &[capstan_model::LogLine], prefix: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for line in lines {
        let text = line.raw.trim_end();
        assert!(
            text == "written-all" || text.starts_with(prefix),
            "a torn line: {text:?}"
        );
        assert!(seen.insert(text.to_owned()), "twice: {text}");
    }
}

/// Waits until the container's line `written-all` (its last) is stored.
async fn last_line_stored(daemon: &Daemon, container: &str) {
    capstan_testkit::eventually(Duration::from_mins(1), "the last line stored", || async {
        (page(daemon, &format!("{container} written-all"), 1)
            .await
            .total
            == 1)
            .then_some(())
    })
    .await;
}

/// Nothing more arrives later either: `q` still matches `n` lines a while after.
async fn stays_at(daemon: &Daemon, q: &str, n: u64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(page(daemon, q, 1).await.total, n, "{q}");
}

#[tokio::test]
async fn lines_are_stored_once_rejoined_and_searchable() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-logs");
    let daemon = only_logs_of(&engine, &name).await;
    let long = "x".repeat(40 * 1024);
    let script = format!(
        "for i in 1 2 3 4 5; do echo \"out line $i\"; echo \"err line $i\" >&2; done; \
         echo '{{\"level\":\"error\",\"msg\":\"payment failed\",\"status\":502}}'; \
         echo 'connection refused by upstream'; \
         echo start-{long}-end; sleep 3600"
    );
    let id = run_container(&engine, &name, &script).await;
    let container = format!("container:{name}");
    wait_for(&daemon, &container, 13, Duration::from_secs(30)).await;

    // streams kept apart, order kept within each
    let out = page(&daemon, &format!("{container} stream:stdout"), 100).await;
    let texts: Vec<String> = out.lines.iter().rev().map(|l| l.raw.clone()).collect();
    assert_eq!(
        &texts[..5],
        [
            "out line 1",
            "out line 2",
            "out line 3",
            "out line 4",
            "out line 5"
        ]
    );
    let err = page(&daemon, &format!("{container} stream:stderr"), 100).await;
    assert_eq!(err.total, 5);
    // the 40 KiB line the engine cut in three comes back whole
    let long_line = page(&daemon, &format!("{container} start*"), 10).await;
    assert_eq!(long_line.total, 1);
    assert_eq!(long_line.lines[0].raw, format!("start-{long}-end"));
    // enrichment
    let l = &out.lines[0];
    assert_eq!(
        (l.origin.container_id.as_str(), l.origin.image.as_str()),
        (id.as_str(), BUSYBOX)
    );
    assert!(!l.origin.host.is_empty() && l.id.starts_with(&id[..12]));
    // the query language
    assert_eq!(
        page(&daemon, &format!("{container} \"connection refused\""), 10)
            .await
            .total,
        1
    );
    assert_eq!(
        page(&daemon, &format!("{container} line -err"), 10)
            .await
            .total,
        5
    );
    assert_eq!(
        page(&daemon, &format!("{container} (payment OR upstream)"), 10)
            .await
            .total,
        2
    );
    let (status, body) = daemon
        .get_raw("/api/v1/logs?q=level%3Aerror%20AND", Some(&daemon.token))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("position 15"), "{message}");
    // the CLI
    let (code, stdout, stderr) = daemon.cli(&["logs", &container, "stream:stderr"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(stdout.contains("err line 5"), "{stdout}");
    let (code, _, stderr) = daemon.cli(&["logs", "(unclosed"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("position"), "{stderr}");

    // a removed container's lines stay searchable
    engine.remove_container(&id, true).await.unwrap();
    stays_at(&daemon, &container, 13).await;
}

/// Kills capstan -9 in the middle of a 200,000-line flood and starts it again: once the first
/// part is stored (committed every 2 s under a flood), with more read and not committed and
/// more still coming; or, should reading outrun the first commit, once `most` is read and none
/// stored.
async fn kill_9_mid_flood(daemon: &mut Daemon, most: u64) {
    let (read, stored) =
        capstan_testkit::eventually(Duration::from_mins(2), "part of the flood read", || async {
            let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
            let p = &stats["pipeline"];
            let read = p["lines_read"].as_u64().unwrap_or_default();
            let stored = p["lines_stored"].as_u64().unwrap_or_default();
            (stored > 0 || read >= most).then_some((read, stored))
        })
        .await;
    daemon.kill9().await;
    eprintln!("killed with {read} of 200000 lines read, {stored} stored");
    assert!(
        read < 200_000,
        "the kill came after the whole flood was read"
    );
    daemon.restart().await;
}

#[tokio::test]
async fn a_flood_lands_exactly_once_across_kill_9() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-flood");
    let mut daemon = only_logs_of(&engine, &name).await;
    let id = run_container(
        &engine,
        &name,
        "i=0; while [ $i -lt 200000 ]; do echo \"flood line $i\"; i=$((i+1)); done; sleep 3600",
    )
    .await;
    let container = format!("container:{name}");
    kill_9_mid_flood(&mut daemon, 150_000).await;
    wait_for(&daemon, &container, 200_000, Duration::from_mins(5)).await;
    for probe in [
        "\"flood line 0\"",
        "\"flood line 123456\"",
        "\"flood line 199999\"",
    ] {
        assert_eq!(
            page(&daemon, &format!("{container} {probe}"), 5)
                .await
                .total,
            1,
            "{probe}"
        );
    }
    stays_at(&daemon, &container, 200_000).await;
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn a_live_tail_starts_with_the_last_lines_then_follows_without_gap_or_repeat() {
    use futures_util::StreamExt;
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-tail");
    let daemon = only_logs_of(&engine, &name).await;
    let id = run_container(
        &engine,
        &name,
        "i=0; while [ $i -lt 40 ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done; sleep 3600",
    )
    .await;
    let container = format!("container:{name}");
    capstan_testkit::eventually(Duration::from_secs(30), "some ticks stored", || async {
        (page(&daemon, &container, 1).await.total >= 5).then_some(())
    })
    .await;
    let mut body = daemon
        .get_stream(&format!("/api/v1/logs/stream?q=container%3A{name}&tail=3"))
        .await
        .bytes_stream();
    let mut buf = String::new();
    let mut ticks: Vec<u32> = Vec::new();
    let mut seqs: Vec<u64> = Vec::new();
    while ticks.len() < 12 {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("the tail went quiet")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let line: capstan_model::LogLine = serde_json::from_str(data.trim()).unwrap();
            seqs.push(line.seq);
            ticks.push(line.raw.trim_start_matches("tick ").parse().unwrap());
        }
    }
    // consecutive ticks: the backlog's last three, then live ones, nothing missed or doubled
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn labels_choose_the_parser_and_the_multiline_joiner() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-parse");
    let daemon = only_logs_of(&engine, &name).await;
    let labels = HashMap::from([
        (
            "io.capstan.logs.parser".to_owned(),
            "grok:%{LOGLEVEL:level} %{GREEDYDATA:msg}".to_owned(),
        ),
        ("io.capstan.logs.multiline".to_owned(), "java".to_owned()),
    ]);
    let script = "echo 'INFO starting up'; \
        echo 'ERROR request failed'; \
        echo -e 'java.lang.IllegalStateException: boom\\n\\tat com.example.App.run(App.java:42)\\n\\tat com.example.App.main(App.java:7)\\nCaused by: java.io.IOException: disk\\n\\t... 2 more'; \
        echo 'INFO done'; sleep 3600";
    let id = engine
        .create_container(&name, BUSYBOX, &["sh", "-c", script], labels)
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    let container = format!("container:{name}");
    // four entries: the trace's five lines are one
    wait_for(&daemon, &container, 4, Duration::from_secs(30)).await;
    let trace = page(&daemon, &format!("{container} IllegalStateException"), 10).await;
    assert_eq!(trace.total, 1);
    let text = &trace.lines[0].raw;
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.ends_with("\t... 2 more"), "{text}");
    // the trace does not fit the grok pattern: kept raw, marked
    assert!(trace.lines[0].parse_error);
    // the grok pattern gave level and message
    let errors = page(&daemon, &format!("{container} level:error"), 10).await;
    assert_eq!(errors.total, 1);
    assert_eq!(errors.lines[0].message, "request failed");
    assert_eq!(
        page(&daemon, &format!("{container} level:info"), 10)
            .await
            .total,
        2
    );
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert!(
        stats["pipeline"]["parse_failures"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn rotation_and_container_restarts_lose_and_repeat_nothing() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-rotate");
    let daemon = only_logs_of(&engine, &name).await;
    // ~100 bytes a record, 40,000 a run, paced: the 1 MiB file rotates every ~10,000 lines,
    // ~5 s, so the three files kept hold ~10 s (a commit slowed by a disk the whole suite
    // shares has stalled reading for several seconds)
    let script = "i=0; while [ $i -lt 40 ]; do j=0; while [ $j -lt 1000 ]; do \
        echo \"rot $i $j padding-padding-padding-padding-padding\"; j=$((j+1)); done; \
        i=$((i+1)); sleep 0.5; done";
    let id = create_rotating(&engine, &name, script).await;
    engine.start_container(&id).await.unwrap();
    let container = format!("container:{name}");
    wait_for(&daemon, &container, 40_000, Duration::from_mins(2)).await;
    // the same container again: its log goes on in the same files
    capstan_testkit::eventually(Duration::from_secs(30), "the first run to end", || async {
        let s = engine.container_status(&id).await.unwrap().unwrap();
        (s.state == "exited").then_some(())
    })
    .await;
    engine.start_container(&id).await.unwrap();
    wait_for(&daemon, &container, 80_000, Duration::from_mins(2)).await;
    for probe in ["\"rot 0 0\"", "\"rot 39 999\"", "\"rot 20 500\""] {
        assert_eq!(
            page(&daemon, &format!("{container} {probe}"), 5)
                .await
                .total,
            2,
            "{probe}"
        );
    }
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert_eq!(stats["pipeline"]["rotated_away_files"], 0, "{stats}");
    stays_at(&daemon, &container, 80_000).await;
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn own_engine_restart_loses_and_repeats_no_line() {
    let mut own = capstan_testkit::OwnEngine::start().await;
    let engine = own.engine().await;
    let name = unique("capt-englog");
    let daemon = Daemon::start_with(
        bin(),
        &own.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
    )
    .await;
    // paced, restarted with the engine: the second run writes into the same log file
    let spec = capstan_engine::ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 1500 ]; do echo \"eng $i\"; i=$((i+1)); sleep 0.01; done; sleep 3600"
                .into(),
        ]),
        restart: Some(("always".into(), 0)),
        init: Some(true),
        ..capstan_engine::ContainerSpec::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    let container = format!("container:{name}");
    capstan_testkit::eventually(Duration::from_mins(1), "some lines stored", || async {
        (page(&daemon, &container, 1).await.total >= 200).then_some(())
    })
    .await;
    let log_path = engine.inspect_container_json(&id).await.unwrap()["LogPath"]
        .as_str()
        .unwrap()
        .to_owned();
    own.restart().await;
    let engine = own.engine().await;
    // the second run ends; then every record in the file must be stored once
    capstan_testkit::eventually(
        Duration::from_mins(2),
        "the second run to finish",
        || async {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.contains("eng 1499").then_some(())
        },
    )
    .await;
    // the file is the truth, counted after the store each time (it only grows): should the
    // engine start the container once more, its lines count as written too
    let written_now = || std::fs::read_to_string(&log_path).unwrap().lines().count() as u64;
    let written = capstan_testkit::eventually(
        Duration::from_mins(1),
        "every line written stored",
        || async {
            let stored = page(&daemon, &container, 1).await.total;
            let written = written_now();
            assert!(
                stored <= written,
                "{stored} lines stored of {written} written"
            );
            (stored == written).then_some(written)
        },
    )
    .await;
    assert!(written > 1500, "two runs wrote {written} lines");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = page(&daemon, &container, 1).await.total;
    let restarts = engine.inspect_container_json(&id).await.unwrap()["RestartCount"].clone();
    assert_eq!(
        stored,
        written_now(),
        "stored vs written, after {restarts} restarts by the engine"
    );
    assert_eq!(
        page(&daemon, &format!("{container} \"eng 1499\""), 5)
            .await
            .total,
        1
    );
    engine.remove_container(&id, true).await.unwrap();
    drop(daemon);
    own.shutdown().await;
}

/// The `local` log driver keeps no json-file: capstan reads such containers through the logs
/// API, resumes it by `since` after a kill -9 and skips the repeat, across a container restart.
#[tokio::test]
async fn another_log_driver_is_read_through_the_api_exactly_once() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-local");
    let mut daemon = only_logs_of(&engine, &name).await;
    // 3 runs of 10,000 stdout lines, 1,000 stderr lines and one 40 KiB line, paced
    let script = "i=0; while [ $i -lt 20 ]; do j=0; while [ $j -lt 500 ]; do \
        echo \"api $i $j\"; j=$((j+1)); done; echo \"err $i\" >&2; echo \"err2 $i\" >&2; \
        i=$((i+1)); sleep 0.1; done; \
        head -c 40000 /dev/zero | tr '\\0' 'x'; echo; \
        k=0; while [ $k -lt 960 ]; do echo \"late $k\" >&2; k=$((k+1)); done";
    let spec = capstan_engine::ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        logging: Some(("local".into(), std::collections::BTreeMap::new())),
        ..capstan_engine::ContainerSpec::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    let container = format!("container:{name}");
    let before = capstan_testkit::eventually(
        Duration::from_mins(1),
        "part of the first run stored",
        || async {
            let total = page(&daemon, &container, 1).await.total;
            (total >= 1_000).then_some(total)
        },
    )
    .await;
    daemon.kill9().await;
    eprintln!("killed with {before} of 11001 lines stored");
    daemon.restart().await;
    wait_for(&daemon, &container, 11_001, Duration::from_mins(2)).await;
    // run it again twice: its log goes on
    for run in 2..=3_u64 {
        capstan_testkit::eventually(Duration::from_mins(1), "the run to end", || async {
            let s = engine.container_status(&id).await.unwrap().unwrap();
            (s.state == "exited").then_some(())
        })
        .await;
        engine.start_container(&id).await.unwrap();
        wait_for(&daemon, &container, 11_001 * run, Duration::from_mins(2)).await;
    }
    for (probe, n) in [
        ("\"api 0 0\" stream:stdout", 3),
        ("\"api 19 499\"", 3),
        ("\"err 7\" stream:stderr", 3),
        ("\"late 959\" stream:stderr", 3),
        ("stream:stderr", 3 * 1_000),
    ] {
        assert_eq!(
            page(&daemon, &format!("{container} {probe}"), 5)
                .await
                .total,
            n,
            "{probe}"
        );
    }
    let long = page(&daemon, &format!("{container} stream:stdout -api"), 5).await;
    assert_eq!(long.total, 3, "the long line, once a run");
    assert!(
        long.lines.iter().all(|l| l.raw.len() == 40_000),
        "rejoined whole"
    );
    stays_at(&daemon, &container, 33_003).await;
    engine.remove_container(&id, true).await.unwrap();
}

/// Lines the engine rotates away while capstan cannot read (SIGSTOP) are counted, per
/// container, in the stats, the metrics and the journal. json-file records carry no sequence
/// numbers, so the count is estimated: the gap in engine time at the writer's pace says how
/// many rotated files went (a busy machine bends the pace, not the count of whole files), and
/// the files kept say how many lines each held: within 3% here. Nothing read is lost or
/// repeated.
#[tokio::test]
async fn lines_rotated_away_while_capstan_is_stopped_are_counted() {
    const RUNS: u64 = 200;
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-lost");
    let daemon = only_logs_of(&engine, &name).await;
    // ~300 bytes a record, 100 records a run, the pace set by the sleeps (steady also when
    // the machine is busy): a 1 MiB file every ~35 runs, ~6 in all
    let pad = "p".repeat(200);
    let script = format!(
        "i=0; while [ $i -lt {RUNS} ]; do j=0; while [ $j -lt 100 ]; do \
        echo \"lost $i $j {pad}\"; j=$((j+1)); done; \
        i=$((i+1)); sleep 0.05; done; echo written-all; sleep 3600"
    );
    let id = create_rotating(&engine, &name, &script).await;
    engine.start_container(&id).await.unwrap();
    // (known once the container runs)
    let log_path = engine.inspect_container_json(&id).await.unwrap()["LogPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let container = format!("container:{name}");
    capstan_testkit::eventually(Duration::from_mins(1), "the first lines", || async {
        (page(&daemon, &container, 1).await.total >= 500).then_some(())
    })
    .await;
    let pid = daemon.pid().unwrap().to_string();
    let signal = |sig: &'static str| {
        let pid = pid.clone();
        async move {
            let ok = tokio::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .await
                .unwrap()
                .success();
            assert!(ok, "kill {sig}");
        }
    };
    signal("-STOP").await;
    capstan_testkit::eventually(
        Duration::from_mins(2),
        "the writer to finish while capstan is stopped",
        || async {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.contains("written-all").then_some(())
        },
    )
    .await;
    signal("-CONT").await;
    let written = RUNS * 100 + 1;
    last_line_stored(&daemon, &container).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = page(&daemon, &container, 1).await.total;
    let lost = written - stored;
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    let estimated = stats["pipeline"]["rotated_away_lines"].as_u64().unwrap();
    let files = stats["pipeline"]["rotated_away_files"].as_u64().unwrap();
    eprintln!(
        "written {written}, stored {stored}, lost {lost}; estimated {estimated} in {files} files"
    );
    assert!(lost > 3_000, "the pause was meant to lose files: {lost}");
    assert!(files >= 1);
    // the files are counted by the kernel (capstan held the log open), the lines they held
    // estimated from their size: off by a few lines a file at most
    assert!(
        estimated.abs_diff(lost) * 100 <= lost,
        "estimated {estimated} for {lost} lost"
    );
    // what was read is there once: the first lines and the last ones
    for probe in ["\"lost 0 0 \"", "\"lost 199 99 \""] {
        assert_eq!(
            page(&daemon, &format!("{container} {probe}"), 5)
                .await
                .total,
            1,
            "{probe}"
        );
    }
    let events = daemon
        .all_events("type=capstan&action=logs_rotated_away")
        .await;
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e.attributes.get("container") == Some(&name))
        .collect();
    assert!(!ours.is_empty(), "journaled: {events:?}");
    assert!(
        ours.iter()
            .all(|e| e.attributes.get("files_counted").map(String::as_str) == Some("exactly")),
        "{ours:?}"
    );
    let journaled: u64 = ours
        .iter()
        .map(|e| e.attributes["lines_estimated"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(journaled, estimated);
    // per container in the API and in `capstan logs --stats`
    assert_eq!(
        stats["pipeline"]["rotated_away_by_container"][&name]["lines_estimated"].as_u64(),
        Some(estimated)
    );
    let (code, out, err) = daemon.cli(&["logs", "--stats"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "rotated away from {name}: {files} files, ~{estimated} lines"
        )),
        "{out}"
    );
    let metrics = daemon.get_stream("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "capstan_logs_container_rotated_away_lines_total{{container=\"{name}\"}} {estimated}"
        )),
        "{metrics}"
    );
    engine.remove_container(&id, true).await.unwrap();
}

/// `max-file = 1` (also what the engine does with `max-size` alone): dockerd 20.10 still
/// renames the full file to `.1` and overwrites that one at the next rotation, so a reader has
/// one file's time to finish it (here ~3 s: a longer stall of capstan, say a slow commit on
/// a loaded disk, loses a file, and counts it). Every line is read once, whole, across 3
/// rotations.
#[tokio::test]
async fn a_log_rotated_with_one_file_kept_is_followed_line_by_line() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-trunc");
    let daemon = only_logs_of(&engine, &name).await;
    let script = "i=0; while [ $i -lt 40 ]; do j=0; while [ $j -lt 50 ]; do \
        echo \"trunc $i $j\"; j=$((j+1)); done; i=$((i+1)); sleep 0.3; done; \
        echo written-all; sleep 3600";
    let id = create_logging(
        &engine,
        &name,
        script,
        &[("max-size", "40k"), ("max-file", "1")],
    )
    .await;
    engine.start_container(&id).await.unwrap();
    let container = format!("container:{name}");
    last_line_stored(&daemon, &container).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = 40 * 50 + 1;
    let stored = page(&daemon, &container, 1).await.total;
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    let p = &stats["pipeline"];
    let estimated = p["rotated_away_lines"].as_u64().unwrap();
    eprintln!("written {written}, stored {stored}, estimated lost {estimated}: {p}");
    // never a piece of a record read as one; nothing lost at this pace
    assert_eq!(p["bad_records"].as_u64(), Some(0), "{p}");
    assert_eq!((stored, estimated), (written, 0), "{p}");
    // every line stored is whole and there once
    let lines = capstan_testkit::eventually(Duration::from_secs(10), "all lines", || async {
        let page = page(&daemon, &container, 5_000).await;
        (page.lines.len() as u64 == stored).then_some(page.lines)
    })
    .await;
    each_whole_and_once(&lines, "trunc ");
    // each rotation frees an inode the next file is likely to get: ids stay apart (a sink
    // that keys on them, like Elasticsearch's `create`, would drop a line sharing one)
    let ids: std::collections::BTreeSet<_> = lines.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids.len(), lines.len());
    engine.remove_container(&id, true).await.unwrap();
}

/// `compress: "true"`: the engine gzips each rotated file (`.1.gz`, ...). Compressed history
/// written before capstan started is read, and a kill -9 while the file being read is
/// compressed resumes in its copy: every line once, none torn, none counted lost.
#[tokio::test]
async fn compressed_rotations_are_read_once_across_kill_9() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-gz");
    // history first (two rotations), then paced: a rotation every ~2 s, four files kept
    let script = "i=0; while [ $i -lt 600 ]; do echo \"gz history $i\"; i=$((i+1)); done; \
        sleep 6; i=0; while [ $i -lt 30 ]; do j=0; while [ $j -lt 50 ]; do \
        echo \"gz paced $i $j\"; j=$((j+1)); done; i=$((i+1)); sleep 0.4; done; \
        echo written-all; sleep 3600";
    let id = create_logging(
        &engine,
        &name,
        script,
        &[("max-size", "20k"), ("max-file", "4"), ("compress", "true")],
    )
    .await;
    engine.start_container(&id).await.unwrap();
    let log_path = engine.inspect_container_json(&id).await.unwrap()["LogPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = std::path::Path::new(&log_path).parent().unwrap().to_owned();
    capstan_testkit::eventually(Duration::from_secs(30), "a compressed file", || async {
        std::fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".gz"))
            .then_some(())
    })
    .await;
    let mut daemon = only_logs_of(&engine, &name).await;
    let container = format!("container:{name}");
    capstan_testkit::eventually(Duration::from_mins(1), "the history and more", || async {
        (page(&daemon, &container, 1).await.total >= 900).then_some(())
    })
    .await;
    daemon.kill9().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    daemon.restart().await;
    last_line_stored(&daemon, &container).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = 600 + 30 * 50 + 1;
    let lines = page(&daemon, &container, 5_000).await.lines;
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    let p = &stats["pipeline"];
    each_whole_and_once(&lines, "gz ");
    assert_eq!(p["bad_records"].as_u64(), Some(0), "{p}");
    assert_eq!(p["rotated_away_files"].as_u64(), Some(0), "{p}");
    assert_eq!(lines.len(), written, "{p}");
    engine.remove_container(&id, true).await.unwrap();
}

/// A daemon collecting only container `name`'s logs within `[logs] memory = "96MiB"` (and
/// `extra` config), the container started with `script`, and how much capstan's heap
/// (`RssAnon`: not the index files it maps) grows, sampled until `n` lines are stored, is
/// checked against that budget. Answers the daemon and the container's id.
async fn stored_within_memory(
    engine: &capstan_engine::Engine,
    name: &str,
    extra: &str,
    script: &str,
    n: u64,
) -> (Daemon, String) {
    const MIB: u64 = 1024;
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\nmemory = \"96MiB\"\n{extra}"),
    )
    .await;
    let pid = daemon.pid().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = capstan_testkit::procfs::rss_anon_kib(pid);
    let id = run_container(engine, name, script).await;
    let container = format!("container:{name}");
    let mut peak = before;
    let deadline = tokio::time::Instant::now() + Duration::from_mins(4);
    while page(&daemon, &container, 1).await.total < n {
        peak = peak.max(capstan_testkit::procfs::rss_anon_kib(pid));
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} lines were not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "RssAnon before {} MiB, peak {} MiB",
        before / MIB,
        peak / MIB
    );
    assert!(
        peak - before <= 96 * MIB,
        "the pipeline grew by {} MiB, more than its 96 MiB",
        (peak - before) / MIB
    );
    (daemon, id)
}

/// A container writing as fast as it can does not push capstan's memory past `[logs] memory`:
/// reading slows down and the json-file holds the rest. Sampled through the whole flood.
#[tokio::test]
async fn a_flood_stays_within_the_configured_memory() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-mem");
    // ~300-byte lines, as fast as the shell goes
    let (daemon, id) = stored_within_memory(
        &engine,
        &name,
        "",
        "i=0; while [ $i -lt 150000 ]; do echo \"mem $i aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"; i=$((i+1)); done; sleep 3600",
        150_000,
    )
    .await;
    assert_eq!(
        page(&daemon, &format!("container:{name}"), 1).await.total,
        150_000
    );
    engine.remove_container(&id, true).await.unwrap();
}

/// A 50 MiB line is stored cut at `[logs] max_line`, marked, the lines around it intact, and
/// the 50 MiB never sit in the daemon's memory (nor in a saved read position).
#[tokio::test]
async fn an_endless_line_is_stored_cut_at_the_cap_within_the_pipelines_memory() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-endless");
    // 50 MiB with no newline (the engine writes it as 3,200 pieces), then one, then a line
    let (daemon, id) = stored_within_memory(
        &engine,
        &name,
        "max_line = \"256KiB\"\n",
        "echo before; head -c 52428800 /dev/zero | tr '\\0' x; echo; echo after; sleep 3600",
        3,
    )
    .await;
    let lines = page(&daemon, &format!("container:{name}"), 10).await.lines;
    let stored: Vec<(usize, bool)> = lines.iter().map(|l| (l.raw.len(), l.truncated)).collect();
    assert_eq!(stored, [(5, false), (256 * 1024, true), (6, false)]);
    assert!(lines[1].raw.bytes().all(|b| b == b'x'));
    engine.remove_container(&id, true).await.unwrap();
}

/// A Swarm target whose manager takes connections and never answers (a host gone quiet behind
/// a firewall) must not hold up the rest: the local engine's lines are still collected at once.
#[tokio::test]
async fn a_cluster_that_never_answers_holds_up_no_local_line() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    // the kernel completes the connections (backlog); nobody ever reads them
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let name = unique("capt-mute");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncontainers = [\"{name}\"]\n\n[[targets]]\nname = \"quiet\"\nkind = \"swarm\"\ndocker_host = \"tcp://{}\"\n",
            mute.local_addr().unwrap()
        ),
    )
    .await;
    let id = run_container(
        &engine,
        &name,
        "for i in 1 2 3; do echo line-$i; done; sleep 600",
    )
    .await;
    wait_for(
        &daemon,
        &format!("container:{name} line*"),
        3,
        Duration::from_secs(20),
    )
    .await;
    engine.remove_container(&id, true).await.unwrap();
    drop(mute);
}

/// A Kubernetes node's pod logs (`[logs] pods`), written by a test kubelet in the CRI format
/// and rotation naming (1 MiB files, ten kept, all rotated files but the newest gzipped), some
/// lines cut in partial records: a flood of 200,000 lines with capstan killed -9 in the
/// middle lands exactly once, each line with its namespace, pod and container.
#[tokio::test]
async fn a_pod_log_flood_with_rotations_lands_exactly_once_across_kill_9() {
    let engine = capstan_testkit::engine().await;
    let pods = tempfile::tempdir().unwrap();
    let pod = unique("web");
    let mut daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncontainers = [\"capt-none-*\"]\npods = \"{}\"\n",
            pods.path().display()
        ),
    )
    .await;
    let dir = pods.path().to_owned();
    let pod_name = pod.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut log = capstan_testkit::KubeletLog::new(
            &dir,
            ("shop", &pod_name, "0c1d2e3f"),
            "web",
            1024 * 1024,
            10,
        );
        for i in 0..200_000 {
            if i % 5000 == 1 {
                let text = format!("cri flood line {i} {}", "y".repeat(200));
                let (a, b) = text.split_at(120);
                log.pieces("stdout", &[a, b]);
            } else {
                log.line("stdout", &format!("cri flood line {i}"));
            }
            if i % 50 == 0 {
                // about 40,000 lines a second: the ten files hold the few seconds capstan
                // is away
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        log.rotations()
    });
    let q = format!("pod:{pod}");
    kill_9_mid_flood(&mut daemon, 100_000).await;
    let rotations = writer.await.unwrap();
    assert!(rotations >= 5, "the flood rotated {rotations} times");
    wait_for(&daemon, &q, 200_000, Duration::from_mins(5)).await;
    for probe in [
        "\"cri flood line 0\"",
        "\"cri flood line 5001\"",
        "\"cri flood line 123456\"",
        "\"cri flood line 199999\"",
    ] {
        assert_eq!(
            page(&daemon, &format!("{q} {probe}"), 5).await.total,
            1,
            "{probe}"
        );
    }
    let one = page(&daemon, &format!("{q} \"cri flood line 5001\""), 1).await;
    let line = &one.lines[0];
    assert_eq!(
        line.raw.len(),
        "cri flood line 5001 ".len() + 200,
        "rejoined"
    );
    assert_eq!(
        (
            line.origin.namespace.as_str(),
            line.origin.pod.as_str(),
            line.origin.container.as_str()
        ),
        ("shop", pod.as_str(), "web")
    );
    let stats: serde_json::Value = daemon.get("/api/v1/logs/stats").await;
    assert_eq!(stats["pipeline"]["bad_records"], 0, "{stats}");
    stays_at(&daemon, &q, 200_000).await;
}

// The pods' labels come from a wire-format server (no API server runs on this machine): it
// answers `GET /api/v1/namespaces/NS/pods/NAME` with the pod the test seeded there.
#[tokio::test]
async fn a_pods_labels_from_its_clusters_api_go_onto_its_lines_and_choose_its_parser() {
    let engine = capstan_testkit::engine().await;
    let api = capstan_testkit::KubeApi::cluster().await;
    let kube = tempfile::tempdir().unwrap();
    let pods = tempfile::tempdir().unwrap();
    let pod = unique("pay");
    api.seed(
        &format!("/api/v1/namespaces/shop/pods/{pod}"),
        "kubelet",
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": "shop", "uid": "7a7b7c7d",
                "labels": {"team": "payments", "tier": "backend"},
                "annotations": {"io.capstan.logs.parser": "grok:%{LOGLEVEL:level} %{GREEDYDATA:msg}"}},
            "spec": {"containers": [{"name": "api", "image": "shop/api:1"}]}}),
    );
    let config = format!(
        "[logs]\ncontainers = [\"capt-none-*\"]\npods = \"{}\"\nlabels = [\"team\"]\npod_labels_from = \"k8s\"\n\n[[targets]]\nname = \"k8s\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"lab\"\n",
        pods.path().display(),
        api.kubeconfig(kube.path()).display()
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let mut log = capstan_testkit::KubeletLog::new(
        pods.path(),
        ("shop", &pod, "7a7b7c7d"),
        "api",
        1024 * 1024,
        5,
    );
    log.line("stdout", "INFO charging card");
    log.line("stderr", "ERROR card declined");
    // a pod the cluster does not know: its lines come without labels, and are not held up
    let mut stray = capstan_testkit::KubeletLog::new(
        pods.path(),
        ("shop", "gone-1", "9e9e9e9e"),
        "api",
        1024 * 1024,
        5,
    );
    stray.line("stdout", "INFO from a pod the cluster forgot");
    let q = format!("pod:{pod}");
    wait_for(&daemon, &q, 2, Duration::from_secs(30)).await;
    wait_for(&daemon, "pod:gone-1", 1, Duration::from_secs(30)).await;
    // the allowlisted label is on the lines, the other not
    let labelled = page(&daemon, &format!("{q} label.team:payments"), 10).await;
    assert_eq!(labelled.total, 2, "{labelled:#?}");
    assert_eq!(
        labelled.lines[0].origin.labels.get("tier"),
        None,
        "tier is not allowlisted"
    );
    // the annotation chose the parser
    let errors = page(&daemon, &format!("{q} level:error"), 10).await;
    assert_eq!(errors.total, 1, "{errors:#?}");
    assert_eq!(errors.lines[0].message, "card declined");
    assert_eq!(
        page(&daemon, "pod:gone-1 label.team:payments", 10)
            .await
            .total,
        0
    );
    // asked once per pod, whatever its lines
    let asked = api
        .seen()
        .iter()
        .filter(|s| s.path == format!("/api/v1/namespaces/shop/pods/{pod}"))
        .count();
    assert_eq!(asked, 1);
}

#[tokio::test]
async fn a_node_agent_without_an_engine_collects_its_pods_logs_and_asks_no_engine() {
    let pods = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    // nothing listens there: were it asked, the log would say so
    let nowhere = format!("unix://{}/docker.sock", run.path().display());
    let daemon = Daemon::start_with(
        bin(),
        &nowhere,
        &format!(
            "[docker]\nenabled = false\n\n[logs]\npods = \"{}\"\n",
            pods.path().display()
        ),
    )
    .await;
    let health = daemon.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    assert!(
        health
            .engine
            .error
            .as_deref()
            .is_some_and(|e| e.contains("without a Docker engine")),
        "{health:?}"
    );
    let pod = unique("agent");
    let mut log = capstan_testkit::KubeletLog::new(
        pods.path(),
        ("kube-system", &pod, "1f2e3d4c"),
        "proxy",
        1024 * 1024,
        5,
    );
    for i in 0..100 {
        log.line("stdout", &format!("agent line {i}"));
    }
    wait_for(&daemon, &format!("pod:{pod}"), 100, Duration::from_secs(30)).await;
    // a deploy needs a target: there is no engine here to run it on
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("compose.yaml"),
        "services:\n  web:\n    image: busybox\n",
    )
    .unwrap();
    let (code, _, err) = daemon.cli_in(app.path(), &["deploy"], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("without a Docker engine"), "{err}");
    let said = daemon.log();
    assert!(
        !said.contains("cannot reach docker engine") && !said.contains("lost the engine"),
        "nothing asked the engine:\n{said}"
    );
}
