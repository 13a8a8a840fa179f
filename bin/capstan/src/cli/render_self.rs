//! `capstan render-self`: capstan's own objects for a Kubernetes target (the node agent's
//! DaemonSet that collects every node's pod logs, the deployer's Role), printed as YAML
//! documents (or JSON) to apply with `kubectl apply -f -`.

use clap::Args;

use super::Failure;
use super::client::Client;
use crate::OutputArgs;

#[derive(Debug, Args)]
pub struct RenderSelfArgs {
    /// The Kubernetes target of `capstan targets` (its namespace).
    #[arg(long, value_name = "NAME")]
    target: String,
    /// capstan's image, which every node pulls (registry.example.com/capstan:VERSION).
    #[arg(long, value_name = "IMAGE")]
    image: String,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: RenderSelfArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let objects: Vec<serde_json::Value> = client
        .get(
            &format!("/api/v1/targets/{}/self", args.target),
            &[("image", args.image.clone())],
        )
        .await?;
    super::render::print_manifests(
        &objects,
        &format!(
            "# capstan on target {}: the node agent (a DaemonSet collecting every node's pod logs) and the deployer's Role; kubectl apply -f -",
            args.target
        ),
        args.out.output,
    )
}
