//! `capstan policy`: the deploy policy's allowances, the host-level features (bind mounts,
//! `privileged`, capabilities, ...) an admin allowed per app.

use capstan_model::{Allowance, NewAllowance, PolicyList};
use clap::{Args, Subcommand};

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: Option<PolicyCommand>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Allow a feature for an app's deploys: privileged, bind=PATH, cap_add=CAP,
    /// security_opt=OPT, sysctl=NAME or low_port=PORT.
    Allow { app: String, feature: String },
    /// Take an allowance back: the app's next deploy is checked without it.
    Deny { app: String, feature: String },
}

/// A query value with everything but letters and digits percent-encoded.
pub(super) fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(args: PolicyArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(PolicyCommand::Allow { app, feature }) => {
            let made: Allowance = client
                .post(&format!("/api/v1/policy/{app}"), &NewAllowance { feature })
                .await?;
            println!("{} is allowed for {app}", made.feature);
            Ok(())
        }
        Some(PolicyCommand::Deny { app, feature }) => {
            client
                .delete(&format!(
                    "/api/v1/policy/{app}?feature={}",
                    encoded(&feature)
                ))
                .await?;
            println!("{feature} is no longer allowed for {app}");
            Ok(())
        }
        None => {
            let list: PolicyList = client.get("/api/v1/policy", &[]).await?;
            if args.output == Output::Json {
                return print_json(&list);
            }
            let mut table = Table::new(&["APP", "FEATURE", "ALLOWED BY", "SINCE"]);
            for a in &list.allowances {
                table.row(vec![
                    a.app.clone(),
                    a.feature.clone(),
                    a.allowed_by.clone(),
                    local_time(a.time),
                ]);
            }
            table.print();
            if list.allowances.is_empty() {
                println!(
                    "nothing allowed: only admins deploy host-level features (bind mounts, \
                     privileged, capabilities); capstan policy allow APP FEATURE"
                );
            }
            Ok(())
        }
    }
}
