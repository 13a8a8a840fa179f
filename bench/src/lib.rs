//! What the benchmarks share: reading their command line, starting their containers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `BENCH CAPSTAN [--NAME N]`: the capstan binary (default `target/release/capstan`) and the
/// value of `--name` (`default` when not given).
///
/// # Panics
/// No capstan binary there, or a value that is not a number: a benchmark has no one to report
/// to but its runner.
#[allow(clippy::expect_used)]
pub fn args(name: &str, default: u64) -> (PathBuf, u64) {
    let mut args = std::env::args().skip(1);
    let capstan = args
        .next()
        .map_or_else(|| PathBuf::from("target/release/capstan"), PathBuf::from)
        .canonicalize()
        .expect("the capstan binary (build it with cargo build --release)");
    let mut value = default;
    while let Some(flag) = args.next() {
        if flag == format!("--{name}") {
            value = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag");
        }
    }
    (capstan, value)
}

/// Starts `n` busybox containers named `PREFIX0`, `PREFIX1`, ... running `cmd`; returns their
/// ids and how long that took.
///
/// # Panics
/// The engine refuses: a benchmark has no one to report to but its runner.
#[allow(clippy::expect_used)]
pub async fn start_busybox(
    engine: &capstan_engine::Engine,
    n: u64,
    prefix: &str,
    cmd: &[&str],
) -> (Vec<String>, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = engine
            .create_container(
                &format!("{prefix}{i}"),
                capstan_testkit::BUSYBOX,
                cmd,
                std::collections::HashMap::new(),
            )
            .await
            .expect("create a busybox container");
        engine.start_container(&id).await.expect("start it");
        ids.push(id);
    }
    (ids, started.elapsed())
}

/// Runs `cmd` to its end and returns how long it took.
///
/// # Panics
/// It cannot run, or fails (what it printed is shown).
#[allow(clippy::expect_used)]
pub async fn run(cmd: &mut tokio::process::Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.as_std().get_program().display()));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// `capstan ARGS` in `dir`, talking to `daemon`.
pub fn cli(
    capstan: &std::path::Path,
    daemon: &capstan_testkit::Daemon,
    args: &[&str],
    dir: &std::path::Path,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(capstan);
    c.args(args)
        .current_dir(dir)
        .env("CAPSTAN_URL", &daemon.url)
        .env("CAPSTAN_TOKEN", &daemon.token);
    c
}
