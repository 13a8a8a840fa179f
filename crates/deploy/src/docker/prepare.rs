//! What a release needs on the engine before its replicas start: the proxy listening on its
//! published ports, configs and secrets written as files, networks, volumes and images.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;

use super::names::{Names, labels};
use super::route::claims;
use super::target::{DockerTarget, engine_error};
use crate::DeployRequest;
use crate::error::TargetError;
use crate::secrets::{FileMode, place};

impl DockerTarget {
    /// Ports, files, networks, volumes, images, in that order: a taken port or a file that
    /// cannot be written fails before the engine changes.
    pub(super) async fn prepare_app(&self, req: &DeployRequest) -> Result<(), TargetError> {
        let project = &req.project;
        let app = project.name.clone().unwrap_or_default();
        let names = Names::of(project);
        // the proxy listens before anything changes, so a taken port fails the deploy here
        let mut published = BTreeMap::new();
        for (name, s) in &project.services {
            let c = claims(s)
                .map_err(|e| TargetError::Refused(format!("services.{name}.ports: {e}")))?;
            if !c.is_empty() {
                published.insert(name.clone(), c);
            }
        }
        match &self.router {
            Some(router) => router
                .claim(&app, &published)
                .await
                .map_err(|e| TargetError::Refused(e.to_string()))?,
            None if !published.is_empty() => {
                return Err(TargetError::Refused(
                    "published ports need capstan's proxy, which only runs under `capstan serve`"
                        .into(),
                ));
            }
            None => {}
        }
        self.materialise(req).map_err(|e| {
            TargetError::Refused(format!(
                "cannot write configs and secrets under {}: {e}",
                self.apps_dir.display()
            ))
        })?;
        let mut networks: Vec<(String, bool)> = project
            .networks
            .iter()
            .filter(|(_, d)| d.as_ref().and_then(|d| d.external) != Some(true))
            .map(|(n, d)| {
                (
                    n.clone(),
                    d.as_ref().and_then(|d| d.internal).unwrap_or(false),
                )
            })
            .collect();
        if project
            .services
            .values()
            .any(|s| s.networks.as_ref().is_none_or(|n| n.0.is_empty()))
        {
            networks.push(("default".into(), false));
        }
        for (net, internal) in networks {
            let l = labels(&app, None, &[("com.docker.compose.network", net.clone())]);
            self.engine
                .ensure_network(&names.network(project, &net), internal, &l)
                .await
                .map_err(engine_error(format!("networks.{net}")))?;
        }
        for (vol, def) in &project.volumes {
            if def.as_ref().and_then(|d| d.external) == Some(true) {
                continue;
            }
            let mut l = labels(&app, None, &[("com.docker.compose.volume", vol.clone())]);
            if let Some(d) = def {
                l.extend(d.labels.clone());
            }
            self.engine
                .ensure_volume(&names.volume(project, vol), &l)
                .await
                .map_err(engine_error(format!("volumes.{vol}")))?;
        }
        for (name, s) in &project.services {
            let Some(image) = &s.image else { continue };
            let present = self
                .engine
                .inspect_image(image)
                .await
                .map_err(engine_error(None))?;
            if present.is_none() {
                self.engine.pull(image).await.map_err(engine_error(format!(
                    "services.{name}.image: cannot pull {image}"
                )))?;
            }
        }
        Ok(())
    }

    /// Writes configs (0444) under the app's private directory, and keeps secrets sealed
    /// there while placing them in plain text only on the daemon's tmpfs (0400), each as a
    /// reference's `mode`, `uid` and `gid` ask.
    fn materialise(&self, req: &DeployRequest) -> std::io::Result<()> {
        let app = req.project.name.clone().unwrap_or_default();
        let dir = self.apps_dir.join(&app);
        for kind in ["configs", "secrets"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join(kind))?;
        }
        for (key, content) in &req.files {
            let Some((kind, name)) = key.split_once('/') else {
                continue;
            };
            if !matches!(kind, "configs" | "secrets") || name.contains('/') || name.starts_with('.')
            {
                continue;
            }
            let bytes = content.bytes().map_err(std::io::Error::other)?;
            let how = file_mode(&req.project, kind, name);
            match (kind, &self.secrets) {
                ("secrets", Some(store)) => {
                    store.keep(&self.apps_dir, &app, name, &bytes)?;
                    place(&store.mount_path(&app, name), &bytes, how)?;
                }
                _ => place(&dir.join(kind).join(name), &bytes, how)?,
            }
        }
        Ok(())
    }

    /// Puts back on the tmpfs the secrets a replica of `service` mounts that a reboot took
    /// away (a heal or an update made after one), from the request's contents.
    pub(super) fn ensure_secrets(&self, req: &DeployRequest, service: &str) -> std::io::Result<()> {
        let Some(store) = &self.secrets else {
            return Ok(());
        };
        let app = req.project.name.clone().unwrap_or_default();
        let Some(s) = req.project.services.get(service) else {
            return Ok(());
        };
        for r in &s.secrets {
            let path = store.mount_path(&app, &r.source);
            if path.exists() {
                continue;
            }
            if let Some(content) = req.files.get(&format!("secrets/{}", r.source)) {
                let bytes = content.bytes().map_err(std::io::Error::other)?;
                place(&path, &bytes, file_mode(&req.project, "secrets", &r.source))?;
            }
        }
        Ok(())
    }
}

/// How `kind`/`name` is written: the mode, uid and gid a service's reference to it asks for,
/// else 0400 for a secret and 0444 for a config.
fn file_mode(project: &capstan_compose::Project, kind: &str, name: &str) -> FileMode {
    let reference = project
        .services
        .values()
        .flat_map(|s| {
            if kind == "configs" {
                &s.configs
            } else {
                &s.secrets
            }
        })
        .find(|r| r.source == name && (r.mode.is_some() || r.uid.is_some()));
    FileMode {
        mode: reference
            .and_then(|r| r.mode)
            .unwrap_or(if kind == "secrets" { 0o400 } else { 0o444 }),
        uid: reference
            .and_then(|r| r.uid.as_deref())
            .and_then(|u| u.parse().ok()),
        gid: reference
            .and_then(|r| r.gid.as_deref())
            .and_then(|g| g.parse().ok()),
    }
}
