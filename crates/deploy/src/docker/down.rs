//! Taking an app down on the engine: its containers (drained first), its networks, with
//! `--volumes` its volumes, and its materialised files.

use std::time::Duration;

use super::target::DockerTarget;
use crate::target::Target;

/// The grace period each container of an app being taken down gets.
const DOWN_GRACE: Duration = Duration::from_secs(10);

impl DockerTarget {
    /// Stops and removes every container of `app`, looking again until none is left (a busy
    /// engine may leave one behind: a removal that timed out), a few times at most.
    async fn retire_all(
        &self,
        app: &str,
        removed: &mut Vec<String>,
    ) -> Result<(), capstan_engine::Error> {
        for _ in 0..3 {
            let mine: Vec<_> = self
                .engine
                .list_containers(true)
                .await?
                .into_iter()
                .filter(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app))
                .collect();
            if mine.is_empty() {
                break;
            }
            // in parallel: each may take its whole grace period
            futures_util::future::join_all(mine.iter().map(|c| self.retire(&c.id, DOWN_GRACE)))
                .await;
            for c in &mine {
                let entry = format!("container {}", c.name);
                if !removed.contains(&entry) {
                    removed.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Removes everything an app made: containers, networks, and with `volumes` its volumes;
    /// and its materialised configs and secrets. Returns what was removed.
    pub(super) async fn take_down(
        &self,
        app: &str,
        volumes: bool,
    ) -> Result<Vec<String>, capstan_engine::Error> {
        let mut removed = Vec::new();
        self.retire_all(app, &mut removed).await?;
        if let Some(router) = &self.router {
            let _ = router.sync().await;
        }
        let (networks, vols) = self
            .engine
            .labeled_networks_and_volumes("io.capstan.app", app)
            .await?;
        for n in networks {
            // the engine releases a removed container's endpoint a moment after the removal,
            // longer when it is busy, and a loaded engine may keep it for good: a container it
            // had not listed yet is retired, and after that what is left is disconnected by force
            let mut tries = 0;
            loop {
                match self.engine.remove_network(&n).await {
                    Err(e) if tries < 40 && e.to_string().contains("active endpoints") => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if tries % 4 == 0 {
                            self.retire_all(app, &mut removed).await?;
                            if tries >= 8 {
                                let names: Vec<String> = removed
                                    .iter()
                                    .filter_map(|r| r.strip_prefix("container "))
                                    .map(str::to_owned)
                                    .collect();
                                let forced = self.engine.disconnect_all(&n, &names).await?;
                                tracing::warn!(
                                    app,
                                    endpoints = forced,
                                    "endpoints left on the app's network after its containers \
                                     were removed: disconnected by force"
                                );
                            }
                        }
                    }
                    result => break result?,
                }
            }
            removed.push(format!("network {n}"));
        }
        if volumes {
            for v in vols {
                self.engine.remove_volume(&v).await?;
                removed.push(format!("volume {v}"));
            }
        }
        let dir = self.apps_dir.join(app);
        // never a name that leaves the apps directory (`..` would be the data dir itself)
        if dir.exists() && capstan_model::check_app_name(app).is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(removed)
    }
}
