//! `capstan alerts`: what fires and what is pending, the history of alerts, the rules, and
//! `capstan alerts test RULE`.

use capstan_model::{AlertList, AlertRules, EventPage, RuleTest};
use clap::{Args, Subcommand};

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
    /// Show the alerts' moves (pending, firing, resolved) instead, newest first.
    #[arg(long)]
    pub history: bool,
    /// With --history: from (a duration ago or an RFC 3339 time).
    #[arg(long)]
    pub since: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List the rules (built-in, from capstan.toml, added through the API).
    Rules {
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Evaluate a rule now and say why it would or would not fire.
    Test {
        rule: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !["alertname", "severity"].contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if shown.is_empty() {
        "-".into()
    } else {
        shown.join(" ")
    }
}

pub async fn run(args: AlertsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(AlertsCommand::Rules { output }) => {
            let rules: AlertRules = client.get("/api/v1/alerts/rules", &[]).await?;
            if output == Output::Json {
                return print_json(&rules);
            }
            let mut table = Table::new(&["RULE", "KIND", "SOURCE", "FOR", "FIRING", "CONDITION"]);
            for r in &rules.rules {
                table.row(vec![
                    r.name.clone(),
                    r.kind.clone(),
                    r.source.clone(),
                    r.for_.clone(),
                    r.firing.to_string(),
                    r.condition.clone(),
                ]);
            }
            table.print();
            Ok(())
        }
        Some(AlertsCommand::Test { rule, output }) => {
            let test: RuleTest = client
                .post(
                    &format!("/api/v1/alerts/rules/{rule}/test"),
                    &serde_json::json!({}),
                )
                .await?;
            if output == Output::Json {
                return print_json(&test);
            }
            println!(
                "{}: {}",
                test.rule,
                if test.would_fire {
                    "would fire"
                } else if test.holds {
                    "holds, but would not fire yet"
                } else {
                    "would not fire"
                }
            );
            println!("{}", test.reason);
            for i in &test.instances {
                println!(
                    "  {} value={} state={}",
                    labels_text(&i.labels),
                    i.value.map_or_else(|| "-".into(), super::metrics::human),
                    i.state
                );
            }
            Ok(())
        }
        None if args.history => {
            let mut query = vec![("limit", "200".to_owned())];
            if let Some(s) = &args.since {
                query.push(("since", s.clone()));
            }
            let page: EventPage = client.get("/api/v1/alerts/history", &query).await?;
            if args.output == Output::Json {
                return print_json(&page);
            }
            let mut table = Table::new(&["TIME", "STATE", "RULE", "LABELS", "VALUE", "SUMMARY"]);
            for e in &page.events {
                let a = |k: &str| e.attributes.get(k).cloned().unwrap_or_else(|| "-".into());
                let labels: std::collections::BTreeMap<String, String> = e
                    .attributes
                    .iter()
                    .filter(|(k, _)| {
                        !k.starts_with("annotation.")
                            && !["rule", "state", "fingerprint", "active_since", "value"]
                                .contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                table.row(vec![
                    local_time(e.time),
                    e.action.trim_start_matches("alert_").to_owned(),
                    e.actor.clone(),
                    labels_text(&labels),
                    a("value"),
                    a("annotation.summary"),
                ]);
            }
            table.print();
            Ok(())
        }
        None => {
            let list: AlertList = client.get("/api/v1/alerts", &[]).await?;
            if args.output == Output::Json {
                return print_json(&list);
            }
            let mut table = Table::new(&[
                "STATE", "RULE", "SEVERITY", "LABELS", "VALUE", "SINCE", "SUMMARY",
            ]);
            for a in &list.alerts {
                let state = if a.held {
                    format!("{} (held: rollout)", a.state.as_str())
                } else {
                    a.state.as_str().to_owned()
                };
                table.row(vec![
                    state,
                    a.rule.clone(),
                    a.labels.get("severity").cloned().unwrap_or_default(),
                    labels_text(&a.labels),
                    a.value.map_or_else(|| "-".into(), super::metrics::human),
                    local_time(a.active_since),
                    a.annotations.get("summary").cloned().unwrap_or_default(),
                ]);
            }
            table.print();
            if list.alerts.is_empty() {
                println!("nothing firing or pending (`capstan alerts --history` shows the past)");
            }
            Ok(())
        }
    }
}
