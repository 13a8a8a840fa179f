//! `capstan secrets rotate-key`: seals every kept secret again under new keys, on the data dir
//! of a stopped daemon.

use std::path::PathBuf;

use capstan_model::ExitStatus;
use clap::{Args, Subcommand};

use super::Failure;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every kept secret again under a new data key and a new `vault.key`. Run it while
    /// capstan is stopped; back the new `vault.key` up afterwards (the old one opens nothing).
    RotateKey {
        /// The data directory (default as `capstan serve`'s).
        #[arg(long, env = "CAPSTAN_DATA")]
        data: Option<PathBuf>,
    },
}

pub fn run(args: SecretsArgs) -> Result<(), Failure> {
    let SecretsCommand::RotateKey { data } = args.command;
    let data = data.unwrap_or_else(crate::config::default_data_dir);
    let failed = |e: String| Failure::new(ExitStatus::Failure, format!("capstan: {e}"));
    // the daemon's lock: no rotation under a running daemon, which holds the old keys
    let _lock = capstan_process::lock_pid_file(&data.join("capstan.lock")).map_err(|e| {
        Failure::new(
            ExitStatus::Usage,
            format!(
                "capstan: cannot rotate the keys of {} while capstan uses it ({e}); stop it first",
                data.display()
            ),
        )
    })?;
    let items = capstan_deploy::sealed_items(&data.join("apps"))
        .map_err(|e| failed(format!("cannot list the sealed secrets: {e}")))?;
    let n = capstan_vault::Vault::rotate(&data, &items).map_err(|e| failed(e.to_string()))?;
    println!(
        "{n} secret value{} sealed again under new keys; back up {} now",
        if n == 1 { "" } else { "s" },
        capstan_vault::Vault::key_path(&data).display()
    );
    Ok(())
}
