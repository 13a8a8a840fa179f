//! An app's replicas read from its containers' labels and the engine's status line.

use std::collections::{BTreeMap, BTreeSet};

use capstan_model::Container;

use crate::target::Replica;

/// The managed replicas of `app`; containers without capstan's labels are not ours and are
/// left out.
pub(crate) fn of_app(app: &str, containers: &[Container]) -> Vec<Replica> {
    containers
        .iter()
        .filter(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app))
        // set aside by a rollout and stopping: no longer a replica of its slot
        .filter(|c| !super::names::is_retiring(&c.name))
        .filter_map(|c| {
            Some(Replica {
                id: c.id.clone(),
                name: c.name.clone(),
                service: c.labels.get("io.capstan.service")?.clone(),
                replica: c.labels.get("io.capstan.replica")?.parse().ok()?,
                spec_hash: c.labels.get("io.capstan.spec").cloned().unwrap_or_default(),
                image_id: c.image_id.clone(),
                state: c.state.clone(),
                exit_code: exit_code(&c.status),
                health: health(&c.status).map(str::to_owned),
                node: None,
                endpoints: Vec::new(),
            })
        })
        .collect()
}

/// Every app's managed replicas, by app.
pub(crate) fn by_app(containers: &[Container]) -> BTreeMap<String, Vec<Replica>> {
    let apps: BTreeSet<&String> = containers
        .iter()
        .filter_map(|c| c.labels.get("io.capstan.app"))
        .collect();
    apps.into_iter()
        .map(|app| (app.clone(), of_app(app, containers)))
        .collect()
}

/// The exit code in a status like `Exited (137) 5 seconds ago`.
fn exit_code(status: &str) -> i64 {
    status
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(code, _)| code.parse().ok())
        .unwrap_or(0)
}

/// The health in a status like `Up 3 minutes (unhealthy)`.
fn health(status: &str) -> Option<&'static str> {
    if status.contains("(unhealthy)") {
        Some("unhealthy")
    } else if status.contains("(healthy)") {
        Some("healthy")
    } else if status.contains("(health: starting)") {
        Some("starting")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_gives_exit_code_and_health() {
        assert_eq!(exit_code("Exited (137) 5 seconds ago"), 137);
        assert_eq!(exit_code("Created"), 0);
        assert_eq!(health("Up 2 minutes (unhealthy)"), Some("unhealthy"));
        assert_eq!(health("Up 2 minutes (healthy)"), Some("healthy"));
        assert_eq!(health("Up 1 second (health: starting)"), Some("starting"));
        assert_eq!(health("Up 2 minutes"), None);
    }
}
