//! Names and labels of everything an app owns on the engine.

use std::collections::BTreeMap;

use capstan_compose::Project;

/// Names derived from the project name, as Compose derives them (so other tools recognise them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The project (app) name.
    pub project: String,
}

impl Names {
    /// For a resolved project.
    pub fn of(project: &Project) -> Self {
        Self {
            project: project.name.clone().unwrap_or_default(),
        }
    }

    /// `<project>-<service>-<replica>` (replicas count from 1).
    pub fn container(&self, service: &str, replica: u32) -> String {
        format!("{}-{service}-{replica}", self.project)
    }

    /// The container of replica `replica` of `service`: its `container_name` when it has
    /// one (the loader allows it one replica only), else [`Names::container`].
    pub fn replica(&self, project: &Project, service: &str, replica: u32) -> String {
        project
            .services
            .get(service)
            .and_then(|s| s.container_name.clone())
            .unwrap_or_else(|| self.container(service, replica))
    }

    /// The engine name of a Compose network (`name:` when set, else `<project>_<network>`).
    pub fn network(&self, project: &Project, network: &str) -> String {
        project
            .networks
            .get(network)
            .and_then(|n| n.as_ref()?.name.clone())
            .unwrap_or_else(|| format!("{}_{network}", self.project))
    }

    /// The engine name of a Compose volume.
    pub fn volume(&self, project: &Project, volume: &str) -> String {
        project
            .volumes
            .get(volume)
            .and_then(|v| v.as_ref()?.name.clone())
            .unwrap_or_else(|| format!("{}_{volume}", self.project))
    }
}

pub use capstan_model::{is_retiring, retiring};

/// The labels capstan puts on a container, network or volume of an app: its own and
/// Compose's, so that other tools recognise them.
pub fn labels(
    project: &str,
    service: Option<&str>,
    extra: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("io.capstan.app".to_owned(), project.to_owned()),
        ("com.docker.compose.project".to_owned(), project.to_owned()),
    ]);
    if let Some(s) = service {
        l.insert("io.capstan.service".into(), s.to_owned());
        l.insert("com.docker.compose.service".into(), s.to_owned());
    }
    for (k, v) in extra {
        l.insert((*k).to_owned(), v.clone());
    }
    l
}
