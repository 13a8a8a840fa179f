//! Kubernetes for capstan. The resolved Compose model becomes typed Kubernetes objects
//! ([`render()`]): a Deployment (a StatefulSet for a single replica with a named volume, a
//! DaemonSet for `mode: global`) and Services per Compose service, ConfigMaps and Secrets named
//! by their content, PersistentVolumeClaims for named volumes. What a cluster cannot honour is
//! refused with the key that asks for it ([`Refusal`]) before anything is applied. A target's
//! cluster is reached through its kubeconfig context ([`Cluster`]).

mod agent;
mod cluster;
mod journal;
mod names;
pub mod pods;
pub use pods::{ApiPodLabels, TargetPods};
mod render;
mod target;

pub use agent::{AGENT, DEPLOYER, JOIN_SECRET, SelfOptions, agent_config, render_self};
pub use cluster::{Cluster, ClusterError, IN_CLUSTER, options, probe};
pub use journal::PodJournal;
pub use names::{dns_label, object_name};
pub use render::{Input, Object, Options, Publish, Refusal, render};
pub use target::{FIELD_MANAGER, KubernetesTarget, RBAC};
