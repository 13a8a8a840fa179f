//! `capstan backup APP`, `capstan backups APP`, `capstan restore APP --snapshot ID`.

use capstan_model::{BackupReport, RestoreReport, Snapshot};
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The app.
    app: String,
    /// Only this volume (as the Compose file names it).
    #[arg(long)]
    volume: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// The app.
    app: String,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The app.
    app: String,
    /// The snapshot (its id, or its first 8 characters: capstan backups APP lists them).
    #[arg(long)]
    snapshot: String,
    #[command(flatten)]
    out: OutputArgs,
}

fn table(snapshots: &[Snapshot]) {
    let mut table = Table::new(&["SNAPSHOT", "VOLUME", "TIME"]);
    for s in snapshots {
        table.row(vec![
            s.short_id.clone(),
            s.volume.clone(),
            local_time(s.time),
        ]);
    }
    table.print();
}

/// `capstan backup APP [--volume V]`.
pub async fn backup(args: BackupArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut path = format!("/api/v1/apps/{}/backups", args.app);
    if let Some(v) = &args.volume {
        path = format!("{path}?volume={}", super::policy::encoded(v));
    }
    let report: BackupReport = client.post(&path, &serde_json::json!({})).await?;
    if args.out.output == Output::Json {
        return print_json(&report);
    }
    table(&report.snapshots);
    if report.forgotten > 0 {
        eprintln!(
            "{} older snapshot(s) of {} forgotten by its retention",
            report.forgotten, report.app
        );
    }
    Ok(())
}

/// `capstan backups APP`.
pub async fn list(args: BackupsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let snapshots: Vec<Snapshot> = client
        .get(&format!("/api/v1/apps/{}/backups", args.app), &[])
        .await?;
    if args.out.output == Output::Json {
        return print_json(&snapshots);
    }
    table(&snapshots);
    Ok(())
}

/// `capstan restore APP --snapshot ID`.
pub async fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let report: RestoreReport = client
        .post(
            &format!("/api/v1/apps/{}/restore", args.app),
            &serde_json::json!({ "snapshot": args.snapshot }),
        )
        .await?;
    if args.out.output == Output::Json {
        return print_json(&report);
    }
    println!(
        "restored {} of {} ({}) into volume {}; services stopped and started again: {}",
        report.snapshot.short_id,
        report.app,
        local_time(report.snapshot.time),
        report.snapshot.volume,
        if report.services.is_empty() {
            "none".to_owned()
        } else {
            report.services.join(", ")
        }
    );
    Ok(())
}
