//! `capstan render`: the objects a Kubernetes target would get for Compose files, printed as
//! YAML documents (or JSON), without touching the cluster.

use clap::Args;

use super::client::Client;
use super::config::ComposeArgs;
use super::{Failure, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    compose: ComposeArgs,
    /// The Kubernetes target of `capstan targets` to render for (its namespace and settings).
    #[arg(long, value_name = "NAME")]
    target: String,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: RenderArgs) -> Result<(), Failure> {
    let loaded = args.compose.load()?;
    let app = loaded.project.name.clone().unwrap_or_default();
    let request = super::config::deploy_request(&args.compose, loaded)?;
    let client = Client::from_env()?;
    let objects: Vec<serde_json::Value> = client
        .post(
            &format!(
                "/api/v1/apps/{app}/render{}",
                super::apps::deploy_query(false, Some(&args.target))
            ),
            &request,
        )
        .await?;
    print_manifests(
        &objects,
        &format!(
            "# {app} for target {}: images are pinned by digest and Secrets filled in when capstan applies them",
            args.target
        ),
        args.out.output,
    )
}

/// Kubernetes objects as JSON, or as YAML documents under a `header` comment.
pub(crate) fn print_manifests(
    objects: &[serde_json::Value],
    header: &str,
    output: Output,
) -> Result<(), Failure> {
    if output == Output::Json {
        return print_json(&objects);
    }
    println!("{header}");
    for o in objects {
        print!("---\n{}", capstan_compose::to_yaml(o));
    }
    Ok(())
}
