//! `capstan builds`: the builds git pushes queued, their logs (live with -f), cancelling one
//! and running one again.

use capstan_model::{Build, ExitStatus, LogLine};
use clap::{Args, Subcommand};

use super::client::{Client, read_lines, read_sse};
use super::table::Table;
use super::{Failure, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct BuildsArgs {
    #[command(subcommand)]
    pub command: Option<BuildsCommand>,
    /// Only this app's builds.
    pub app: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// Print a build's log; with -f, follow it until the build ends.
    Logs {
        id: i64,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Stop a queued or running build (one that deploys runs to its end).
    Cancel { id: i64 },
    /// Show one build: its steps, why it failed.
    Show { id: i64 },
    /// Build, push and deploy an ended build's commit again, as a new build (a failed push or
    /// deploy retried, or a cancelled build run after all).
    Retry { id: i64 },
}

fn ended(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

pub async fn run(args: BuildsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(BuildsCommand::Logs { id, follow }) => logs(&client, id, follow).await,
        Some(BuildsCommand::Cancel { id }) => {
            let b: Build = client
                .post(
                    &format!("/api/v1/builds/{id}/cancel"),
                    &serde_json::json!({}),
                )
                .await?;
            if args.output == Output::Json {
                return print_json(&b);
            }
            println!("build {id} of {}: cancelled", b.app);
            Ok(())
        }
        Some(BuildsCommand::Retry { id }) => {
            let b: Build = client
                .post(
                    &format!("/api/v1/builds/{id}/retry"),
                    &serde_json::json!({}),
                )
                .await?;
            if args.output == Output::Json {
                return print_json(&b);
            }
            println!(
                "build {} of {} queued: {} again (capstan builds logs {} -f)",
                b.id,
                b.app,
                b.commit.chars().take(12).collect::<String>(),
                b.id
            );
            Ok(())
        }
        Some(BuildsCommand::Show { id }) => {
            let b: Build = client.get(&format!("/api/v1/builds/{id}"), &[]).await?;
            if args.output == Output::Json {
                return print_json(&b);
            }
            show(&b);
            Ok(())
        }
        None => {
            let query: Vec<(&str, String)> = args.app.iter().map(|a| ("app", a.clone())).collect();
            let builds: Vec<Build> = client.get("/api/v1/builds", &query).await?;
            if args.output == Output::Json {
                return print_json(&builds);
            }
            let mut table = Table::new(&[
                "ID", "APP", "SERVICE", "BRANCH", "COMMIT", "STATUS", "QUEUED", "RELEASE", "ERROR",
            ]);
            for b in &builds {
                table.row(vec![
                    b.id.to_string(),
                    b.app.clone(),
                    b.service.clone(),
                    b.branch.clone(),
                    b.commit.chars().take(12).collect(),
                    b.status.clone(),
                    b.queued.clone(),
                    b.release.map(|r| r.to_string()).unwrap_or_default(),
                    b.error.chars().take(80).collect(),
                ]);
            }
            table.print();
            if builds.is_empty() {
                println!("no builds yet: a push to an app's source queues one (capstan hooks APP)");
            }
            Ok(())
        }
    }
}

fn show(b: &Build) {
    println!("build    {} of {} ({})", b.id, b.app, b.service);
    println!("commit   {} on {} by {}", b.commit, b.branch, b.author);
    println!("message  {}", b.message.lines().next().unwrap_or_default());
    println!("status   {}", b.status);
    if !b.builder.is_empty() {
        println!("builder  {}", b.builder);
    }
    if !b.image.is_empty() {
        println!(
            "image    {}{}",
            b.image,
            if b.digest.is_empty() {
                String::new()
            } else {
                format!(" ({})", b.digest)
            }
        );
    }
    if let Some(r) = b.release {
        println!("release  {r}");
    }
    if let Some(of) = b.detail["retry_of"].as_i64() {
        println!(
            "retries  build {of} (asked by {})",
            b.detail["by"].as_str().unwrap_or_default()
        );
    }
    for s in b.detail["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} {:<10} {}",
            s["step"].as_str().unwrap_or_default(),
            s["outcome"].as_str().unwrap_or_default(),
            s["note"].as_str().unwrap_or_default()
        );
    }
    if let Some(at) = b.detail["failed_at"].as_str() {
        println!("failed at  {at}");
    }
    if !b.error.is_empty() {
        println!("error    {}", b.error);
    }
}

/// The build's log: what is stored, then (with `follow`) new lines until the build ends.
async fn logs(client: &Client, id: i64, follow: bool) -> Result<(), Failure> {
    let b: Build = client.get(&format!("/api/v1/builds/{id}"), &[]).await?;
    let q = format!("build:{id}");
    let print = |data: &str| -> Result<(), Failure> {
        let line: LogLine = serde_json::from_str(data).map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: bad log line from the daemon: {e}"),
            )
        })?;
        println!("{}", line.raw);
        Ok(())
    };
    if !follow || ended(&b.status) {
        let response = client
            .send("/api/v1/logs/export", &[("q", q), ("order", "asc".into())])
            .await?;
        return read_lines(response, print).await;
    }
    let response = client
        .send("/api/v1/logs/stream", &[("q", q), ("tail", "10000".into())])
        .await?;
    let watch = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match client
                .get::<Build>(&format!("/api/v1/builds/{id}"), &[])
                .await
            {
                Ok(b) if ended(&b.status) => {
                    // its last lines reach the store within a commit
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    return b;
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        r = read_sse(response, print) => r,
        b = watch => {
            if b.status == "succeeded" {
                Ok(())
            } else {
                Err(Failure::new(ExitStatus::Failure, format!("capstan: build {id} {}: {}", b.status, b.error)))
            }
        }
    }
}
