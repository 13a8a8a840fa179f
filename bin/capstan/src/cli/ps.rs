//! `capstan ps`.

use capstan_model::{AppReplica, AppSummary, ContainerList};
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json, short_id};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only this app's replicas, with their service, replica number, health and the ports the
    /// proxy publishes for them.
    app: Option<String>,
    /// Include stopped containers.
    #[arg(short = 'a', long)]
    all: bool,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: PsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query = Vec::new();
    if args.all {
        query.push(("all", "true".to_owned()));
    }
    if let Some(app) = &args.app {
        query.push(("app", app.clone()));
    }
    if let Some(app) = &args.app {
        // an app on a cluster: its tasks, with their nodes, as the cluster shows them
        let apps: Vec<AppSummary> = client.get("/api/v1/apps", &[]).await?;
        if let Some(on) = apps.iter().find(|a| &a.name == app && a.target != "local") {
            let replicas: Vec<AppReplica> = client
                .get(&format!("/api/v1/apps/{app}/replicas"), &[])
                .await?;
            return cluster_table(&on.target, &replicas, args.out.output);
        }
    }
    let list: ContainerList = client.get("/api/v1/containers", &query).await?;
    if let Some(app) = &args.app {
        let proxy: serde_json::Value = client.get("/api/v1/proxy", &[]).await?;
        return app_table(app, &list, &proxy, args.out.output);
    }
    if args.out.output == Output::Json {
        return print_json(&list);
    }
    let mut table = Table::new(&[
        "CONTAINER ID",
        "NAME",
        "IMAGE",
        "STATE",
        "STATUS",
        "CREATED",
    ]);
    for c in &list.containers {
        table.row(vec![
            short_id(&c.id).to_owned(),
            c.name.clone(),
            c.image.clone(),
            c.state.clone(),
            c.status.clone(),
            local_time(c.created),
        ]);
    }
    table.print();
    Ok(())
}

/// An app's replicas on a cluster (target `target`): service, slot, node, state and health,
/// the digest each runs, and the host port its node publishes.
fn cluster_table(target: &str, replicas: &[AppReplica], output: Output) -> Result<(), Failure> {
    if output == Output::Json {
        return print_json(&replicas);
    }
    println!("on target {target}");
    let mut table = Table::new(&[
        "SERVICE", "REPLICA", "NODE", "STATE", "HEALTH", "IMAGE", "TASK", "PORTS",
    ]);
    for r in replicas {
        let digest = r.image.split_once(':').map_or(r.image.as_str(), |(_, h)| h);
        table.row(vec![
            r.service.clone(),
            r.replica.to_string(),
            r.node.clone().unwrap_or_default(),
            r.state.clone(),
            r.health.clone().unwrap_or_default(),
            digest.get(..12).unwrap_or(digest).to_owned(),
            short_id(&r.id).to_owned(),
            r.endpoints.join(", "),
        ]);
    }
    table.print();
    Ok(())
}

/// One app's replicas: service, replica, state and health, and where the proxy publishes them
/// (`127.0.0.1:8080->80`, `https://shop.example.com/->80`; in brackets while the replica is out
/// of rotation).
fn app_table(
    app: &str,
    list: &ContainerList,
    proxy: &serde_json::Value,
    output: Output,
) -> Result<(), Failure> {
    let list_of = |key: &str| proxy["proxy"][key].as_array().cloned().unwrap_or_default();
    let (routes, sites) = (list_of("routes"), list_of("sites"));
    let certified: Vec<&str> = proxy["proxy"]["certified"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    // a published port: `127.0.0.1:8080->80`; a host name: `https://shop.example.com/api->80`
    let shown = |r: &serde_json::Value, site: bool| -> String {
        let mut parts = r["key"].as_str().unwrap_or_default().splitn(4, '/');
        let target = parts.nth(2).unwrap_or_default();
        if site {
            let at = parts.next().unwrap_or_default();
            let host = at.split('/').next().unwrap_or_default();
            let scheme = if certified.contains(&host) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{at}->{target}")
        } else {
            format!("{}->{target}", r["local"].as_str().unwrap_or_default())
        }
    };
    let ports_of = |service: &str, id: &str| -> Vec<String> {
        routes
            .iter()
            .map(|r| (r, false))
            .chain(sites.iter().map(|r| (r, true)))
            .filter(|(r, _)| {
                r["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&format!("{app}/{service}/")))
            })
            .map(|(r, site)| {
                let published = shown(r, site);
                let in_rotation = r["backends"]
                    .as_array()
                    .is_some_and(|b| b.iter().any(|b| b["id"] == id));
                if in_rotation {
                    published
                } else {
                    format!("({published})")
                }
            })
            .collect()
    };
    let mut rows: Vec<_> = list.containers.iter().collect();
    let label =
        |c: &capstan_model::Container, k: &str| c.labels.get(k).cloned().unwrap_or_default();
    rows.sort_by_key(|c| {
        (
            label(c, "io.capstan.service"),
            label(c, "io.capstan.replica").parse::<u32>().unwrap_or(0),
        )
    });
    if output == Output::Json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|c| {
                let service = label(c, "io.capstan.service");
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "service": service,
                    "replica": label(c, "io.capstan.replica").parse::<u32>().ok(),
                    "release": label(c, "io.capstan.release").parse::<i64>().ok(),
                    "image": c.image,
                    "state": c.state,
                    "status": c.status,
                    "ports": ports_of(&service, &c.id),
                })
            })
            .collect();
        return print_json(&json);
    }
    let mut table = Table::new(&[
        "SERVICE", "REPLICA", "NAME", "RELEASE", "IMAGE", "STATUS", "PORTS",
    ]);
    for c in rows {
        let service = label(c, "io.capstan.service");
        table.row(vec![
            service.clone(),
            label(c, "io.capstan.replica"),
            c.name.clone(),
            label(c, "io.capstan.release"),
            c.image.clone(),
            c.status.clone(),
            ports_of(&service, &c.id).join(", "),
        ]);
    }
    table.print();
    Ok(())
}
