//! Following a target's pods for the image journal: the images their containers actually run
//! (the `imageID` digest the kubelet reports, beside the reference the spec names) and the
//! pulls that fail, with the reason the kubelet gives. A list, then a watch from its
//! `resourceVersion`; a watch that ends is started again from the last version seen, and one
//! the API server answers `410 Gone` (the version is too old) starts over with a list.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

use crate::cluster::{Cluster, ClusterError};

/// The waiting reasons of a container whose image cannot be had.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// How long one watch request lasts before the API server ends it (it is then started again).
const WATCH_SECONDS: u32 = 290;

/// The container a change is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's uid.
    pub uid: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The node the pod runs on (empty before it is placed).
    pub node: String,
    /// The reference the pod's spec names.
    pub image: String,
}

/// What changed in a pod's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodChange {
    /// A container runs an image: first seen, or a digest it did not run before.
    Running {
        common: ContainerRef,
        /// What the kubelet says it runs (`registry/repo@sha256:...`).
        image_id: String,
        /// When the container started (ns since the epoch; 0: not said).
        started: i64,
    },
    /// A container's image cannot be pulled (once per image, until it runs).
    PullFailed {
        common: ContainerRef,
        /// `ErrImagePull`, `ImagePullBackOff`, ...
        reason: String,
        message: String,
        /// When the pod was made (ns since the epoch; 0: not said).
        created: i64,
    },
}

fn nanos(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> i64 {
    t.and_then(|t| i64::try_from(t.0.as_nanosecond()).ok())
        .unwrap_or_default()
}

/// What was last seen of each container (by pod uid and container name).
#[derive(Debug, Default)]
pub struct PodImages {
    running: HashMap<(String, String), String>,
    failed: HashMap<(String, String), String>,
}

impl PodImages {
    /// The changes `pod` shows against what was seen of it.
    pub fn observe(&mut self, pod: &Pod) -> Vec<PodChange> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        let created = nanos(meta.creation_timestamp.as_ref());
        let statuses = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten());
        for c in statuses {
            let key = (uid.clone(), c.name.clone());
            let common = ContainerRef {
                uid: uid.clone(),
                namespace: namespace.clone(),
                pod: name.clone(),
                container: c.name.clone(),
                node: node.clone(),
                image: c.image.clone(),
            };
            if !c.image_id.is_empty() && self.running.get(&key) != Some(&c.image_id) {
                self.running.insert(key.clone(), c.image_id.clone());
                self.failed.remove(&key);
                let started = c
                    .state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.as_ref());
                out.push(PodChange::Running {
                    common,
                    image_id: c.image_id.clone(),
                    started: nanos(started),
                });
                continue;
            }
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let Some(w) = waiting else { continue };
            let reason = w.reason.clone().unwrap_or_default();
            if PULL_FAILURES.contains(&reason.as_str()) && self.failed.get(&key) != Some(&c.image) {
                self.failed.insert(key, c.image.clone());
                out.push(PodChange::PullFailed {
                    common,
                    reason,
                    message: w.message.clone().unwrap_or_default(),
                    created,
                });
            }
        }
        out
    }

    /// Forgets a pod that is gone.
    pub fn forget(&mut self, uid: &str) {
        self.running.retain(|(u, _), _| u != uid);
        self.failed.retain(|(u, _), _| u != uid);
    }

    /// Forgets every pod not in `present` (uids), after a list.
    fn keep_only(&mut self, present: &BTreeSet<String>) {
        self.running.retain(|(u, _), _| present.contains(u));
        self.failed.retain(|(u, _), _| present.contains(u));
    }
}

/// How a [`PodWatch::follow`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The API server ended the watch (its timeout): follow again from the last version.
    Closed,
    /// The version was too old (`410 Gone`): the next follow lists again.
    Gone,
}

/// A target's pods, listed then watched.
#[derive(Debug)]
pub struct PodWatch {
    api: Api<Pod>,
    server: String,
    /// The last resourceVersion seen; `None`: list first.
    version: Option<String>,
}

impl PodWatch {
    /// The pods of the cluster's namespace.
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            api: Api::namespaced(cluster.client.clone(), &cluster.namespace),
            server: cluster.server.clone(),
            version: None,
        }
    }

    /// The last resourceVersion seen.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Lists (when there is no version to resume from) and watches, handing every change to
    /// `changes`, until the watch ends.
    ///
    /// # Errors
    /// A [`ClusterError`]: the caller waits and follows again (from the version kept).
    pub async fn follow(
        &mut self,
        images: &mut PodImages,
        changes: &mut (dyn FnMut(PodChange) + Send),
    ) -> Result<Ended, ClusterError> {
        use futures_util::StreamExt as _;
        if self.version.is_none() {
            let list = self
                .api
                .list(&ListParams::default())
                .await
                .map_err(|e| ClusterError::from_kube("list pods", &self.server, e))?;
            let present: BTreeSet<String> = list
                .items
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            images.keep_only(&present);
            for pod in &list.items {
                images.observe(pod).into_iter().for_each(&mut *changes);
            }
            self.version = Some(list.metadata.resource_version.unwrap_or_default());
        }
        let from = self.version.clone().unwrap_or_default();
        let params = WatchParams {
            bookmarks: true,
            ..WatchParams::default()
        }
        .timeout(WATCH_SECONDS);
        let stream = self
            .api
            .watch(&params, &from)
            .await
            .map_err(|e| ClusterError::from_kube("watch pods", &self.server, e))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event =
                event.map_err(|e| ClusterError::from_kube("watch pods", &self.server, e))?;
            match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    self.seen(&pod);
                    images.observe(&pod).into_iter().for_each(&mut *changes);
                }
                WatchEvent::Deleted(pod) => {
                    self.seen(&pod);
                    if let Some(uid) = &pod.metadata.uid {
                        images.forget(uid);
                    }
                }
                WatchEvent::Bookmark(b) => {
                    self.version = Some(b.metadata.resource_version);
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    self.version = None;
                    return Ok(Ended::Gone);
                }
                WatchEvent::Error(status) => {
                    return Err(ClusterError::Api(format!(
                        "the cluster ended the pods' watch with {}: {}",
                        status.code, status.message
                    )));
                }
            }
        }
        Ok(Ended::Closed)
    }

    fn seen(&mut self, pod: &Pod) {
        if let Some(v) = &pod.metadata.resource_version {
            self.version = Some(v.clone());
        }
    }
}

/// A Kubernetes target's running containers, for the registry watcher: every pod of its
/// namespace, each container named `target/namespace/pod/container`, with the digest the
/// kubelet reports it runs and the pod's labels and annotations (a Compose service's labels are
/// its pods' annotations: `io.capstan.update` chooses the policy there too).
#[derive(Debug)]
pub struct TargetPods {
    target: capstan_deploy::targets::TargetConfig,
    cluster: tokio::sync::OnceCell<Cluster>,
}

impl TargetPods {
    pub fn new(target: capstan_deploy::targets::TargetConfig) -> Self {
        Self {
            target,
            cluster: tokio::sync::OnceCell::new(),
        }
    }
}

/// `docker-pullable://repo@sha256:...` (dockershim) or `repo@sha256:...` (containerd), as a
/// registry's digest reference; nothing for an image id only a node knows.
fn pulled_as(image_id: &str) -> Option<String> {
    let bare = image_id
        .strip_prefix("docker-pullable://")
        .unwrap_or(image_id);
    bare.contains('@').then(|| bare.to_owned())
}

#[async_trait::async_trait]
impl capstan_images::RunsElsewhere for TargetPods {
    fn name(&self) -> &str {
        &self.target.name
    }

    async fn running(&self) -> Result<Vec<capstan_images::RunningContainer>, String> {
        let cluster = self
            .cluster
            .get_or_try_init(|| Cluster::connect(&self.target))
            .await
            .map_err(|e| e.to_string())?;
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let pods = api
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::from_kube("list pods", &cluster.server, e).to_string())?;
        let mut out = Vec::new();
        for pod in pods.items {
            let meta = &pod.metadata;
            let mut labels: std::collections::BTreeMap<String, String> =
                meta.labels.clone().unwrap_or_default();
            labels.extend(meta.annotations.clone().unwrap_or_default());
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let running = statuses
                    .iter()
                    .find(|s| s.name == c.name)
                    .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
                let Some(status) = running else {
                    continue;
                };
                out.push(capstan_images::RunningContainer {
                    name: format!(
                        "{}/{}/{}/{}",
                        self.target.name,
                        cluster.namespace,
                        meta.name.as_deref().unwrap_or_default(),
                        c.name
                    ),
                    image: c.image.clone().unwrap_or_default(),
                    repo_digests: pulled_as(&status.image_id).into_iter().collect(),
                    labels: labels.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// A pod's labels and annotations from a Kubernetes target's API, for the log collector.
#[derive(Debug)]
pub struct ApiPodLabels {
    target: capstan_deploy::targets::TargetConfig,
    cluster: tokio::sync::OnceCell<Cluster>,
}

impl ApiPodLabels {
    pub fn new(target: capstan_deploy::targets::TargetConfig) -> Self {
        Self {
            target,
            cluster: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl capstan_logs::PodLabels for ApiPodLabels {
    async fn labels(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let cluster = self
            .cluster
            .get_or_try_init(|| Cluster::connect(&self.target))
            .await
            .map_err(|e| e.to_string())?;
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        let pod = api.get(pod).await.map_err(|e| {
            ClusterError::from_kube(&format!("get pod {namespace}/{pod}"), &cluster.server, e)
                .to_string()
        })?;
        let mut labels = pod.metadata.labels.unwrap_or_default();
        labels.extend(pod.metadata.annotations.unwrap_or_default());
        Ok(labels)
    }
}
