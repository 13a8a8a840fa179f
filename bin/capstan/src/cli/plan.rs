//! `capstan plan`: what `capstan deploy` would change, and why. Changes nothing.

use capstan_model::{Action, Plan};
use clap::Args;

use super::client::Client;
use super::config::ComposeArgs;
use super::table::Table;
use super::{Failure, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    compose: ComposeArgs,
    /// Plan as `capstan deploy --pull` would deploy: every image pulled first.
    #[arg(long)]
    pull: bool,
    /// Plan for a target of `capstan targets` (default: where the app runs now, else the
    /// local engine).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: PlanArgs) -> Result<(), Failure> {
    let mut loaded = args.compose.load()?;
    let app = loaded.project.name.clone().unwrap_or_default();
    // a plan builds nothing: it compares with the image the last build left
    let mut built = Vec::new();
    for (name, s) in &mut loaded.project.services {
        if s.build.is_some() {
            s.image = Some(super::build::image_name(&app, name, s.image.as_deref()));
            built.push(name.clone());
        }
    }
    let request = super::config::deploy_request(&args.compose, loaded)?;
    let client = Client::from_env()?;
    let plan: Plan = client
        .post(
            &format!(
                "/api/v1/apps/{app}/plan{}",
                super::apps::deploy_query(args.pull, args.target.as_deref())
            ),
            &request,
        )
        .await?;
    if args.out.output == Output::Json {
        return print_json(&plan);
    }
    if !built.is_empty() {
        println!(
            "(built by `capstan deploy`, compared here with their last build: {})",
            built.join(", ")
        );
    }
    if !plan.violations.is_empty() {
        println!(
            "{}",
            capstan_deploy::policy::refusal(&app, &plan.violations).replacen(
                "refuses",
                "would refuse",
                1
            )
        );
    }
    for s in &plan.services {
        let Some(r) = &s.registry else { continue };
        let short = |d: &Option<String>| {
            d.as_deref().map_or_else(
                || "-".to_owned(),
                |d| {
                    d.split_once(':')
                        .map_or(d, |(_, h)| h)
                        .chars()
                        .take(12)
                        .collect()
                },
            )
        };
        match (&r.error, r.pulled) {
            (Some(e), _) => println!(
                "{}: cannot ask the registry whether {} moved: {e}",
                s.service, r.image
            ),
            (None, true) => println!(
                "{}: {} moved in its registry ({} here, {} there); the deploy pulls it",
                s.service,
                r.image,
                short(&r.local_digest),
                short(&r.registry_digest)
            ),
            (None, false) => println!(
                "{}: {} moved in its registry ({} here, {} there); capstan deploy --pull takes it (or pull_policy: always)",
                s.service,
                r.image,
                short(&r.local_digest),
                short(&r.registry_digest)
            ),
        }
    }
    for note in &plan.notes {
        println!("{note}");
    }
    if plan.is_empty() {
        println!("app {app}: nothing to do, everything is up to date");
        return Ok(());
    }
    let mut table = Table::new(&["SERVICE", "ACTION", "WHY"]);
    for s in &plan.services {
        let (action, why) = match &s.action {
            Action::Create { replicas } => (format!("create {replicas}"), "not running".to_owned()),
            Action::Recreate { reasons } => ("recreate".to_owned(), reasons.join("; ")),
            Action::Scale { from, to } => (
                format!("scale {from} -> {to}"),
                "replicas changed".to_owned(),
            ),
            Action::Repair { replicas, reasons } => (
                format!(
                    "recreate replica{} {}",
                    if replicas.len() == 1 { "" } else { "s" },
                    replicas
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                reasons.join("; "),
            ),
            Action::Remove { replicas } => (
                format!("remove {replicas}"),
                "not in the Compose file".to_owned(),
            ),
            Action::Unchanged => ("-".to_owned(), "up to date".to_owned()),
        };
        table.row(vec![s.service.clone(), action, why]);
    }
    println!("app {app}");
    table.print();
    let order: Vec<String> = plan.levels.iter().map(|l| l.join(" + ")).collect();
    println!("start order: {}", order.join(" -> "));
    Ok(())
}
