//! `capstan hooks APP`: an app's git webhook (the URL providers post to, its secret shown once
//! when made), its source, and its last deliveries with what came of them.

use capstan_model::{GitSource, HookInfo, HookSecret};
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct HooksArgs {
    /// The app.
    pub app: String,
    /// Make a new secret (the one before stops working at once) and show it.
    #[arg(long)]
    pub rotate: bool,
    /// Set the app's source: the repository its pushes come from.
    #[arg(long, value_name = "URL")]
    pub repository: Option<String>,
    /// With --repository: the branch whose pushes are built and deployed.
    #[arg(long, default_value = "main", requires = "repository")]
    pub branch: String,
    /// With --repository: a path (glob) a push must touch to be built (repeat it).
    #[arg(long = "path", value_name = "GLOB", requires = "repository")]
    pub paths: Vec<String>,
    /// With --repository: `vault:NAME`, a credential (`user:token`) to fetch with.
    #[arg(long, requires = "repository")]
    pub credentials: Option<String>,
    /// With --repository: the service built from it.
    #[arg(long, requires = "repository")]
    pub service: Option<String>,
    /// With --repository: the build context, a directory of the repository.
    #[arg(long, requires = "repository")]
    pub context: Option<String>,
    /// With --repository: the Dockerfile, in the context.
    #[arg(long, requires = "repository")]
    pub dockerfile: Option<String>,
    /// With --repository: stop a build before its push when its image has a finding at or
    /// above this severity (low, medium, high, critical).
    #[arg(long, requires = "repository")]
    pub fail_on: Option<capstan_model::Severity>,
    /// With --repository: a push to another branch (or a pull request) deploys the preview
    /// app `<app>-<branch>`, removed this long after its last push (`24h`, `30m`).
    #[arg(long, value_name = "TTL", requires = "repository")]
    pub previews: Option<String>,
    /// With --previews: pull requests from forks get previews too (they run the fork's code
    /// with the app's configs and secrets).
    #[arg(long, requires = "previews")]
    pub preview_forks: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(args: HooksArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let app = &args.app;
    if let Some(repository) = args.repository.clone() {
        let source = GitSource {
            repository,
            branch: args.branch.clone(),
            paths: args.paths.clone(),
            credentials: args.credentials.clone(),
            service: args.service.clone(),
            context: args.context.clone(),
            dockerfile: args.dockerfile.clone(),
            fail_on: args.fail_on,
            previews: args.previews.clone().map(|ttl| capstan_model::Previews {
                ttl,
                forks: args.preview_forks,
            }),
        };
        let _: GitSource = client
            .put(&format!("/api/v1/apps/{app}/source"), &source)
            .await?;
    }
    let info: HookInfo = client
        .get(&format!("/api/v1/apps/{app}/hooks"), &[])
        .await?;
    // the secret is made the first time, and shown only then
    let made: Option<HookSecret> = if args.rotate || !info.has_secret {
        Some(
            client
                .post(&format!("/api/v1/apps/{app}/hooks"), &serde_json::json!({}))
                .await?,
        )
    } else {
        None
    };
    if args.output == Output::Json {
        let mut doc = serde_json::to_value(&info).unwrap_or_default();
        doc["url"] = format!("{}{}", client.base(), info.path).into();
        if let Some(m) = &made {
            doc["secret"] = m.secret.clone().into();
            doc["has_secret"] = true.into();
        }
        return print_json(&doc);
    }
    println!("URL     {}{}", client.base(), info.path);
    match &made {
        Some(m) => {
            println!("secret  {}", m.secret);
            println!(
                "        (shown this once: paste it as the webhook's secret; GitLab: as its secret \
                 or signing token)"
            );
        }
        None => println!("secret  set (capstan hooks {app} --rotate makes a new one)"),
    }
    match &info.source {
        Some(s) => {
            let paths = if s.paths.is_empty() {
                String::new()
            } else {
                format!(", when a push touches {}", s.paths.join(" "))
            };
            println!("source  {} (branch {}{paths})", s.repository, s.branch);
        }
        None => println!(
            "source  none: pushes build nothing (capstan hooks {app} --repository URL, or \
             x-capstan.source in the Compose file)"
        ),
    }
    println!();
    let mut table = Table::new(&[
        "RECEIVED", "PROVIDER", "EVENT", "OUTCOME", "COMMIT", "BUILD", "REASON",
    ]);
    for d in &info.deliveries {
        table.row(vec![
            d.received.clone(),
            d.provider.clone(),
            d.event.clone(),
            d.outcome.clone(),
            d.commit.chars().take(12).collect(),
            d.build.map(|b| b.to_string()).unwrap_or_default(),
            d.reason.clone(),
        ]);
    }
    table.print();
    if info.deliveries.is_empty() {
        println!("no deliveries yet");
    }
    Ok(())
}
