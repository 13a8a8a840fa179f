//! What a release needs on the engine before its replicas start: the proxy listening on its
//! published ports, configs and secrets written as files, networks, volumes and images.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;

use super::route::claims;
use super::spec::{network_spec, volume_spec};
use super::target::{DockerTarget, engine_error};
use crate::DeployRequest;
use crate::error::TargetError;
use crate::secrets::{FileMode, place};

/// Whether an engine API version (`1.41`) is `major.minor` or later.
fn api_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

/// Whether a release pulls `image` for service `s`, as its `pull_policy` (or `--pull`,
/// `forced`) says, given what the engine has (`present`); an error when the policy forbids a
/// pull and the engine lacks the image. An image pinned by digest that the engine has is never
/// pulled again (its content cannot have changed).
///
/// # Errors
/// `never` or `build`, and the engine lacks the image: what to do, for the user.
pub fn must_pull(
    s: &capstan_compose::model::Service,
    image: &str,
    present: Option<&capstan_engine::ImageState>,
    forced: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, String> {
    use capstan_compose::PullPolicy;
    let policy = s.pull_policy();
    if matches!(policy, PullPolicy::Never | PullPolicy::Build) {
        return match present {
            Some(_) => Ok(false),
            None => Err(format!(
                "{}, and the engine has no {image}: {}",
                s.pull_policy.as_deref().unwrap_or_default(),
                if policy == PullPolicy::Build {
                    "deploy with the capstan CLI, which builds it"
                } else {
                    "pull or load it first, or let capstan pull it (pull_policy: missing)"
                }
            )),
        };
    }
    let Some(present) = present else {
        return Ok(true);
    };
    if image.contains('@') {
        return Ok(false);
    }
    Ok(match policy {
        _ if forced => true,
        PullPolicy::Always => true,
        PullPolicy::Every(every) => present
            .last_tagged
            .is_none_or(|t| (now - t).to_std().is_ok_and(|age| age >= every)),
        PullPolicy::Missing | PullPolicy::Never | PullPolicy::Build => false,
    })
}

impl DockerTarget {
    /// Ports, images, files, networks, volumes, in that order: a taken port, an image that
    /// cannot be pulled or a file that cannot be written fails before the engine changes.
    pub(super) async fn prepare_app(&self, req: &DeployRequest) -> Result<(), TargetError> {
        let project = &req.project;
        let app = project.name.clone().unwrap_or_default();
        // the proxy listens before anything changes, so a taken port fails the deploy here
        let mut published = BTreeMap::new();
        for (name, s) in &project.services {
            let c = claims(s)
                .map_err(|e| TargetError::Refused(format!("services.{name}.ports: {e}")))?;
            if !c.is_empty() {
                published.insert(name.clone(), c);
            }
        }
        let hosts = project
            .capstan
            .as_ref()
            .map(|c| c.routes.as_slice())
            .unwrap_or_default();
        match &self.router {
            Some(router) => router
                .claim(&app, &published, hosts)
                .await
                .map_err(|e| TargetError::Refused(e.to_string()))?,
            None if !published.is_empty() || !hosts.is_empty() => {
                return Err(TargetError::Refused(
                    "published ports and host names need capstan's proxy, which only runs under `capstan serve`"
                        .into(),
                ));
            }
            None => {}
        }
        // what this engine's API cannot take would be dropped by it without a word: refused
        if let Some(name) = project.services.iter().find_map(|(name, s)| {
            s.healthcheck
                .as_ref()
                .and_then(|h| h.start_interval.as_ref())
                .map(|_| name)
        }) {
            let version = self.engine.version().await.map_err(engine_error(None))?;
            if !api_at_least(&version.api_version, 1, 44) {
                return Err(TargetError::Refused(format!(
                    "services.{name}.healthcheck.start_interval: this engine speaks API {} (Docker {}), and start_interval needs API 1.44 (Docker 25) or later; take it out, or upgrade the engine",
                    version.api_version, version.version
                )));
            }
        }
        // images next: a pull the registry refuses fails before any file, network or volume
        let present = self.inspect_images(project).await?;
        let mut pulled = BTreeSet::new();
        for (name, s) in &project.services {
            let Some(image) = &s.image else { continue };
            if pulled.contains(image) {
                continue;
            }
            let present = present.get(image).and_then(Option::as_ref);
            if must_pull(s, image, present, req.pull, chrono::Utc::now()).map_err(|why| {
                TargetError::Refused(format!("services.{name}.pull_policy: {why}"))
            })? {
                self.pull_image(image).await?;
                pulled.insert(image.clone());
            }
        }
        self.materialise(req).map_err(|e| {
            TargetError::Refused(format!(
                "cannot write configs and secrets under {}: {e}",
                self.apps_dir.display()
            ))
        })?;
        let mut networks: Vec<String> = project
            .networks
            .iter()
            .filter(|(_, d)| d.as_ref().and_then(|d| d.external) != Some(true))
            .map(|(n, _)| n.clone())
            .collect();
        if !project.networks.contains_key("default")
            && project.services.values().any(|s| {
                s.network_mode.is_none() && s.networks.as_ref().is_none_or(|n| n.0.is_empty())
            })
        {
            networks.push("default".into());
        }
        for net in networks {
            self.engine
                .ensure_network(&network_spec(project, &net))
                .await
                .map_err(engine_error(format!("networks.{net}")))?;
        }
        for (vol, def) in &project.volumes {
            if def.as_ref().and_then(|d| d.external) == Some(true) {
                continue;
            }
            self.engine
                .ensure_volume(&volume_spec(project, vol))
                .await
                .map_err(engine_error(format!("volumes.{vol}")))?;
        }
        self.remove_left_aside(&app).await;
        Ok(())
    }

    /// Replicas of `app` a rollout set aside that no background stop holds (the capstan that
    /// set them aside stopped first): stopped and removed now, in the background, as they
    /// would have been.
    async fn remove_left_aside(&self, app: &str) {
        let Ok(containers) = self.engine.list_containers(true).await else {
            return;
        };
        let left: Vec<String> = {
            let retiring = self
                .retiring
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            containers
                .into_iter()
                .filter(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app))
                .filter(|c| super::names::is_retiring(&c.name) && !retiring.contains(&c.id))
                .map(|c| c.id)
                .collect()
        };
        for id in left {
            tracing::info!(
                app,
                container = id,
                "removing a replica a stopped capstan had set aside"
            );
            let target = self.clone();
            tokio::spawn(async move {
                let grace = crate::rollout::DEFAULT_GRACE;
                if let Err(e) = crate::target::Target::remove(&target, &id, grace).await {
                    tracing::warn!(container = id, error = %e, "cannot remove a replica set aside");
                }
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(policy: Option<&str>) -> capstan_compose::model::Service {
        capstan_compose::model::Service {
            pull_policy: policy.map(str::to_owned),
            ..Default::default()
        }
    }

    fn tagged(ago: Option<chrono::Duration>) -> capstan_engine::ImageState {
        capstan_engine::ImageState {
            id: "sha256:1".into(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: 0,
            created: None,
            layers: None,
            last_tagged: ago.map(|a| chrono::Utc::now() - a),
        }
    }

    #[test]
    fn api_versions_compare_as_numbers() {
        assert!(api_at_least("1.44", 1, 44));
        assert!(api_at_least("1.45", 1, 44));
        assert!(api_at_least("2.0", 1, 44));
        assert!(!api_at_least("1.41", 1, 44));
        assert!(!api_at_least("1.9", 1, 44));
        assert!(!api_at_least("", 1, 44));
    }

    #[test]
    fn each_pull_policy_pulls_when_the_specification_says() {
        let now = chrono::Utc::now();
        let fresh = tagged(Some(chrono::Duration::minutes(5)));
        let old = tagged(Some(chrono::Duration::hours(30)));
        let never_tagged = tagged(None);
        let image = "reg.example:5000/app:main";
        let pull = |policy: Option<&str>, present: Option<&capstan_engine::ImageState>, forced| {
            must_pull(&service(policy), image, present, forced, now)
        };
        // missing (the default): only what the engine lacks; --pull: everything
        assert_eq!(pull(None, None, false), Ok(true));
        assert_eq!(pull(None, Some(&fresh), false), Ok(false));
        assert_eq!(pull(Some("if_not_present"), Some(&fresh), false), Ok(false));
        assert_eq!(pull(None, Some(&fresh), true), Ok(true));
        // always: at every deploy
        assert_eq!(pull(Some("always"), Some(&fresh), false), Ok(true));
        // daily / every_<duration>: by the age of the engine's last pull or tag
        assert_eq!(pull(Some("daily"), Some(&fresh), false), Ok(false));
        assert_eq!(pull(Some("daily"), Some(&old), false), Ok(true));
        assert_eq!(pull(Some("every_1m"), Some(&fresh), false), Ok(true));
        assert_eq!(pull(Some("weekly"), Some(&never_tagged), false), Ok(true));
        // never and build: never pulled, not even with --pull; refused when missing
        assert_eq!(pull(Some("never"), Some(&fresh), true), Ok(false));
        let e = pull(Some("never"), None, false).unwrap_err();
        assert!(e.contains("never, and the engine has no"), "{e}");
        assert!(
            pull(Some("build"), None, false)
                .unwrap_err()
                .contains("CLI")
        );
        // pinned by digest and present: its content cannot have changed
        let pinned = format!("{image}@sha256:{}", "a".repeat(64));
        assert_eq!(
            must_pull(&service(Some("always")), &pinned, Some(&fresh), true, now),
            Ok(false)
        );
    }
}
