//! `capstan targets`: where apps run (the local engine and each `[[targets]]` entry), each
//! asked now: a Swarm's managers, workers, leader and engine versions.

use capstan_model::TargetStatus;
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// With each Swarm's nodes.
    #[arg(long)]
    pub nodes: bool,
}

pub async fn run(args: TargetsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let targets: Vec<TargetStatus> = client.get("/api/v1/targets", &[]).await?;
    if args.output == Output::Json {
        return print_json(&targets);
    }
    let mut table = Table::new(&[
        "NAME", "KIND", "ENDPOINT", "STATUS", "NODES", "LEADER", "ENGINES",
    ]);
    for t in &targets {
        let status = if t.healthy {
            "ok".to_owned()
        } else {
            format!("failing: {}", t.error.as_deref().unwrap_or("no answer"))
        };
        let nodes = if t.nodes.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{} managers, {} workers, {} ready",
                t.managers, t.workers, t.ready
            )
        };
        table.row(vec![
            t.name.clone(),
            t.kind.as_str().to_owned(),
            t.endpoint.clone(),
            status,
            nodes,
            t.leader.clone().unwrap_or_else(|| "-".into()),
            if t.engine_versions.is_empty() {
                "-".into()
            } else {
                t.engine_versions.join(", ")
            },
        ]);
    }
    table.print();
    if args.nodes {
        for t in targets.iter().filter(|t| !t.nodes.is_empty()) {
            println!("\n{}:", t.name);
            let mut nodes = Table::new(&[
                "HOSTNAME",
                "ROLE",
                "STATE",
                "AVAILABILITY",
                "ADDRESS",
                "ENGINE",
                "ID",
            ]);
            for n in &t.nodes {
                nodes.row(vec![
                    format!("{}{}", n.hostname, if n.leader { " (leader)" } else { "" }),
                    n.role.clone(),
                    n.state.clone(),
                    n.availability.clone(),
                    n.addr.clone(),
                    n.engine_version.clone(),
                    n.id.chars().take(12).collect(),
                ]);
            }
            nodes.print();
        }
    }
    Ok(())
}
