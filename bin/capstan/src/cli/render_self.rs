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
    /// A fleet hub (its [fleet] listen, https://HOST:PORT) each node's agent joins, named after
    /// its node, with the token in the Secret capstan-join (key `token`) of the namespace.
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: RenderSelfArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query = vec![("image", args.image.clone())];
    if let Some(j) = &args.join {
        query.push(("join", j.clone()));
    }
    let objects: Vec<serde_json::Value> = client
        .get(&format!("/api/v1/targets/{}/self", args.target), &query)
        .await?;
    let joining = if args.join.is_some() {
        format!(
            "\n# each node's agent joins the hub with the token of Secret {}: kubectl create secret generic {} --from-literal=token=\"$(capstan hosts join-token --uses NODES)\" first",
            capstan_kube::JOIN_SECRET,
            capstan_kube::JOIN_SECRET
        )
    } else {
        String::new()
    };
    super::render::print_manifests(
        &objects,
        &format!(
            "# capstan on target {}: the node agent (a DaemonSet collecting every node's pod logs) and the deployer's Role; kubectl apply -f -{joining}",
            args.target
        ),
        args.out.output,
    )
}
