//! `capstan hosts`: the fleet's hosts on the hub (list, join tokens, remove).

use std::collections::BTreeMap;

use capstan_model::{ExitStatus, FleetHost, JoinTokenIssued, NewJoinToken};
use clap::{Args, Subcommand};

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    pub command: Option<HostsCommand>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Make a join token pinning this hub's key (printed this once; for one host unless
    /// --uses): give it to `capstan agent --join URL --token TOKEN` on the new host.
    JoinToken {
        /// A label the host gets (KEY=VALUE, repeatable).
        #[arg(long = "labels", value_name = "KEY=VALUE", value_delimiter = ',')]
        labels: Vec<String>,
        /// How long the token may be used (default 1h, at most 7d).
        #[arg(long)]
        ttl: Option<String>,
        /// How many hosts it lets in, each once (default 1): a Kubernetes DaemonSet's nodes
        /// join with one token (capstan render-self --join).
        #[arg(long)]
        uses: Option<u32>,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Remove a host: its key is refused from now on and its connection cut at once.
    Remove { name: String },
}

pub async fn run(args: HostsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(HostsCommand::JoinToken {
            labels,
            ttl,
            uses,
            output,
        }) => {
            let mut map = BTreeMap::new();
            for l in labels {
                let Some((k, v)) = l.split_once('=') else {
                    return Err(Failure::new(
                        ExitStatus::Usage,
                        format!("capstan: --labels {l:?}: a label is KEY=VALUE"),
                    ));
                };
                map.insert(k.to_owned(), v.to_owned());
            }
            let issued: JoinTokenIssued = client
                .post(
                    "/api/v1/hosts/join-tokens",
                    &NewJoinToken {
                        labels: map,
                        ttl,
                        uses,
                    },
                )
                .await?;
            if output == Output::Json {
                return print_json(&issued);
            }
            println!("{}", issued.token);
            let hosts = if issued.uses == 1 {
                "one host".to_owned()
            } else {
                format!("{} hosts", issued.uses)
            };
            eprintln!(
                "join token for {hosts}, until {} (hub key {}): keep it now, it is not shown again",
                local_time(issued.expires),
                issued.hub_fingerprint
            );
            Ok(())
        }
        Some(HostsCommand::Remove { name }) => {
            client.delete(&format!("/api/v1/hosts/{name}")).await?;
            println!("host {name} removed; its connection is cut");
            Ok(())
        }
        None => {
            let hosts: Vec<FleetHost> = client.get("/api/v1/hosts", &[]).await?;
            if args.output == Output::Json {
                return print_json(&hosts);
            }
            let mut table = Table::new(&[
                "NAME",
                "STATE",
                "LABELS",
                "ENGINE",
                "LAST CONTACT",
                "LAG",
                "LOAD",
                "CONTAINERS",
                "ALERTS",
            ]);
            for h in &hosts {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let lag: Vec<String> = h
                    .lag
                    .iter()
                    .map(|(stream, s)| format!("{stream} {s:.1}s"))
                    .collect();
                table.row(vec![
                    h.name.clone(),
                    h.state.clone(),
                    labels.join(","),
                    h.engine.clone(),
                    h.last_contact.map_or_else(|| "-".to_owned(), local_time),
                    if lag.is_empty() {
                        "-".to_owned()
                    } else {
                        lag.join(", ")
                    },
                    h.load1
                        .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}")),
                    h.containers
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    if h.alerts.is_empty() {
                        "-".to_owned()
                    } else {
                        h.alerts.join(",")
                    },
                ]);
            }
            table.print();
            Ok(())
        }
    }
}
