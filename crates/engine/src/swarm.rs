//! A Swarm cluster as one of its managers describes it: whether this engine manages one, and
//! its nodes (role, state, leader, engine version) as a target lists them.

use capstan_model::TargetNode;

use crate::{Engine, Error};

impl Engine {
    /// Whether this engine is a manager of a Swarm (it can answer for the cluster), and, when
    /// it is not, what it is instead (`inactive`, a worker, `pending`, `error: ...`).
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the engine does not answer.
    pub async fn swarm_manager(&self) -> Result<Result<(), String>, Error> {
        let info = self.client()?.info().await.map_err(|e| self.classify(e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map_or_else(|| "inactive".to_owned(), |s| s.to_string());
        Ok(match (state.as_str(), swarm.control_available) {
            ("active", Some(true)) => Ok(()),
            ("active", _) => Err("a Swarm worker, not a manager".to_owned()),
            ("error", _) => Err(format!(
                "in Swarm error: {}",
                swarm.error.unwrap_or_default()
            )),
            (other, _) => Err(format!("not in a Swarm (its Swarm state is {other})")),
        })
    }

    /// Each node's hostname, by node id.
    ///
    /// # Errors
    /// As [`Engine::swarm_nodes`].
    pub async fn swarm_hostnames(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, Error> {
        Ok(self
            .swarm_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id, n.hostname))
            .collect())
    }

    /// The nodes of the Swarm this engine manages.
    ///
    /// # Errors
    /// [`Error::Api`] when it manages none (the engine says why), [`Error::Unreachable`].
    pub async fn swarm_nodes(&self) -> Result<Vec<TargetNode>, Error> {
        let nodes = self
            .client()?
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| self.classify(e))?;
        let mut out: Vec<TargetNode> = nodes
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let description = n.description.unwrap_or_default();
                let status = n.status.unwrap_or_default();
                TargetNode {
                    id: n.id.unwrap_or_default(),
                    hostname: description.hostname.unwrap_or_default(),
                    role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                    leader: n
                        .manager_status
                        .as_ref()
                        .and_then(|m| m.leader)
                        .unwrap_or(false),
                    engine_version: description
                        .engine
                        .and_then(|e| e.engine_version)
                        .unwrap_or_default(),
                    addr: status.addr.unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.role, &a.hostname).cmp(&(&b.role, &b.hostname)));
        Ok(out)
    }
}
