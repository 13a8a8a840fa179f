//! [`KubernetesTarget`]: the [`Target`] seam over a namespace of a cluster. One Compose service
//! is one workload (a Deployment, a StatefulSet or a DaemonSet, see [`crate::render()`]) and its
//! Services; the cluster's controllers place and replace its pods, and the rollout engine gates
//! on them and decides what a failure becomes: the cluster only marks a rollout stalled, so
//! capstan applies the previous release's objects again itself. Every object is applied
//! server-side with field manager `capstan`; images are pinned by the digest capstan resolves
//! in their registry when the release starts, so every pod of a release runs the same image.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_compose::Project;
use capstan_deploy::target::{Replica, ServiceProgress, Target, Unit};
use capstan_deploy::targets::TargetConfig;
use capstan_deploy::{DeployRequest, TargetError, desired_hash, file_digests};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service as KService,
};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::{Cluster, ClusterError, options};
use crate::render::{Input, Object, render};

const APP: &str = "io.capstan.app";
const SERVICE: &str = "io.capstan.service";
const SPEC: &str = "io.capstan.spec";
/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "capstan";
/// How long `down` waits for the app's pods to be gone.
const DOWN_WAIT: Duration = Duration::from_mins(1);

/// What capstan asks of a target's namespace, as RBAC grants it: (API group, resource,
/// verbs). Server-side apply is `patch`, and `create` for an object not there yet; the pods'
/// image journal lists and watches them; a failed rollout's message reads a pod's log.
pub const RBAC: &[(&str, &str, &[&str])] = &[
    (
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "apps",
        "statefulsets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "apps",
        "daemonsets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "services",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "secrets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "persistentvolumeclaims",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "pods", &["get", "list", "watch"]),
    ("", "pods/log", &["get"]),
];

/// The waiting reasons that mean a pod will not start without a change (the kubelet backs off
/// and tries again, but nothing it tries differs).
const FAILING: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// An app's replicas as pods of workloads in one namespace.
pub struct KubernetesTarget {
    /// The target's name in `[[targets]]`.
    pub name: String,
    config: TargetConfig,
    cluster: tokio::sync::OnceCell<Cluster>,
    /// Where images are resolved to the digest they are pinned at.
    registry: Arc<capstan_registry::Client>,
    /// The digests the releases underway pin their images to.
    pins: capstan_deploy::Pins,
    /// (app, service) → its workload as it was before the last update: what a rollback of
    /// that update applies again (its ConfigMaps and Secrets stay until the release ends).
    before: Mutex<BTreeMap<(String, String), serde_json::Value>>,
    /// Each app's workloads and pods, as last looked at.
    looks: capstan_deploy::Looks<Look>,
}

impl Debug for KubernetesTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the cluster runs of one app, as one look read it.
#[derive(Debug, Default)]
struct Look {
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    daemonsets: Vec<DaemonSet>,
    pods: Vec<Pod>,
}

/// The selector of everything of `app` (and of one service of it).
fn selector(app: &str, service: Option<&str>) -> String {
    match service {
        Some(s) => format!("{APP}={app},{SERVICE}={s}"),
        None => format!("{APP}={app}"),
    }
}

fn label<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

impl KubernetesTarget {
    /// The target `config` names; its cluster is reached when first needed (a kubeconfig that
    /// does not load fails the deploy that needs it, with the key to fix).
    pub fn new(config: TargetConfig, registry: Arc<capstan_registry::Client>) -> Self {
        Self {
            name: config.name.clone(),
            config,
            cluster: tokio::sync::OnceCell::new(),
            registry,
            pins: capstan_deploy::Pins::default(),
            before: Mutex::default(),
            looks: capstan_deploy::Looks::default(),
        }
    }

    async fn cluster(&self) -> Result<&Cluster, TargetError> {
        self.cluster
            .get_or_try_init(|| Cluster::connect(&self.config))
            .await
            .map_err(|e| TargetError::Refused(e.to_string()))
    }

    fn api<K>(c: &Cluster) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(c.client.clone(), &c.namespace)
    }

    fn changed(&self) {
        self.looks.changed();
    }

    /// What the cluster runs of `app`: another caller's look within 90 ms when nothing
    /// changed through this target since, else a new one.
    async fn look(&self, app: &str) -> Result<Arc<Look>, TargetError> {
        self.looks
            .of(app, || async {
                let c = self.cluster().await?;
                let by = selector(app, None);
                Ok(Look {
                    deployments: list::<Deployment>(c, &by).await?,
                    statefulsets: list::<StatefulSet>(c, &by).await?,
                    daemonsets: list::<DaemonSet>(c, &by).await?,
                    pods: list::<Pod>(c, &by).await?,
                })
            })
            .await
    }
}

#[async_trait::async_trait]
impl capstan_deploy::Resolve for KubernetesTarget {
    /// The digest `image` runs at: its own when pinned in the file, else what its registry
    /// says now.
    async fn resolve(&self, service: &str, image: &str) -> Result<String, TargetError> {
        if let Some((_, digest)) = image.split_once('@') {
            return Ok(digest.to_owned());
        }
        let reference = capstan_registry::Reference::parse(image)
            .map_err(|e| TargetError::Refused(format!("services.{service}.image: {image}: {e}")))?;
        self.registry
            .head(&reference)
            .await
            .map(|h| h.digest)
            .map_err(|e| {
                TargetError::Refused(format!(
                    "services.{service}.image: capstan pins every pod of a release to one digest, and cannot resolve {image} in its registry ({e}); the cluster's nodes pull it from there: push it to a registry both reach (capstan registries login for credentials), then deploy again"
                ))
            })
    }
}

impl KubernetesTarget {
    /// The objects of `project` as this target renders them, images pinned.
    async fn objects(
        &self,
        c: &Cluster,
        request: &DeployRequest,
        project: &Project,
        release: Option<i64>,
    ) -> Result<Vec<Object>, TargetError> {
        let app = project.name.clone().unwrap_or_default();
        let mut images = BTreeMap::new();
        for (name, s) in &project.services {
            let image = s.image.clone().unwrap_or_default();
            let digest = self.pins.digest(&app, name, &image, self).await?;
            let base = image.split_once('@').map_or(image.as_str(), |(b, _)| b);
            images.insert(name.clone(), format!("{base}@{digest}"));
        }
        let digests = file_digests(&request.files);
        let spec_hashes = project
            .services
            .iter()
            .map(|(n, s)| (n.clone(), desired_hash(s, &digests)))
            .collect();
        render(
            &Input {
                project,
                files: &request.files,
                images: &images,
                release,
                spec_hashes: &spec_hashes,
                redact: false,
            },
            &options(&self.config, &c.namespace),
        )
        .map_err(|r| TargetError::Refused(format!("{r}; target {} is Kubernetes", self.name)))
    }

    /// Applies `object` server-side as capstan.
    async fn apply(&self, c: &Cluster, object: &Object) -> Result<(), TargetError> {
        match object {
            Object::ConfigMap(o) => apply_one(c, o).await,
            Object::Secret(o) => apply_one(c, o).await,
            Object::PersistentVolumeClaim(o) => apply_one(c, o).await,
            Object::Service(o) => apply_one(c, o).await,
            Object::Deployment(o) => apply_one(c, o).await,
            Object::StatefulSet(o) => apply_one(c, o).await,
            Object::DaemonSet(o) => apply_one(c, o).await,
        }
    }

    /// The workload of `service` of `app` as it is now, ready to be applied again (what the
    /// cluster added to it left out), if there is one.
    async fn workload_now(
        &self,
        c: &Cluster,
        app: &str,
        service: &str,
    ) -> Result<Option<Object>, TargetError> {
        let by = selector(app, Some(service));
        let found = if let Some(d) = list::<Deployment>(c, &by).await?.pop() {
            Some(Object::Deployment(Deployment {
                metadata: bare(d.metadata),
                spec: d.spec,
                status: None,
            }))
        } else if let Some(s) = list::<StatefulSet>(c, &by).await?.pop() {
            Some(Object::StatefulSet(StatefulSet {
                metadata: bare(s.metadata),
                spec: s.spec,
                status: None,
            }))
        } else {
            list::<DaemonSet>(c, &by).await?.pop().map(|d| {
                Object::DaemonSet(DaemonSet {
                    metadata: bare(d.metadata),
                    spec: d.spec,
                    status: None,
                })
            })
        };
        Ok(found)
    }

    /// Deletes what `app` (or one service of it) has of kind `K`, except `keep` (`Kind/name`);
    /// returns what went.
    async fn delete_all<K>(
        &self,
        c: &Cluster,
        by: &str,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, TargetError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api = Self::api::<K>(c);
        let mut gone = Vec::new();
        for o in list::<K>(c, by).await? {
            let name = o.meta().name.clone().unwrap_or_default();
            let id = format!("{}/{name}", K::kind(&()));
            if keep.contains(&id) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => gone.push(id),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(cluster_error(&format!("delete {id}"), c, e)),
            }
        }
        Ok(gone)
    }

    /// Deletes the workloads and Services of `app` (one `service` of it) not in `keep`.
    async fn delete_service_objects(
        &self,
        c: &Cluster,
        app: &str,
        service: Option<&str>,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, TargetError> {
        let by = selector(app, service);
        let mut gone = self.delete_all::<Deployment>(c, &by, keep).await?;
        gone.extend(self.delete_all::<StatefulSet>(c, &by, keep).await?);
        gone.extend(self.delete_all::<DaemonSet>(c, &by, keep).await?);
        gone.extend(self.delete_all::<KService>(c, &by, keep).await?);
        Ok(gone)
    }

    /// Deletes the app's ConfigMaps and Secrets no workload of it mounts now (`all`: every
    /// one).
    async fn prune(&self, app: &str, all: bool) -> Result<Vec<String>, TargetError> {
        let c = self.cluster().await?;
        let mut used = BTreeSet::new();
        if !all {
            let by = selector(app, None);
            let mut specs = Vec::new();
            specs.extend(
                list::<Deployment>(c, &by)
                    .await?
                    .into_iter()
                    .filter_map(|d| d.spec.and_then(|s| s.template.spec)),
            );
            specs.extend(
                list::<StatefulSet>(c, &by)
                    .await?
                    .into_iter()
                    .filter_map(|d| d.spec.and_then(|s| s.template.spec)),
            );
            specs.extend(
                list::<DaemonSet>(c, &by)
                    .await?
                    .into_iter()
                    .filter_map(|d| d.spec.and_then(|s| s.template.spec)),
            );
            for v in specs.iter().flat_map(|s| s.volumes.iter().flatten()) {
                if let Some(m) = &v.config_map {
                    used.insert(format!("ConfigMap/{}", m.name));
                }
                if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
                    used.insert(format!("Secret/{name}"));
                }
            }
        }
        let by = selector(app, None);
        let mut gone = self.delete_all::<ConfigMap>(c, &by, &used).await?;
        gone.extend(self.delete_all::<Secret>(c, &by, &used).await?);
        Ok(gone)
    }
}

/// `meta` with only what an apply sets (no uid, version, managed fields...).
fn bare(meta: kube::api::ObjectMeta) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations: meta.annotations.map(|mut a| {
            a.retain(|k, _| !k.starts_with("deployment.kubernetes.io/"));
            a
        }),
        ..kube::api::ObjectMeta::default()
    }
}

fn cluster_error(doing: &str, c: &Cluster, e: kube::Error) -> TargetError {
    to_target(ClusterError::from_kube(doing, &c.server, e))
}

/// A cluster's error as the engine reports it: unreachable (exit 3), or a failure naming
/// what the cluster refused.
fn to_target(e: ClusterError) -> TargetError {
    match e {
        ClusterError::Unreachable(m) => TargetError::Unreachable {
            context: None,
            source: m.into(),
        },
        ClusterError::Config(m) => TargetError::Refused(m),
        ClusterError::Forbidden(m) | ClusterError::Api(m) => TargetError::Failed {
            context: None,
            source: m.into(),
        },
    }
}

async fn list<K>(c: &Cluster, by: &str) -> Result<Vec<K>, TargetError>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(c.client.clone(), &c.namespace);
    api.list(&ListParams::default().labels(by))
        .await
        .map(|l| l.items)
        .map_err(|e| {
            cluster_error(
                &format!("list {}", K::plural(&()).to_string().to_lowercase()),
                c,
                e,
            )
        })
}

async fn apply_one<K>(c: &Cluster, object: &K) -> Result<(), TargetError>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(c.client.clone(), &c.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| {
            if let kube::Error::Api(s) = &e
                && s.code == 404
                && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
            {
                return TargetError::Refused(format!(
                    "namespace {} does not exist in the cluster: make it (kubectl create namespace {}), or name another in the target's namespace",
                    c.namespace, c.namespace
                ));
            }
            cluster_error(&format!("apply {}/{name}", K::kind(&())), c, e)
        })
}

/// The pod's replica, when it is one of capstan's and not on its way out.
fn replica_of(pod: &Pod, slot: u32) -> Option<Replica> {
    let meta = &pod.metadata;
    let service = label(meta, SERVICE)?;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == service).or_else(|| cs.first()));
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let running = container
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    let state = match phase {
        "Running" if running => "running",
        "Running" => "restarting",
        "Succeeded" | "Failed" => "exited",
        _ => "created",
    };
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let probed = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.readiness_probe.is_some()));
    let exit_code = container
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map_or(0, |t| i64::from(t.exit_code));
    let host_ip = status.and_then(|s| s.host_ip.clone());
    Some(Replica {
        id: meta.name.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        service: service.to_owned(),
        replica: slot,
        spec_hash: label(meta, SPEC).unwrap_or_default().to_owned(),
        image_id: container
            .and_then(|c| c.image_id.split_once('@'))
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default(),
        state: state.to_owned(),
        exit_code,
        health: probed.then(|| if ready { "healthy" } else { "starting" }.to_owned()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        endpoints: host_ip
            .into_iter()
            .flat_map(|ip| {
                pod.spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .map(move |p| {
                        format!(
                            "{ip}->{}/{}",
                            p.container_port,
                            p.protocol.as_deref().unwrap_or("TCP").to_lowercase()
                        )
                    })
            })
            .collect(),
    })
}

/// The replicas among `pods`, by app; slots in name order per service (a StatefulSet's
/// ordinal where it has one).
fn replicas(pods: &[Pod]) -> BTreeMap<String, Vec<Replica>> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut slots: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Replica>> = BTreeMap::new();
    for pod in sorted {
        let (Some(app), Some(service)) = (label(&pod.metadata, APP), label(&pod.metadata, SERVICE))
        else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = slots
            .entry((app.to_owned(), service.to_owned()))
            .or_default();
        *slot += 1;
        if let Some(r) = replica_of(pod, *slot) {
            out.entry(app.to_owned()).or_default().push(r);
        }
    }
    out
}

/// Why a pod will not come up by itself, if it will not.
fn pod_failure(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .map(|n| format!(" on node {n}"))
        .unwrap_or_default();
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!(
            "pod {name}{node} failed: {}",
            status
                .reason
                .as_deref()
                .or(status.message.as_deref())
                .unwrap_or("no reason given")
        ));
    }
    for c in status.container_statuses.iter().flatten() {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if !FAILING.contains(&reason) {
            continue;
        }
        let exit = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(", last exit code {}", t.exit_code))
            .unwrap_or_default();
        let message = waiting
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Some(format!(
            "pod {name}{node}: container {} {reason}{message} (restarted {} time(s){exit})",
            c.name, c.restart_count
        ));
    }
    None
}

/// Why the cluster stopped a Deployment's rollout by itself, if it did.
fn deployment_halted(d: &Deployment) -> Option<String> {
    let status = d.status.as_ref()?;
    // conditions of a spec the controller has not seen yet are the previous rollout's
    if status.observed_generation < d.metadata.generation {
        return None;
    }
    let conditions = status.conditions.as_ref()?;
    for c in conditions {
        let message = c.message.as_deref().unwrap_or_default();
        if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Some(format!(
                "the cluster marked the rollout stalled: {message} (progressDeadlineSeconds {})",
                d.spec
                    .as_ref()
                    .and_then(|s| s.progress_deadline_seconds)
                    .unwrap_or(600)
            ));
        }
        if c.type_ == "ReplicaFailure" && c.status == "True" {
            return Some(format!(
                "the cluster cannot make its pods: {} {message}",
                c.reason.as_deref().unwrap_or_default()
            ));
        }
    }
    None
}

/// Whether a Deployment's controller has not caught up with its spec, or old pods remain.
fn deployment_updating(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return true;
    };
    s.observed_generation < d.metadata.generation
        || s.updated_replicas.unwrap_or(0) < want
        || s.replicas.unwrap_or(0) > s.updated_replicas.unwrap_or(0)
        || s.available_replicas.unwrap_or(0) < s.updated_replicas.unwrap_or(0)
}

fn statefulset_updating(d: &StatefulSet) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return true;
    };
    s.observed_generation < d.metadata.generation
        || s.update_revision.is_some() && s.current_revision != s.update_revision
        || s.updated_replicas.unwrap_or(0) < want
        || s.ready_replicas.unwrap_or(0) < want
}

fn daemonset_updating(d: &DaemonSet) -> bool {
    let Some(s) = &d.status else {
        return true;
    };
    s.observed_generation < d.metadata.generation
        || s.updated_number_scheduled.unwrap_or(0) < s.desired_number_scheduled
        || s.number_available.unwrap_or(0) < s.desired_number_scheduled
}

/// Whether `o` belongs to `service`'s part of the app (its workload and Services).
fn of_service(o: &Object, service: &str) -> bool {
    let v = o.to_value();
    matches!(
        o,
        Object::Service(_) | Object::Deployment(_) | Object::StatefulSet(_) | Object::DaemonSet(_)
    ) && v["metadata"]["labels"][SERVICE].as_str() == Some(service)
}

#[async_trait::async_trait]
impl Target for KubernetesTarget {
    fn check(&self, request: &DeployRequest) -> Result<(), TargetError> {
        capstan_deploy::refuse_routes(request, "a Kubernetes target")?;
        let namespace = self
            .config
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let none = BTreeMap::new();
        render(
            &Input {
                project: &request.project,
                files: &request.files,
                images: &none,
                release: None,
                spec_hashes: &none,
                redact: true,
            },
            &options(&self.config, &namespace),
        )
        .map(|_| ())
        .map_err(|r| {
            let top: String = r
                .key
                .split(['.', '['])
                .take(3)
                .collect::<Vec<_>>()
                .join(".");
            let at = request.source["positions"][&top]
                .as_str()
                .map(|p| format!("{p}: "))
                .unwrap_or_default();
            TargetError::Refused(format!(
                "{at}{r}; target {} is a Kubernetes cluster",
                self.name
            ))
        })
    }

    async fn prepare(&self, request: &DeployRequest) -> Result<(), TargetError> {
        let project = &request.project;
        let c = self.cluster().await?;
        self.pins.pin(project, self).await?;
        // what the workloads mount comes first: content-named, so none of it changes what runs
        for o in self.objects(c, request, project, None).await? {
            if matches!(
                o,
                Object::ConfigMap(_) | Object::Secret(_) | Object::PersistentVolumeClaim(_)
            ) {
                self.apply(c, &o).await?;
            }
        }
        self.changed();
        Ok(())
    }

    async fn finish(&self, app: &str) {
        self.pins.forget(app);
        if let Ok(mut before) = self.before.lock() {
            before.retain(|(a, _), _| a != app);
        }
        if let Err(e) = self.prune(app, false).await {
            tracing::debug!(app, error = %e, "the app's unused ConfigMaps and Secrets stay");
        }
    }

    async fn observe(&self, app: &str) -> Result<Vec<Replica>, TargetError> {
        let look = self.look(app).await?;
        Ok(replicas(&look.pods).remove(app).unwrap_or_default())
    }

    async fn observe_all(&self) -> Result<BTreeMap<String, Vec<Replica>>, TargetError> {
        let c = self.cluster().await?;
        Ok(replicas(&list::<Pod>(c, APP).await?))
    }

    async fn image_ids(&self, project: &Project) -> Result<BTreeMap<String, String>, TargetError> {
        self.pins.image_ids(project, self).await
    }

    async fn pull(&self, _image: &str) -> Result<(), TargetError> {
        // every node pulls the pinned digest itself
        Ok(())
    }

    async fn last_logs(&self, id: &str, lines: usize) -> String {
        let Ok(c) = self.cluster().await else {
            return String::new();
        };
        let api = Self::api::<Pod>(c);
        let tail = i64::try_from(lines).unwrap_or(10);
        // a container the kubelet backs off from has no current log: its last run's is it
        for previous in [false, true] {
            let params = LogParams {
                tail_lines: Some(tail),
                previous,
                ..LogParams::default()
            };
            if let Ok(text) = api.logs(id, &params).await
                && !text.trim().is_empty()
            {
                return text;
            }
        }
        String::new()
    }

    fn orchestrates(&self) -> bool {
        true
    }

    async fn apply_service(&self, unit: Unit<'_>) -> Result<(), TargetError> {
        let c = self.cluster().await?;
        let app = unit.project.name.clone().unwrap_or_default();
        let key = (app.clone(), unit.service.to_owned());
        // the previous release's definition put back after a failed update
        let restoring = unit.restoring();
        let saved = if restoring {
            self.before.lock().ok().and_then(|b| b.get(&key).cloned())
        } else {
            None
        };
        let rendered = self
            .objects(c, unit.request, unit.project, Some(unit.release))
            .await;
        let whole = rendered.is_ok();
        let mut objects: Vec<Object> = match (rendered, &saved) {
            (Ok(all), _) => all
                .into_iter()
                .filter(|o| of_service(o, unit.service))
                .collect(),
            // the previous model may name a config this release's request no longer carries:
            // the workload as it ran is what goes back, with the Services as they are
            (Err(e), Some(_)) => {
                tracing::debug!(service = unit.service, error = %e, "the previous release's Services stay as they are");
                Vec::new()
            }
            (Err(e), None) => return Err(e),
        };
        if restoring {
            if let Some(saved) = saved {
                // the workload exactly as it ran (its image, its ConfigMaps and Secrets), under
                // the identity the engine's gate looks for
                let service = unit.project.services.get(unit.service);
                let hash = service
                    .map(|s| desired_hash(s, &file_digests(&unit.request.files)))
                    .unwrap_or_default();
                let saved = with_spec_label(saved, &hash);
                if let Some(o) = object_of(saved) {
                    objects.retain(|o| matches!(o, Object::Service(_)));
                    objects.push(o);
                }
            }
        } else if let Some(now) = self.workload_now(c, &app, unit.service).await?
            && let Ok(mut b) = self.before.lock()
        {
            b.insert(key, now.to_value());
        }
        let keep: BTreeSet<String> = objects.iter().map(Object::id).collect();
        let mut applied = Ok(());
        for o in &objects {
            applied = self.apply(c, o).await;
            if applied.is_err() {
                break;
            }
        }
        // (a refused change may have changed something too)
        self.changed();
        applied?;
        // a workload of another kind (a volume added: a StatefulSet now), a public Service no
        // port needs (known only when the whole service was rendered)
        if whole {
            self.delete_service_objects(c, &app, Some(unit.service), &keep)
                .await?;
        }
        Ok(())
    }

    async fn service_progress(
        &self,
        app: &str,
        service: &str,
    ) -> Result<ServiceProgress, TargetError> {
        let look = self.look(app).await?;
        let mine = |m: &kube::api::ObjectMeta| label(m, SERVICE) == Some(service);
        let mut progress = ServiceProgress::default();
        if let Some(d) = look.deployments.iter().find(|d| mine(&d.metadata)) {
            progress.halted = deployment_halted(d);
            progress.updating = deployment_updating(d);
        } else if let Some(s) = look.statefulsets.iter().find(|d| mine(&d.metadata)) {
            progress.updating = statefulset_updating(s);
        } else if let Some(s) = look.daemonsets.iter().find(|d| mine(&d.metadata)) {
            progress.updating = daemonset_updating(s);
        }
        progress.failed = look
            .pods
            .iter()
            .filter(|p| mine(&p.metadata) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let why = pod_failure(p)?;
                Some((
                    p.metadata.name.clone().unwrap_or_default(),
                    label(&p.metadata, SPEC).unwrap_or_default().to_owned(),
                    why,
                ))
            })
            .collect();
        Ok(progress)
    }

    async fn remove_service(&self, app: &str, service: &str) -> Result<(), TargetError> {
        let c = self.cluster().await?;
        self.changed();
        self.delete_service_objects(c, app, Some(service), &BTreeSet::new())
            .await?;
        Ok(())
    }

    async fn down(&self, app: &str, volumes: bool) -> Result<Vec<String>, TargetError> {
        let c = self.cluster().await?;
        self.changed();
        let none = BTreeSet::new();
        let mut removed = self.delete_service_objects(c, app, None, &none).await?;
        removed.extend(self.prune(app, true).await?);
        if volumes {
            let by = selector(app, None);
            removed.extend(
                self.delete_all::<PersistentVolumeClaim>(c, &by, &none)
                    .await?,
            );
        }
        // done when its pods are gone (the cluster stops them in the background)
        let deadline = tokio::time::Instant::now() + DOWN_WAIT;
        while tokio::time::Instant::now() < deadline {
            let left = list::<Pod>(c, &selector(app, None)).await?;
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(removed)
    }
}

/// `workload` with `hash` as its pods' `io.capstan.spec` label.
fn with_spec_label(mut workload: serde_json::Value, hash: &str) -> serde_json::Value {
    if let Some(labels) = workload
        .pointer_mut("/spec/template/metadata/labels")
        .and_then(serde_json::Value::as_object_mut)
    {
        labels.insert(SPEC.into(), serde_json::Value::String(hash.to_owned()));
    }
    workload
}

/// A workload saved as JSON, typed again.
fn object_of(v: serde_json::Value) -> Option<Object> {
    match v["kind"].as_str()? {
        "Deployment" => serde_json::from_value(v).ok().map(Object::Deployment),
        "StatefulSet" => serde_json::from_value(v).ok().map(Object::StatefulSet),
        "DaemonSet" => serde_json::from_value(v).ok().map(Object::DaemonSet),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_crash_looping_pod_is_a_failure_naming_its_reason_and_exit_code() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "shop-web-7d9-x1", "labels": {APP: "shop", SERVICE: "web", SPEC: "h2"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "r/web@sha256:b"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "web", "image": "r/web@sha256:b", "imageID": "r/web@sha256:b",
                "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=web"}},
                "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}
            }]}
        }));
        let why = pod_failure(&p).unwrap();
        assert!(why.contains("CrashLoopBackOff"), "{why}");
        assert!(why.contains("last exit code 3"), "{why}");
        assert!(why.contains("on node n1"), "{why}");
        let r = replica_of(&p, 1).unwrap();
        assert_eq!(r.state, "restarting");
        assert_eq!(r.exit_code, 3);
        assert_eq!(r.spec_hash, "h2");
        // a pull that is still being tried is no failure yet
        let pulling = pod(serde_json::json!({
            "metadata": {"name": "p", "labels": {APP: "shop", SERVICE: "web"}},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "web", "image": "r/web", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }]}
        }));
        assert_eq!(pod_failure(&pulling), None);
    }

    #[test]
    fn a_ready_pod_with_a_probe_is_a_healthy_replica_running_its_digest() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "shop-web-0", "labels": {APP: "shop", SERVICE: "web", SPEC: "h1"}},
            "spec": {"containers": [{"name": "web", "image": "r/web@sha256:a",
                "readinessProbe": {"exec": {"command": ["true"]}},
                "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "image": "r/web@sha256:a",
                    "imageID": "docker-pullable://r/web@sha256:a", "ready": true, "restartCount": 0,
                    "state": {"running": {}}}]}
        }));
        let r = replica_of(&p, 1).unwrap();
        assert_eq!(r.state, "running");
        assert_eq!(r.health.as_deref(), Some("healthy"));
        assert_eq!(r.image_id, "sha256:a");
        assert_eq!(r.endpoints, ["10.0.0.5->80/tcp"]);
        // a pod on its way out is no replica
        let mut leaving = p.clone();
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(replicas(&[leaving]).is_empty());
    }

    #[test]
    fn a_stalled_deployment_halts_and_an_incomplete_one_is_updating() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-web", "generation": 2},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 30, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                "availableReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"shop-web-5d8\" has timed out progressing."}]}
        }))
        .unwrap();
        let halted = deployment_halted(&d).unwrap();
        assert!(halted.contains("has timed out progressing"), "{halted}");
        assert!(halted.contains("progressDeadlineSeconds 30"), "{halted}");
        assert!(deployment_updating(&d));
        // applied again, not yet seen by the controller: the old condition says nothing
        let mut again = d.clone();
        again.metadata.generation = Some(3);
        assert_eq!(deployment_halted(&again), None);
        assert!(deployment_updating(&again));
        let done: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-web", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                "availableReplicas": 2, "readyReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        }))
        .unwrap();
        assert_eq!(deployment_halted(&done), None);
        assert!(!deployment_updating(&done));
    }
}
