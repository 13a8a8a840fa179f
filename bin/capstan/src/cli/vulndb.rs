//! `capstan vulndb`: the advisory database scans match against, and imports into it.

use std::path::{Path, PathBuf};

use capstan_model::{ExitStatus, VulnDbStatus};
use clap::{Args, Subcommand};

use super::client::Client;
use super::{Failure, local_time, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VulnDbArgs {
    #[command(subcommand)]
    command: Option<VulnDbCommand>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum VulnDbCommand {
    /// Import OSV advisories: JSON files (one advisory or an array) or directories of them
    /// (read recursively), as osv.dev exports them per ecosystem. All or nothing.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn run(args: VulnDbArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let (status, output): (VulnDbStatus, Output) = match args.command {
        None => (client.get("/api/v1/vulndb", &[]).await?, args.out.output),
        Some(VulnDbCommand::Import { paths, out }) => {
            let body = read_advisories(&paths)?;
            (client.post("/api/v1/vulndb", &body).await?, out.output)
        }
    };
    if output == Output::Json {
        return print_json(&status);
    }
    if status.imported > 0 {
        println!("imported {} advisories", status.imported);
    }
    println!(
        "{} advisories; last import {}",
        status.advisories,
        status
            .last_import
            .map_or_else(|| "never".to_owned(), local_time)
    );
    for (ecosystem, n) in &status.ecosystems {
        println!("  {ecosystem:<20} {n}");
    }
    Ok(())
}

/// Reads every advisory under `paths` on this side, checking each file (errors name it), into
/// one array for the daemon.
fn read_advisories(paths: &[PathBuf]) -> Result<Vec<serde_json::Value>, Failure> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| {
            Failure::new(
                ExitStatus::Usage,
                format!("capstan: cannot read {}: {e}", file.display()),
            )
        })?;
        let origin = file.display().to_string();
        capstan_scan::osv::parse(&origin, &bytes)
            .map_err(|e| Failure::new(ExitStatus::Usage, format!("capstan: {e}")))?;
        match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Array(items)) => out.extend(items),
            Ok(one) => out.push(one),
            Err(e) => {
                return Err(Failure::new(
                    ExitStatus::Usage,
                    format!("capstan: {origin}: {e}"),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(Failure::new(
            ExitStatus::Usage,
            "capstan: no advisory found (give OSV .json files or directories of them)",
        ));
    }
    Ok(out)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::new(
            ExitStatus::Usage,
            format!("capstan: cannot read {}: {e}", path.display()),
        )
    })?;
    if meta.is_file() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| {
            Failure::new(
                ExitStatus::Usage,
                format!("capstan: cannot read {}: {e}", path.display()),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() || e.extension().is_some_and(|x| x == "json") {
            collect(&e, files)?;
        }
    }
    Ok(())
}
