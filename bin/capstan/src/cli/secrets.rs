//! `capstan secrets`: the credentials capstan itself uses, kept sealed in its data dir's vault
//! (`set`, `show`, `ls`, `rm`), and `rotate-key`, which seals every kept value again under new
//! keys on the data dir of a stopped daemon. They work on the data dir directly, as its owner,
//! like the config file that names the credentials: never over the API.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan_model::ExitStatus;
use capstan_vault::keyring::{Keyring, KeyringError};
use clap::{Args, Subcommand};

use super::Failure;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
    /// The data directory (default as `capstan serve`'s).
    #[arg(long, env = "CAPSTAN_DATA", global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Keep a credential sealed, read from standard input (its first line is what a config key
    /// `password_file = "vault:NAME"` reads); capstan serve reads it when it starts.
    Set {
        /// The credential's name (letters, digits, '-', '_', '.').
        name: String,
    },
    /// Print a credential (the registry hook's secret: `registry-hook`).
    Show { name: String },
    /// List the credentials kept (names only).
    Ls,
    /// Forget a credential.
    Rm { name: String },
    /// Seal every kept secret and credential again under a new data key and a new
    /// `vault.key`. Run it while capstan is stopped; back the new `vault.key` up afterwards
    /// (the old one opens nothing).
    RotateKey,
}

pub fn run(args: SecretsArgs) -> Result<(), Failure> {
    let data = args.data.unwrap_or_else(crate::config::default_data_dir);
    let failed = |e: String| Failure::new(ExitStatus::Failure, format!("capstan: {e}"));
    let usage = |e: KeyringError| match e {
        KeyringError::BadName { .. } | KeyringError::Unknown { .. } => {
            Failure::new(ExitStatus::Usage, format!("capstan: {e}"))
        }
        e => failed(e.to_string()),
    };
    match args.command {
        SecretsCommand::RotateKey => rotate(&data),
        SecretsCommand::Set { name } => {
            capstan_vault::keyring::check_name(&name).map_err(usage)?;
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| failed(format!("cannot read the value from standard input: {e}")))?;
            while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                value.pop();
            }
            if value.is_empty() {
                return Err(Failure::new(
                    ExitStatus::Usage,
                    "capstan: give the value on standard input (printf %s VALUE | capstan secrets set NAME)",
                ));
            }
            keyring(&data, true)?.set(&name, &value).map_err(usage)?;
            eprintln!("kept {name} sealed; capstan serve reads it when it starts (vault:{name})");
            Ok(())
        }
        SecretsCommand::Show { name } => {
            let value = keyring(&data, false)?
                .get(&name)
                .map_err(usage)?
                .ok_or_else(|| usage(KeyringError::Unknown { name }))?;
            println!("{}", String::from_utf8_lossy(&value));
            Ok(())
        }
        SecretsCommand::Ls => {
            for name in keyring(&data, false)?.names().map_err(usage)? {
                println!("{name}");
            }
            Ok(())
        }
        SecretsCommand::Rm { name } => {
            if keyring(&data, false)?.remove(&name).map_err(usage)? {
                Ok(())
            } else {
                Err(usage(KeyringError::Unknown { name }))
            }
        }
    }
}

/// The keyring of `data`; `create`: made (a private dir and a new vault) when there is none
/// yet, as an installer keeps credentials before the first start.
fn keyring(data: &Path, create: bool) -> Result<Keyring, Failure> {
    if create {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data)
            .map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("capstan: cannot create data dir {}: {e}", data.display()),
                )
            })?;
    } else if !capstan_vault::Vault::key_path(data).exists() {
        return Err(Failure::new(
            ExitStatus::Usage,
            format!(
                "capstan: {} has no vault (start capstan serve with it once, or give --data)",
                data.display()
            ),
        ));
    }
    let vault = capstan_vault::Vault::open(data)
        .map_err(|e| Failure::new(ExitStatus::Failure, format!("capstan: {e}")))?;
    Ok(Keyring::new(Arc::new(vault), data))
}

fn rotate(data: &Path) -> Result<(), Failure> {
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
    let mut items = capstan_deploy::sealed_items(&data.join("apps"))
        .map_err(|e| failed(format!("cannot list the sealed secrets: {e}")))?;
    items.extend(
        capstan_vault::keyring::sealed_credentials(data)
            .map_err(|e| failed(format!("cannot list the sealed credentials: {e}")))?,
    );
    let n = capstan_vault::Vault::rotate(data, &items).map_err(|e| failed(e.to_string()))?;
    println!(
        "{n} secret value{} sealed again under new keys; back up {} now",
        if n == 1 { "" } else { "s" },
        capstan_vault::Vault::key_path(data).display()
    );
    Ok(())
}
