//! `capstan deploy`, `capstan apps`, `capstan releases`, `capstan down`.

use std::io::IsTerminal as _;

use capstan_model::{AppSummary, ExitStatus, Outcome, Progress, Release, Report};
use clap::Args;

use super::client::Client;
use super::config::{ComposeArgs, deploy_request};
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    compose: ComposeArgs,
    /// Do not build services with `build:`; use the images they already have.
    #[arg(long)]
    no_build: bool,
    /// Pull every image first, as `pull_policy: always` does (a tag pushed again is deployed;
    /// `never` and `build` services are not pulled).
    #[arg(long)]
    pull: bool,
    /// Where to run the app: a target of `capstan targets` (default: where the app runs now,
    /// else the local engine). An app lives on one target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

/// `?pull=true&target=NAME`, as a deploy and a plan ask.
pub(super) fn deploy_query(pull: bool, target: Option<&str>) -> String {
    let mut pairs = Vec::new();
    if pull {
        pairs.push("pull=true".to_owned());
    }
    if let Some(t) = target {
        pairs.push(format!("target={}", super::policy::encoded(t)));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Deploys; exit 1 when the release failed or was rolled back.
pub async fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let mut loaded = args.compose.load()?;
    let app = loaded.project.name.clone().unwrap_or_default();
    let client = Client::from_env()?;
    if args.no_build {
        for (name, s) in &mut loaded.project.services {
            if s.build.is_some() {
                s.image = Some(super::build::image_name(&app, name, s.image.as_deref()));
            }
        }
    } else {
        super::build::build_all(&client, &mut loaded.project, args.out.output).await?;
    }
    let request = deploy_request(&args.compose, loaded)?;
    let report = follow(
        &client,
        &format!(
            "/api/v1/apps/{app}/deploy{}",
            deploy_query(args.pull, args.target.as_deref())
        ),
        &request,
        args.out.output,
    )
    .await?;
    show(&app, &report, args.out.output)
}

/// Posts a deploy or rollback and prints its steps as they happen (JSON lines with `-o json`);
/// returns the final report.
async fn follow<B: serde::Serialize>(
    client: &Client,
    path: &str,
    body: &B,
    output: Output,
) -> Result<Report, Failure> {
    let mut report = None;
    let mut live = (output == Output::Table && std::io::stdout().is_terminal()).then(Live::new);
    client
        .post_lines(path, body, |line| {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("capstan: unexpected line from the daemon: {e}"),
                )
            })?;
            if let Some(r) = value.get("report") {
                report = Some(serde_json::from_value::<Report>(r.clone()).map_err(|e| {
                    Failure::new(
                        ExitStatus::Failure,
                        format!("capstan: unexpected report from the daemon: {e}"),
                    )
                })?);
                return Ok(());
            }
            if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
                return Err(Failure::new(ExitStatus::Failure, format!("capstan: {e}")));
            }
            let step: Progress = serde_json::from_value(value).map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("capstan: unexpected progress from the daemon: {e}"),
                )
            })?;
            match (output, &mut live) {
                (Output::Json, _) => println!("{line}"),
                (Output::Table, Some(live)) => live.update(&step),
                (Output::Table, None) => println!("{:<16} {}", step.service, step.message),
            }
            Ok(())
        })
        .await?;
    if let Some(live) = &mut live {
        live.finish();
    }
    report.ok_or_else(|| {
        Failure::new(
            ExitStatus::Failure,
            "capstan: the daemon ended the deploy without a report (see its log)",
        )
    })
}

/// The progress display on a terminal: one line per service with its latest step and how long
/// it has been going, redrawn in place as steps arrive.
struct Live {
    services: Vec<(String, String, std::time::Instant, bool)>,
    drawn: usize,
    width: usize,
}

impl Live {
    fn new() -> Self {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(80_usize);
        Self {
            services: Vec::new(),
            drawn: 0,
            width: width.max(40),
        }
    }

    fn update(&mut self, progress: &Progress) {
        let done = progress.step.is_done();
        match self.services.iter_mut().find(|s| s.0 == progress.service) {
            Some(s) => {
                progress.message.clone_into(&mut s.1);
                s.3 = done;
            }
            None => self.services.push((
                progress.service.clone(),
                progress.message.clone(),
                std::time::Instant::now(),
                done,
            )),
        }
        self.draw();
    }

    fn draw(&mut self) {
        use std::fmt::Write as _;
        use std::io::Write as _;
        let mut out = String::new();
        if self.drawn > 0 {
            // back to the first line of the previous drawing
            let _ = write!(out, "\x1b[{}F", self.drawn);
        }
        for (service, message, since, done) in &self.services {
            let mark = if *done { '+' } else { '~' };
            let line = format!(
                "{mark} {service:<16} {:>5.1}s  {message}",
                since.elapsed().as_secs_f64()
            );
            // one screen line each, or the redraw would land in the wrong place
            let line: String = line
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(self.width - 1)
                .collect();
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        self.drawn = self.services.len();
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }

    fn finish(&mut self) {
        self.draw();
    }
}

/// Prints a deploy's report; exit 1 unless it succeeded.
fn show(app: &str, report: &Report, output: Output) -> Result<(), Failure> {
    if output == Output::Json {
        let line =
            serde_json::to_string(&serde_json::json!({ "report": report })).map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("capstan: cannot encode the report: {e}"),
                )
            })?;
        println!("{line}");
    } else {
        for s in &report.services {
            println!("{:<16} {:<10} {:>6.1}s", s.service, s.action, s.seconds);
            for step in &s.steps {
                println!("    {step}");
            }
        }
    }
    let error = report.error.clone().unwrap_or_default();
    match report.outcome {
        Outcome::Succeeded => {
            if output == Output::Table {
                println!("app {app}: release {} succeeded", report.release);
            }
            Ok(())
        }
        Outcome::RolledBack => Err(Failure::new(
            ExitStatus::Failure,
            format!(
                "capstan: app {app}: release {} failed and was rolled back: {error}",
                report.release
            ),
        )),
        Outcome::Failed => Err(Failure::new(
            ExitStatus::Failure,
            format!(
                "capstan: app {app}: release {} failed: {error}",
                report.release
            ),
        )),
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app.
    app: String,
    /// The release to go back to (default: the last one that succeeded before the current).
    #[arg(long)]
    to: Option<i64>,
    #[command(flatten)]
    out: OutputArgs,
}

/// Deploys an earlier release again, with its image digests; exit 1 unless it succeeded.
pub async fn rollback(args: RollbackArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let path = match args.to {
        Some(n) => format!("/api/v1/apps/{}/rollback?to={n}", args.app),
        None => format!("/api/v1/apps/{}/rollback", args.app),
    };
    let report = follow(&client, &path, &serde_json::json!({}), args.out.output).await?;
    show(&args.app, &report, args.out.output)
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The app.
    app: String,
    /// The replicas each service runs from now on (`web=3`; `web=0` stops its replicas).
    #[arg(required = true, value_name = "SERVICE=N", value_parser = service_count)]
    counts: Vec<(String, u32)>,
    #[command(flatten)]
    out: OutputArgs,
}

/// `SERVICE=N`.
fn service_count(text: &str) -> Result<(String, u32), String> {
    let (service, n) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: say SERVICE=N, e.g. web=3"))?;
    let n = n
        .parse::<u32>()
        .map_err(|_| format!("{text:?}: {n:?} is not a number of replicas"))?;
    if service.is_empty() {
        return Err(format!("{text:?}: name the service before the ="));
    }
    Ok((service.to_owned(), n))
}

/// Runs the app's running release again with new replica counts: a release of its own, through
/// the same rollout; exit 1 unless it succeeded.
pub async fn scale(args: ScaleArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let replicas: std::collections::BTreeMap<String, u32> = args.counts.into_iter().collect();
    let report = follow(
        &client,
        &format!("/api/v1/apps/{}/scale", args.app),
        &serde_json::json!({ "replicas": replicas }),
        args.out.output,
    )
    .await?;
    show(&args.app, &report, args.out.output)
}

#[derive(Debug, Args)]
pub struct OperateArgs {
    /// The app.
    app: String,
    /// Only this service's replicas (default: every service's).
    service: Option<String>,
    /// Only this replica of the service (from 1).
    #[arg(long, requires = "service")]
    replica: Option<u32>,
    #[command(flatten)]
    out: OutputArgs,
}

/// `capstan stop|start|restart APP [SERVICE] [--replica N]`: prints what each replica is now.
pub async fn operate(operation: &str, args: OperateArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query = Vec::new();
    if let Some(s) = &args.service {
        query.push(format!("service={}", super::policy::encoded(s)));
    }
    if let Some(n) = args.replica {
        query.push(format!("replica={n}"));
    }
    let mut path = format!("/api/v1/apps/{}/{operation}", args.app);
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let done: capstan_model::Operated = client.post(&path, &serde_json::json!({})).await?;
    if args.out.output == Output::Json {
        return print_json(&done);
    }
    let mut table = Table::new(&["SERVICE", "REPLICA", "CONTAINER", "STATE", "DONE"]);
    for r in &done.replicas {
        table.row(vec![
            r.service.clone(),
            r.replica.to_string(),
            r.name.clone(),
            r.state.clone(),
            r.done.clone(),
        ]);
    }
    table.print();
    if done.replicas.is_empty() {
        eprintln!(
            "no replica of {} matched (capstan ps {} lists them)",
            done.app, done.app
        );
    }
    Ok(())
}

pub async fn apps(args: OutputArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let apps: Vec<AppSummary> = client.get("/api/v1/apps", &[]).await?;
    if args.output == Output::Json {
        return print_json(&apps);
    }
    let mut table = Table::new(&["APP", "RELEASE", "RESULT", "DEPLOYED", "CONTAINERS"]);
    for a in &apps {
        table.row(vec![
            a.name.clone(),
            a.release.to_string(),
            a.result.clone(),
            local_time(a.time),
            format!("{}/{} running", a.running, a.containers),
        ]);
    }
    table.print();
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// The app.
    app: String,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn releases(args: ReleasesArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let releases: Vec<Release> = client
        .get(&format!("/api/v1/apps/{}/releases", args.app), &[])
        .await?;
    if args.out.output == Output::Json {
        return print_json(&releases);
    }
    let mut table = Table::new(&["RELEASE", "DEPLOYED", "RESULT", "ACTOR", "SOURCE"]);
    for r in &releases {
        let source = r.source["files"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let commit = r.source["git_commit"]
            .as_str()
            .map(|c| format!(" @{}", &c[..c.len().min(8)]))
            .unwrap_or_default();
        // a release a build made names the build and its commit
        let source = match r.source["build"]["commit"].as_str() {
            Some(c) => format!(
                "build {} @{}",
                r.source["build"]["id"],
                &c[..c.len().min(12)]
            ),
            None => source,
        };
        table.row(vec![
            r.number.to_string(),
            local_time(r.time),
            r.result.clone(),
            r.actor.clone(),
            format!("{source}{commit}"),
        ]);
    }
    table.print();
    Ok(())
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The app.
    app: String,
    /// Remove its named volumes too (their data is gone).
    #[arg(long)]
    volumes: bool,
}

pub async fn down(args: DownArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut path = format!("/api/v1/apps/{}/down", args.app);
    if args.volumes {
        path.push_str("?volumes=true");
    }
    let removed: Vec<String> = client.post(&path, &serde_json::json!({})).await?;
    for r in &removed {
        println!("removed {r}");
    }
    println!("app {}: down", args.app);
    Ok(())
}
