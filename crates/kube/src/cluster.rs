//! A Kubernetes target's cluster: its kubeconfig context read into a client (kube-rs), the
//! namespace apps go in, and the errors of talking to it, sorted into what the user does next.

use capstan_deploy::targets::{PROBE_TIMEOUT, TargetConfig, unasked};
use capstan_model::{TargetKind, TargetStatus};

use crate::render::{Options, Publish};

/// The name that means the cluster capstan runs in, through its pod's ServiceAccount.
pub const IN_CLUSTER: &str = "in-cluster";

/// What went wrong talking to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig cannot be read, or names no usable context.
    #[error("{0}")]
    Config(String),
    /// The API server did not answer (connection refused, timed out, TLS).
    #[error("{0}")]
    Unreachable(String),
    /// RBAC said no: the message names the verb and the resource.
    #[error("{0}")]
    Forbidden(String),
    /// Anything else the API server answered.
    #[error("{0}")]
    Api(String),
}

impl ClusterError {
    /// Sorts a client error, saying what was being done (`get the API server's version`).
    pub fn from_kube(doing: &str, server: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden(format!(
                "the cluster refused to {doing}: {} (give capstan's user that verb on that resource: capstan render-self --target NAME prints the RBAC it needs)",
                status.message
            )),
            kube::Error::Api(status) if status.code == 401 => Self::Forbidden(format!(
                "the cluster did not accept the kubeconfig's credentials to {doing}: {} (renew them)",
                status.message
            )),
            kube::Error::Api(status) => Self::Api(format!(
                "the cluster answered {} to {doing}: {}",
                status.code, status.message
            )),
            kube::Error::HyperError(_) | kube::Error::Service(_) => Self::Unreachable(format!(
                "cannot reach the API server at {server} to {doing}: {} (is the cluster up, and the kubeconfig's server right?)",
                chain(&e)
            )),
            other => Self::Api(format!("cannot {doing} at {server}: {}", chain(&other))),
        }
    }
}

/// An error with its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !out.contains(&said) {
            out.push_str(": ");
            out.push_str(&said);
        }
        source = s.source();
    }
    out
}

/// A connected cluster: a client for the target's context, and its namespace.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// Where the target's apps go.
    pub namespace: String,
    /// The API server's address, for messages.
    pub server: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Reads the target's kubeconfig (its `kubeconfig`, else `$KUBECONFIG`, else
    /// `~/.kube/config`) at its `context` and makes a client; nothing is asked of the
    /// cluster yet.
    ///
    /// # Errors
    /// [`ClusterError::Config`], naming the file or the context.
    pub async fn connect(t: &TargetConfig) -> Result<Self, ClusterError> {
        // the client's TLS takes the process's crypto provider; a process that links more
        // than one (a test harness does) has none until one is chosen: capstan's is aws-lc-rs
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        if t.kubeconfig.is_none()
            && t.context.is_none()
            && (t.name == IN_CLUSTER || std::env::var_os("KUBECONFIG").is_none())
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            && let Ok(config) = kube::Config::incluster()
        {
            // in a pod, with no kubeconfig named: its ServiceAccount
            return Self::from_config(t, config);
        }
        let file = match &t.kubeconfig {
            Some(path) => kube::config::Kubeconfig::read_from(path).map_err(|e| {
                ClusterError::Config(format!(
                    "targets.{}.kubeconfig: cannot read {}: {}",
                    t.name,
                    path.display(),
                    chain(&e)
                ))
            })?,
            None => kube::config::Kubeconfig::read().map_err(|e| {
                ClusterError::Config(format!(
                    "target {}: no kubeconfig ({}): set kubeconfig = \"/path\" in its [[targets]] entry, or $KUBECONFIG",
                    t.name,
                    chain(&e)
                ))
            })?,
        };
        let options = kube::config::KubeConfigOptions {
            context: t.context.clone(),
            ..kube::config::KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| {
                ClusterError::Config(format!(
                    "target {}: the kubeconfig's context{} does not load: {}",
                    t.name,
                    t.context
                        .as_deref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default(),
                    chain(&e)
                ))
            })?;
        Self::from_config(t, config)
    }

    fn from_config(t: &TargetConfig, config: kube::Config) -> Result<Self, ClusterError> {
        let namespace = t
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| {
            ClusterError::Config(format!(
                "target {}: cannot make a client for {server}: {}",
                t.name,
                chain(&e)
            ))
        })?;
        Ok(Self {
            client,
            namespace,
            server,
        })
    }

    /// The API server's version (`v1.28.3`).
    ///
    /// # Errors
    /// A [`ClusterError`].
    pub async fn version(&self) -> Result<String, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| ClusterError::from_kube("get the API server's version", &self.server, e))
    }
}

/// What the target's settings add to a render.
pub fn options(t: &TargetConfig, namespace: &str) -> Options {
    let defaults = Options::default();
    Options {
        namespace: namespace.to_owned(),
        publish: match t.publish.as_deref() {
            Some("nodeport") => Publish::NodePort,
            _ => Publish::LoadBalancer,
        },
        volume_size: t.volume_size.clone().unwrap_or(defaults.volume_size),
        progress_deadline_seconds: t
            .progress_deadline
            .as_deref()
            .and_then(|d| capstan_model::parse_duration(d).ok())
            .and_then(|d| i32::try_from(d.as_secs()).ok())
            .unwrap_or(defaults.progress_deadline_seconds),
    }
}

/// A Kubernetes target now: whether its API server answers, and its version.
pub async fn probe(t: &TargetConfig) -> TargetStatus {
    let mut status = unasked(&t.name, TargetKind::Kubernetes, "");
    let cluster = match Cluster::connect(t).await {
        Ok(c) => c,
        Err(e) => {
            status.error = Some(e.to_string());
            return status;
        }
    };
    status.endpoint = format!(
        "{}{} (namespace {})",
        cluster.server,
        t.context
            .as_deref()
            .map(|c| format!(", context {c}"))
            .unwrap_or_default(),
        cluster.namespace
    );
    match tokio::time::timeout(PROBE_TIMEOUT, cluster.version()).await {
        Err(_) => {
            status.error = Some(format!(
                "the API server at {} did not answer within {} s (is the cluster up, and the kubeconfig's server right?)",
                cluster.server,
                PROBE_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => status.error = Some(e.to_string()),
        Ok(Ok(version)) => {
            status.healthy = true;
            status.engine_versions = vec![version];
        }
    }
    status
}
