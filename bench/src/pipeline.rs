//! Pipeline benchmark (issue 21): push-to-serving time of a small app (a busybox-based
//! Dockerfile with 5 steps, served by busybox httpd behind a 1 s healthcheck), cold and with a
//! warm build cache, capstan's pipeline against the same steps run by hand in the same run.
//!
//! - capstan: from the start of `git push` (its post-receive hook posts a GitHub-format delivery
//!   signed with the app's secret) until the app serves the pushed content. The pipeline
//!   fetches the commit, builds it with BuildKit, pushes it to the registry and redeploys the
//!   app by digest through its health-gated rollout.
//! - by hand: from a working copy that already has the change, `DOCKER_BUILDKIT=1 docker build`,
//!   `docker push`, `capstan deploy` (which waits for health itself), until the app serves it.
//!
//! Cold: the engine's build cache is pruned first (the base image is fetched from the registry
//! again), and capstan's first build of a repository also clones it. Warm: only `index.html`
//! changed, so the first three steps come from the cache. Both sides run on an engine of
//! their own, against a registry of their own, alternating which goes first each round.
//! Prints each run, the medians and the ratios; asserts nothing. Usage: `bench/run` or
//! `pipeline CAPSTAN [--rounds N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_bench::{cli, run};
use capstan_model::Build;
use capstan_testkit::{Daemon, GitServer, OwnEngine, Registry, RegistryOptions, free_port};

/// The app: five steps, the third one slow enough for a warm cache to matter.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}
RUN mkdir -p /www && echo ready > /www/ready
RUN for i in $(seq 1 50000); do echo \"line $i\"; done > /www/lines
COPY index.html /www/index.html
RUN wc -c /www/index.html > /www/size
CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]
"
    )
}

/// The Compose file of either side: the pipeline's names its source and how to build; the
/// hand-run one names the tag the hand-run steps just pushed (`${{TAG}}`).
fn compose(image: &str, port: u16, source: Option<&str>) -> String {
    let head = source.map_or_else(String::new, |url| {
        format!("x-capstan:\n  source:\n    repository: {url}\n    branch: main\n")
    });
    let build = if source.is_some() {
        "    build:\n      context: .\n"
    } else {
        ""
    };
    format!(
        r#"{head}services:
  web:
    image: {image}
{build}    ports: ["{port}:80"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      retries: 3
    stop_grace_period: 1s
"#
    )
}

/// Waits until the app on `port` serves `content`.
async fn serves(http: &reqwest::Client, port: u16, content: &str) {
    let url = format!("http://127.0.0.1:{port}/index.html");
    loop {
        if let Ok(r) = http.get(&url).send().await
            && let Ok(body) = r.text().await
            && body == content
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `docker ARGS` (Debian's docker.io CLI, which has BuildKit built in) against `host`.
fn docker(host: &str, dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/usr/bin/docker");
    c.args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", host)
        .env("DOCKER_BUILDKIT", "1");
    c
}

/// Seconds between two RFC 3339 times.
fn between(from: &str, to: &str) -> f64 {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    (at(to) - at(from)).as_seconds_f64()
}

/// Where a pipeline run's time went, from its build record: delivery and queue, then each step.
fn phases(pushed_at: chrono::DateTime<chrono::Utc>, b: &Build) -> String {
    let queued = (chrono::DateTime::parse_from_rfc3339(&b.queued).unwrap()
        - pushed_at.fixed_offset())
    .as_seconds_f64();
    let started = b.started.as_deref().unwrap();
    let mut out = format!(
        "git push+delivery {queued:.2}, queue {:.2}",
        between(&b.queued, started)
    );
    let mut last = started.to_owned();
    for s in b.detail["steps"].as_array().into_iter().flatten() {
        let t = s["time"].as_str().unwrap();
        let _ = write!(
            out,
            ", {} {:.2}",
            s["step"].as_str().unwrap(),
            between(&last, t)
        );
        t.clone_into(&mut last);
    }
    out
}

struct Side {
    /// (cold, warm) seconds per round.
    times: Vec<(f64, f64)>,
}

struct Bench {
    capstan: std::path::PathBuf,
    daemon: Daemon,
    host: String,
    registry: String,
    base: String,
    http: reqwest::Client,
}

impl Bench {
    async fn prune(&self) {
        let dir = std::env::temp_dir();
        run(&mut docker(&self.host, &dir, &["builder", "prune", "-af"])).await;
    }

    /// One round of the pipeline: a new repository and app, deployed once by hand (not
    /// timed), its hook set; then a cold push and a warm one, timed to serving.
    async fn pipeline(&self, round: usize) -> (f64, f64) {
        let app = format!("pipe{round}");
        let git = GitServer::start(&app).await;
        let port = free_port();
        let image = format!("{}/bench/{app}", self.registry);
        git.push(
            "first",
            &[
                ("Dockerfile", &dockerfile(&self.base)),
                ("index.html", &format!("{app} v1\n")),
                ("compose.yaml", &compose(&image, port, Some(&git.url))),
            ],
        );
        run(&mut cli(
            &self.capstan,
            &self.daemon,
            &["deploy", "-p", &app],
            &git.work(),
        ))
        .await;
        serves(&self.http, port, &format!("{app} v1\n")).await;
        let (code, out, err) = self.daemon.cli(&["hooks", &app, "-o", "json"]).await;
        assert_eq!(code, 0, "{err}");
        let hook: serde_json::Value = serde_json::from_str(&out).unwrap();
        git.hook(
            hook["url"].as_str().unwrap(),
            hook["secret"].as_str().unwrap(),
        );
        let mut times = Vec::new();
        for (kind, version) in [("cold", "v2"), ("warm", "v3")] {
            if kind == "cold" {
                self.prune().await;
            }
            let content = format!("{app} {version}\n");
            let pushed_at = chrono::Utc::now();
            let start = Instant::now();
            let commit = git.push(version, &[("index.html", &content)]);
            serves(&self.http, port, &content).await;
            let secs = start.elapsed().as_secs_f64();
            let b = self.build_of(&app, &commit).await;
            println!(
                "  round {round} capstan  {kind}  {secs:>6.2} s  ({}; {})",
                phases(pushed_at, &b),
                b.builder
            );
            times.push(secs);
        }
        let (code, _, err) = self.daemon.cli(&["down", &app]).await;
        assert_eq!(code, 0, "{err}");
        (times[0], times[1])
    }

    /// The build record of `commit`, once it ended (the app serves it already).
    async fn build_of(&self, app: &str, commit: &str) -> Build {
        loop {
            let builds: Vec<Build> = self.daemon.get(&format!("/api/v1/builds?app={app}")).await;
            if let Some(b) = builds
                .into_iter()
                .find(|b| b.commit == commit && b.finished.is_some())
            {
                assert_eq!(b.status, "succeeded", "{b:#?}");
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The same round by hand: build, push and deploy from a working copy.
    async fn by_hand(&self, round: usize) -> (f64, f64) {
        let app = format!("hand{round}");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let image = format!("{}/bench/{app}", self.registry);
        std::fs::write(dir.path().join("Dockerfile"), dockerfile(&self.base)).unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            compose(&format!("{image}:${{TAG}}"), port, None),
        )
        .unwrap();
        let mut times = Vec::new();
        for (kind, version) in [("first", "v1"), ("cold", "v2"), ("warm", "v3")] {
            if kind == "cold" {
                self.prune().await;
            }
            let content = format!("{app} {version}\n");
            std::fs::write(dir.path().join("index.html"), &content).unwrap();
            let tagged = format!("{image}:{version}");
            let start = Instant::now();
            let build = run(&mut docker(
                &self.host,
                dir.path(),
                &["build", "-q", "-t", &tagged, "."],
            ))
            .await;
            let push = run(&mut docker(
                &self.host,
                dir.path(),
                &["push", "-q", &tagged],
            ))
            .await;
            let deploy = run(cli(
                &self.capstan,
                &self.daemon,
                &["deploy", "-p", &app],
                dir.path(),
            )
            .env("TAG", version))
            .await;
            serves(&self.http, port, &content).await;
            let secs = start.elapsed().as_secs_f64();
            if kind != "first" {
                println!(
                    "  round {round} by hand  {kind}  {secs:>6.2} s  (docker build {:.2}, docker push {:.2}, capstan deploy {:.2})",
                    build.as_secs_f64(),
                    push.as_secs_f64(),
                    deploy.as_secs_f64()
                );
                times.push(secs);
            }
        }
        let (code, _, err) = self.daemon.cli(&["down", &app]).await;
        assert_eq!(code, 0, "{err}");
        (times[0], times[1])
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (capstan, rounds) = capstan_bench::args("rounds", 5);
    let rounds = usize::try_from(rounds).unwrap().max(1);
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let base = format!("{}/bench/base", registry.host());
    capstan_testkit::push_versions(&engine, &base, &["1"]).await;
    let daemon = Daemon::start_with(&capstan, &own.host(), "").await;
    let bench = Bench {
        capstan,
        daemon,
        host: own.host(),
        registry: registry.host(),
        base: format!("{base}:1"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    };
    println!(
        "push-to-serving of a 5-step busybox app, capstan's pipeline vs docker build + docker push + capstan deploy by hand ({rounds} rounds):"
    );
    let mut pipeline = Side { times: Vec::new() };
    let mut hand = Side { times: Vec::new() };
    for round in 0..rounds {
        if round % 2 == 0 {
            pipeline.times.push(bench.pipeline(round).await);
            hand.times.push(bench.by_hand(round).await);
        } else {
            hand.times.push(bench.by_hand(round).await);
            pipeline.times.push(bench.pipeline(round).await);
        }
    }
    println!("medians:");
    for (kind, pick) in [
        ("cold", (|t: &(f64, f64)| t.0) as fn(&(f64, f64)) -> f64),
        ("warm", |t: &(f64, f64)| t.1),
    ] {
        let c = median(pipeline.times.iter().map(pick).collect());
        let h = median(hand.times.iter().map(pick).collect());
        println!(
            "  {kind}: capstan {c:>6.2} s   by hand {h:>6.2} s   ratio {:.3} ({:+.1}% ; target <= +10%)",
            c / h,
            (c / h - 1.0) * 100.0
        );
    }
}
