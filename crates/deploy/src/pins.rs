//! The digests a cluster's release runs ([`Pins`]): every image resolved once when the release
//! starts, so that every replica the orchestrator makes of it runs the same image whatever its
//! tag does meanwhile (a Swarm's tasks, a Kubernetes Deployment's pods).

use std::collections::BTreeMap;
use std::sync::Mutex;

use capstan_compose::Project;

use crate::error::TargetError;

/// Where an image's digest comes from: what an orchestrating target asks (a Swarm's manager,
/// the registry capstan reaches).
#[async_trait::async_trait]
pub trait Resolve: Send + Sync {
    /// The digest `image` of `service` runs at now (its own when the reference has one).
    async fn resolve(&self, service: &str, image: &str) -> Result<String, TargetError>;
}

/// App → image reference → the digest the release underway pins it to.
#[derive(Debug, Default)]
pub struct Pins(Mutex<BTreeMap<String, BTreeMap<String, String>>>);

impl Pins {
    /// Resolves every image of `project` (each once) and pins them for its app, in place of
    /// what an earlier release pinned.
    ///
    /// # Errors
    /// The first image that cannot be resolved.
    pub async fn pin(&self, project: &Project, by: &dyn Resolve) -> Result<(), TargetError> {
        let mut pinned = BTreeMap::new();
        for (name, s) in &project.services {
            let image = s.image.clone().unwrap_or_default();
            if let std::collections::btree_map::Entry::Vacant(e) = pinned.entry(image) {
                let digest = by.resolve(name, e.key()).await?;
                e.insert(digest);
            }
        }
        if let Ok(mut all) = self.0.lock() {
            all.insert(project.name.clone().unwrap_or_default(), pinned);
        }
        Ok(())
    }

    /// The digest `image` of `app` is pinned to, if it is.
    pub fn get(&self, app: &str, image: &str) -> Option<String> {
        self.0
            .lock()
            .ok()?
            .get(app)
            .and_then(|m| m.get(image))
            .cloned()
    }

    /// The digest `image` of `service` runs at: pinned for `app`, else resolved now.
    ///
    /// # Errors
    /// The image cannot be resolved.
    pub async fn digest(
        &self,
        app: &str,
        service: &str,
        image: &str,
        by: &dyn Resolve,
    ) -> Result<String, TargetError> {
        match self.get(app, image) {
            Some(d) => Ok(d),
            None => by.resolve(service, image).await,
        }
    }

    /// Service → the digest its image runs at ([`crate::Target::image_ids`] of a cluster):
    /// pinned, else resolved now (each image once).
    ///
    /// # Errors
    /// An image that cannot be resolved.
    pub async fn image_ids(
        &self,
        project: &Project,
        by: &dyn Resolve,
    ) -> Result<BTreeMap<String, String>, TargetError> {
        let app = project.name.clone().unwrap_or_default();
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, s) in &project.services {
            let image = s.image.clone().unwrap_or_default();
            let digest = match seen.get(&image).cloned() {
                Some(d) => d,
                None => self.digest(&app, name, &image, by).await?,
            };
            seen.insert(image, digest.clone());
            out.insert(name.clone(), digest);
        }
        Ok(out)
    }

    /// The release of `app` ended: its pins go.
    pub fn forget(&self, app: &str) {
        if let Ok(mut all) = self.0.lock() {
            all.remove(app);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Resolves `IMAGE` to `sha256:IMAGE-N`, N counting the asks.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl Resolve for Counting {
        async fn resolve(&self, _service: &str, image: &str) -> Result<String, TargetError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("sha256:{image}-{n}"))
        }
    }

    fn project() -> Project {
        capstan_compose::load(&capstan_compose::Options {
            project_name: Some("shop".into()),
            working_dir: std::env::temp_dir(),
            text: Some(
                "services:\n  web: {image: 'r/web:1'}\n  worker: {image: 'r/web:1'}\n  db: {image: 'r/db:16'}\n"
                    .into(),
            ),
            ..Default::default()
        })
        .unwrap()
        .project
    }

    #[tokio::test]
    async fn a_release_resolves_each_image_once_and_runs_it_until_it_ends() {
        let (pins, by, project) = (Pins::default(), Counting::default(), project());
        pins.pin(&project, &by).await.unwrap();
        assert_eq!(
            by.0.load(Ordering::SeqCst),
            2,
            "two images, each asked once"
        );
        let ids = pins.image_ids(&project, &by).await.unwrap();
        assert_eq!(ids["web"], ids["worker"]);
        assert_eq!(
            by.0.load(Ordering::SeqCst),
            2,
            "what is pinned is not asked again"
        );
        assert_eq!(pins.get("shop", "r/db:16"), Some(ids["db"].clone()));
        pins.forget("shop");
        assert_eq!(pins.get("shop", "r/db:16"), None);
        let again = pins.image_ids(&project, &by).await.unwrap();
        assert_ne!(again["web"], ids["web"], "after the release, asked anew");
        assert_eq!(again["web"], again["worker"], "still once per image");
    }
}
