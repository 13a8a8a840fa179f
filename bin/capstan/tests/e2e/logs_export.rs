//! Reading more lines than a page holds: cursors on `GET /api/v1/logs`, and the NDJSON export
//! (`GET /api/v1/logs/export`, `capstan logs … --all`) of a 300,000-line service, every line
//! once and in order, in the memory of a 30,000-line one.

use std::time::Duration;

use capstan_model::{LogLine, LogPage};
use capstan_testkit::{Daemon, procfs, unique};
use futures_util::StreamExt;

use crate::bin;
use crate::logs::{run_container, wait_for};

/// A container printing `n` numbered lines the size of an ordinary access log's.
async fn numbered(engine: &capstan_engine::Engine, name: &str, n: u32) -> String {
    run_container(
        engine,
        name,
        &format!(
            "seq 1 {n} | sed 's|.*|{name} & GET /shop/cart?item=1234 HTTP/1.1 200 512 0.004 \"Mozilla/5.0\"|'; sleep 3600"
        ),
    )
    .await
}

/// The number a `numbered` line carries.
fn number(line: &LogLine) -> u32 {
    line.raw
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered line: {:?}", line.raw))
}

/// Reads an export as it streams (never the whole body at once): each line's number and seq,
/// in the order received.
async fn export(daemon: &Daemon, query: &str) -> Vec<(u32, u64)> {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/logs/export?{query}", daemon.url))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "{query}"
    );
    let mut body = response.bytes_stream();
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.unwrap());
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|b| *b == b'\n') {
            let line: LogLine = serde_json::from_slice(&buf[start..start + end]).unwrap();
            out.push((number(&line), line.seq));
            start += end + 1;
        }
        buf.drain(..start);
    }
    assert!(buf.is_empty(), "the export ends with a whole line");
    out
}

/// Asserts `got` is lines `1..=n` once each, ascending (or descending), seqs in the same order.
fn assert_whole(got: &[(u32, u64)], n: u32, newest_first: bool) {
    assert_eq!(got.len(), n as usize, "every line once");
    let mut want: Vec<u32> = (1..=n).collect();
    if newest_first {
        want.reverse();
    }
    let numbers: Vec<u32> = got.iter().map(|(number, _)| *number).collect();
    if let Some(i) = numbers.iter().zip(&want).position(|(a, b)| a != b) {
        panic!(
            "line {i} of the export is {}, not {} (around it: {:?})",
            numbers[i],
            want[i],
            &numbers[i.saturating_sub(3)..(i + 3).min(numbers.len())]
        );
    }
    assert!(
        got.windows(2)
            .all(|w| (w[0].1 < w[1].1) != newest_first && w[0].1 != w[1].1),
        "seqs in the export's order"
    );
}

/// The daemon's peak resident set while `work` runs, in KiB (the peak is reset first).
async fn peak_during<F: std::future::Future<Output = T>, T>(pid: u32, work: F) -> (u64, T) {
    procfs::reset_peak(pid).unwrap();
    let out = work.await;
    (procfs::rss_kib(pid).1, out)
}

#[tokio::test]
async fn a_busy_service_is_exported_whole_in_order_in_the_memory_of_a_small_one() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (small, big) = (unique("exp-small"), unique("exp-big"));
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{small}\", \"{big}\"]\n"),
    )
    .await;
    let ids = [
        numbered(&engine, &small, 30_000).await,
        numbered(&engine, &big, 300_000).await,
    ];
    wait_for(
        &daemon,
        &format!("container:{small}"),
        30_000,
        Duration::from_mins(3),
    )
    .await;
    wait_for(
        &daemon,
        &format!("container:{big}"),
        300_000,
        Duration::from_mins(5),
    )
    .await;
    let pid = daemon.pid().unwrap();

    // 30,000 lines, then ten times as many: the export's memory does not grow with them
    let (peak_small, got) =
        peak_during(pid, export(&daemon, &format!("q=container:{small}"))).await;
    assert_whole(&got, 30_000, false);
    let (peak_big, got) = peak_during(pid, export(&daemon, &format!("q=container:{big}"))).await;
    assert_whole(&got, 300_000, false);
    eprintln!("peak RSS exporting 30,000 lines: {peak_small} KiB; 300,000 lines: {peak_big} KiB");
    assert!(
        peak_big <= peak_small + 32 * 1024,
        "exporting 300,000 lines peaked at {peak_big} KiB, more than the 30,000-line export's \
         {peak_small} KiB + 32 MiB"
    );

    // newest first, and resumed from a line's position either way
    let got = export(&daemon, &format!("q=container:{small}&order=desc")).await;
    assert_whole(&got, 30_000, true);
    let middle = got[10_000].1; // line 20,000's seq
    let after = export(&daemon, &format!("q=container:{small}&after={middle}")).await;
    assert_eq!(after.first().map(|l| l.0), Some(20_001));
    assert_eq!(after.len(), 10_000);
    let before = export(
        &daemon,
        &format!("q=container:{small}&order=desc&before={middle}"),
    )
    .await;
    assert_eq!(before.first().map(|l| l.0), Some(19_999));
    assert_eq!(before.len(), 19_999);
    // a time range bounds it too: nothing before the containers started
    let none = export(
        &daemon,
        &format!("q=container:{small}&until=2000-01-01T00:00:00Z"),
    )
    .await;
    assert!(none.is_empty());

    // the CLI streams the same, as JSON lines or as text, oldest first
    let (code, out, err) = daemon
        .cli(&["logs", &format!("container:{small}"), "--all", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<LogLine> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u32, u64)> = lines.iter().map(|l| (number(l), l.seq)).collect();
    assert_whole(&got, 30_000, false);
    let (code, out, err) = daemon
        .cli(&[
            "logs",
            &format!("container:{small}"),
            "--all",
            "--order",
            "desc",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("{small}  {small} 30000 GET")),
        "{first}"
    );
    assert_eq!(out.lines().count(), 30_000);

    // bad input: a clear 400 or exit 2, nothing exported
    for (query, says) in [
        ("order=sideways", "neither asc"),
        ("before=5", "add order=desc"),
        ("order=desc&after=5", "drop order=desc"),
        ("after=-1", "not a line's position"),
        ("q=%22unclosed", "position"),
    ] {
        let (status, body) = daemon
            .get_raw(&format!("/api/v1/logs/export?{query}"), Some(&daemon.token))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(says), "{query}: {body}");
    }
    for args in [
        vec!["logs", "--all", "-f"],
        vec!["logs", "--all", "--limit", "5"],
        vec!["logs", "--order", "desc"],
        vec!["logs", "--all", "--order", "desc", "--after", "5"],
    ] {
        let (code, _, err) = daemon.cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    for id in ids {
        engine.remove_container(&id, true).await.unwrap();
    }
}

#[tokio::test]
async fn pages_follow_a_cursor_either_way_without_gap_or_repeat() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let name = unique("pages");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncontainers = [\"{name}\"]\n"),
    )
    .await;
    let id = numbered(&engine, &name, 25_000).await;
    let q = format!("container:{name}");
    wait_for(&daemon, &q, 25_000, Duration::from_mins(3)).await;

    // newest first, 10,000 at a time, following next
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/logs?q={q}&limit=10000");
    let mut pages = 0;
    loop {
        let page: LogPage = daemon.get(&path).await;
        pages += 1;
        assert_eq!(page.total, 25_000, "the total counts every match");
        seen.extend(page.lines.iter().map(|l| (number(l), l.seq)));
        match page.next {
            Some(next) => {
                assert_eq!(Some(next), page.lines.last().map(|l| l.seq));
                path = format!("/api/v1/logs?q={q}&limit=10000&before={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_whole(&seen, 25_000, true);

    // oldest first from the start, by after
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page: LogPage = daemon
            .get(&format!("/api/v1/logs?q={q}&limit=7000&after={after}"))
            .await;
        seen.extend(page.lines.iter().map(|l| (number(l), l.seq)));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_whole(&seen, 25_000, false);

    // an exact fit has no next page
    let page: LogPage = daemon
        .get(&format!(
            "/api/v1/logs?q={q}&limit=5000&after={}",
            seen[19_999].1
        ))
        .await;
    assert_eq!(page.lines.len(), 5000);
    assert_eq!(page.next, None);

    // the CLI says where the next page starts
    let (code, out, err) = daemon.cli(&["logs", &q, "--limit", "3"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3);
    assert!(err.contains("--before"), "{err}");
    let (code, out, err) = daemon
        .cli(&[
            "logs",
            &q,
            "--limit",
            "2",
            "--after",
            &seen[0].1.to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains(&format!("{name} 2 GET")),
        "{out}"
    );

    // both cursors at once is a 400 that says which to give
    let (status, body) = daemon
        .get_raw(
            &format!("/api/v1/logs?q={q}&before=9&after=3"),
            Some(&daemon.token),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("not both"), "{body}");
    engine.remove_container(&id, true).await.unwrap();
}
