//! `capstan registries`: the registries capstan has credentials for (from every origin, never
//! a secret), `login` (checked against the registry, kept sealed by the daemon), `logout`.

use capstan_model::{RegistryLogin, RegistryLoginRequest, RegistryLogins};
use clap::{Args, Subcommand};

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::Output;
use capstan_model::ExitStatus;

#[derive(Debug, Args)]
pub struct RegistriesArgs {
    #[command(subcommand)]
    pub command: Option<RegistriesCommand>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum RegistriesCommand {
    /// List the registries capstan has credentials for, and where each comes from.
    Ls,
    /// Check credentials against a registry and keep them (sealed, in the daemon's data dir)
    /// for every pull, build, scan and update check. The password or token is read from
    /// standard input (--password-stdin) or asked for without echo.
    Login {
        /// The registry: ghcr.io, registry.example.com:5000, docker.io.
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: String,
        /// Read the password or token from standard input (a pipe), not a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the credentials `login` kept for a registry.
    Logout { registry: String },
}

/// A path segment with everything but what a host and port are made of percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The password: standard input's first line with `--password-stdin`, else a prompt.
fn password(from_stdin: bool) -> Result<String, Failure> {
    use std::io::{IsTerminal as _, Read as _};
    let usage = |m: String| Failure::new(ExitStatus::Usage, format!("capstan: {m}"));
    let mut text = if from_stdin || !std::io::stdin().is_terminal() {
        let mut all = String::new();
        std::io::stdin()
            .read_to_string(&mut all)
            .map_err(|e| usage(format!("cannot read the password from standard input: {e}")))?;
        all
    } else {
        rpassword::prompt_password("Password: ")
            .map_err(|e| usage(format!("cannot read the password: {e}")))?
    };
    while text.ends_with(['\n', '\r']) {
        text.pop();
    }
    if text.is_empty() {
        return Err(usage(
            "give the password or token on standard input (printf %s TOKEN | capstan registries login REGISTRY -u USER --password-stdin)".into(),
        ));
    }
    Ok(text)
}

pub async fn run(args: RegistriesArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(RegistriesCommand::Login {
            registry,
            username,
            password_stdin,
        }) => {
            let password = password(password_stdin)?;
            let kept: RegistryLogin = client
                .post(
                    &format!("/api/v1/registries/{}", segment(&registry)),
                    &RegistryLoginRequest { username, password },
                )
                .await?;
            if args.output == Output::Json {
                return print_json(&kept);
            }
            println!(
                "logged in to {} as {}: capstan pulls, builds and checks for updates with these credentials",
                kept.registry,
                kept.username.unwrap_or_default()
            );
            Ok(())
        }
        Some(RegistriesCommand::Logout { registry }) => {
            client
                .delete(&format!("/api/v1/registries/{}", segment(&registry)))
                .await?;
            println!("logged out of {registry}");
            Ok(())
        }
        Some(RegistriesCommand::Ls) | None => {
            let list: RegistryLogins = client.get("/api/v1/registries", &[]).await?;
            if args.output == Output::Json {
                return print_json(&list);
            }
            let mut table = Table::new(&["REGISTRY", "USERNAME", "FROM", "IN EFFECT", "SINCE"]);
            for r in &list.registries {
                let from = match &r.detail {
                    Some(d) => format!("{} ({d})", r.origin.describe()),
                    None => r.origin.describe().to_owned(),
                };
                table.row(vec![
                    r.registry.clone(),
                    r.username.clone().unwrap_or_else(|| "-".into()),
                    from,
                    if r.in_effect { "yes" } else { "no" }.to_owned(),
                    r.saved_at.map(local_time).unwrap_or_default(),
                ]);
            }
            table.print();
            if list.registries.is_empty() {
                println!(
                    "no credentials: images are pulled anonymously; capstan registries login REGISTRY -u USER"
                );
            }
            Ok(())
        }
    }
}
