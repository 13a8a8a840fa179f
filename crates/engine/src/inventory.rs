use std::collections::BTreeMap;

use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use capstan_model::Container;
use chrono::{DateTime, Utc};

use crate::{Engine, Error};

/// What the engine says about one image now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageState {
    /// Full id (`sha256:...`).
    pub id: String,
    /// `repo:tag` references (the engine's `<none>:<none>` placeholder removed).
    pub repo_tags: Vec<String>,
    /// `repo@digest` references (placeholder removed).
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Creation time from the image config.
    pub created: Option<DateTime<Utc>>,
    /// Layer count; `None` when only listed, not inspected.
    pub layers: Option<i64>,
    /// When the engine last pulled or tagged it (`Metadata.LastTagTime`); `None` when only
    /// listed, or never tagged.
    pub last_tagged: Option<DateTime<Utc>>,
}

fn real_refs(refs: Vec<String>) -> Vec<String> {
    let mut refs: Vec<String> = refs
        .into_iter()
        .filter(|r| !r.starts_with("<none>"))
        .collect();
    refs.sort();
    refs.dedup();
    refs
}

impl Engine {
    /// Lists every image (top-level, as `docker images -a` without intermediate layers).
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn list_images(&self) -> Result<Vec<ImageState>, Error> {
        let options = ListImagesOptions {
            all: false,
            ..Default::default()
        };
        let images = self
            .client()?
            .list_images(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(images
            .into_iter()
            .map(|i| ImageState {
                id: i.id,
                repo_tags: real_refs(i.repo_tags),
                repo_digests: real_refs(i.repo_digests),
                size: i.size,
                created: DateTime::from_timestamp(i.created, 0),
                layers: None,
                last_tagged: None,
            })
            .collect())
    }

    /// An image's id and its layers' diff ids, lowest first; `Ok(None)` when the engine does
    /// not have it.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn image_layers(&self, name: &str) -> Result<Option<(String, Vec<String>)>, Error> {
        Ok(self.image_document(name).await?.map(|i| {
            (
                i.id.unwrap_or_default(),
                i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            )
        }))
    }

    /// Inspects one image by id or reference; `Ok(None)` when the engine does not have it.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageState>, Error> {
        Ok(self.image_document(name).await?.map(|i| ImageState {
            id: i.id.unwrap_or_default(),
            repo_tags: real_refs(i.repo_tags.unwrap_or_default()),
            repo_digests: real_refs(i.repo_digests.unwrap_or_default()),
            size: i.size.unwrap_or_default(),
            created: i
                .created
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.with_timezone(&Utc)),
            layers: Some(
                i.root_fs
                    .and_then(|r| r.layers)
                    .map_or(0, |l| l.len() as i64),
            ),
            last_tagged: i
                .metadata
                .and_then(|m| m.last_tag_time)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                // the engine's zero time for "never"
                .filter(|t| t.timestamp() > 0),
        }))
    }

    /// The labels of image `name`; `None` when the engine has no such image.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn image_labels(
        &self,
        name: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, Error> {
        Ok(self
            .image_document(name)
            .await?
            .map(|i| i.config.and_then(|c| c.labels).unwrap_or_default()))
    }

    /// The engine's inspect document of image `name`; `Ok(None)` when it does not have it,
    /// or is deleting it: dockerd 20.10 answers an inspect that races the image's removal
    /// with a 500 "layer does not exist" (the image is still listed, its layers are gone).
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub(crate) async fn image_document(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::ImageInspect>, Error> {
        match self.client()?.inspect_image(name).await {
            Ok(i) => Ok(Some(i)),
            Err(e) => match self.classify(e) {
                e if e.is_not_found() || e.is_image_being_removed() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Lists containers; `all` includes stopped ones.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn list_containers(&self, all: bool) -> Result<Vec<Container>, Error> {
        let options = ListContainersOptions {
            all,
            ..Default::default()
        };
        let list = self
            .client()?
            .list_containers(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(list
            .into_iter()
            .map(|c| Container {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                created: c
                    .created
                    .and_then(|t| DateTime::from_timestamp(t, 0))
                    .unwrap_or_default(),
                labels: c
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect())
    }

    /// The host pid of a running container's main process; `Ok(None)` when it is not running
    /// or no longer exists.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn container_pid(&self, id: &str) -> Result<Option<u32>, Error> {
        match self.client()?.inspect_container(id, None).await {
            Ok(c) => Ok(c
                .state
                .and_then(|s| s.pid)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0)),
            Err(e) => match self.classify(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Inspects one container; `Ok(None)` when it no longer exists.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Api`].
    pub async fn inspect_container(&self, id: &str) -> Result<Option<Container>, Error> {
        match self.client()?.inspect_container(id, None).await {
            Ok(c) => {
                let config = c.config.unwrap_or_default();
                let state = c.state.unwrap_or_default();
                let health = state
                    .health
                    .as_ref()
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .filter(|s| !s.is_empty() && s != "none");
                let status_name = state.status.map(|s| s.to_string()).unwrap_or_default();
                Ok(Some(Container {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .name
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    image: config.image.unwrap_or_default(),
                    image_id: c.image.unwrap_or_default(),
                    status: match health {
                        Some(h) => format!("{status_name} ({h})"),
                        None => status_name.clone(),
                    },
                    state: status_name,
                    created: c
                        .created
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or_default(),
                    labels: config.labels.unwrap_or_default().into_iter().collect(),
                }))
            }
            Err(e) => match self.classify(e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }
}
