//! capstan's own objects on a cluster (`capstan render-self`): the node agent, a DaemonSet
//! that runs capstan without a Docker engine on every node to collect its pods' CRI logs
//! (`/var/log/pods`, read-only), with its data on the node and the least RBAC it needs (`get`
//! on pods, for their labels); and the deployer's Role, the verbs [`crate::RBAC`] lists, bound
//! to a ServiceAccount a capstan outside the cluster can hold a token of.

use serde_json::{Value, json};

use crate::RBAC;

/// What the objects are made for.
#[derive(Debug, Clone)]
pub struct SelfOptions {
    /// The namespace they go in (the target's).
    pub namespace: String,
    /// capstan's image, which every node pulls.
    pub image: String,
    /// A fleet hub's address (`https://HOST:PORT`): each node's agent joins it (its name the
    /// node's) with the token of the Secret [`JOIN_SECRET`], and ships what it collects there.
    pub join: Option<String>,
}

/// The Secret whose `token` key holds the join token every node's agent joins the hub with
/// (`capstan hosts join-token --uses N`).
pub const JOIN_SECRET: &str = "capstan-join";

/// The node agent's name (its DaemonSet, ServiceAccount, ClusterRole, ConfigMap).
pub const AGENT: &str = "capstan-node";
/// The deployer's name (its ServiceAccount, Role and RoleBinding).
pub const DEPLOYER: &str = "capstan";

fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "capstan",
        "app.kubernetes.io/managed-by": "capstan",
    })
}

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({"name": name, "labels": labels(name)});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// The node agent's capstan.toml.
pub fn agent_config() -> String {
    "# capstan as a node agent (capstan render-self): this node's pod logs, stored, searchable
# and shipped; no Docker engine here
[docker]
enabled = false

[images]
watch = false

[logs]
pods = \"/var/log/pods\"
# the pods' labels and annotations, from the API through the agent's ServiceAccount
pod_labels_from = \"in-cluster\"
labels = [\"app.kubernetes.io/name\", \"app.kubernetes.io/instance\", \"io.capstan.app\", \"io.capstan.service\"]
"
    .to_owned()
}

/// The objects, in the order they are applied.
pub fn render_self(o: &SelfOptions) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let mut args = vec![
        json!("serve"),
        json!("--config"),
        json!("/etc/capstan/capstan.toml"),
        json!("--data"),
        json!("/var/lib/capstan"),
    ];
    // lines say the node they were read on, not the agent's pod
    let mut env = vec![
        json!({"name": "CAPSTAN_HOST", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        // secrets go on a tmpfs: the root filesystem is read-only, and every pod has /dev/shm
        json!({"name": "CAPSTAN_RUN_DIR", "value": "/dev/shm/capstan"}),
        // the CLI run in the pod (kubectl exec) finds the token here
        json!({"name": "CAPSTAN_DATA", "value": "/var/lib/capstan"}),
    ];
    if let Some(hub) = &o.join {
        // a host of the fleet, named after its node; its key kept on the node (the data
        // volume), so a new pod is the same host and the token is needed once per node
        args[0] = json!("agent");
        args.extend([json!("--join"), json!(hub)]);
        env.push(json!({"name": "CAPSTAN_JOIN_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": JOIN_SECRET, "key": "token"}}}));
    }
    let rules: Vec<Value> = RBAC
        .iter()
        .map(|(group, resource, verbs)| {
            json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
        })
        .collect();
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(DEPLOYER, Some(ns))}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(DEPLOYER, Some(ns)), "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(DEPLOYER, Some(ns)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEPLOYER},
            "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(AGENT, Some(ns))}),
        // the pods of every namespace run on a node: their labels are read wherever they are
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(AGENT, None),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(AGENT, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(AGENT, Some(ns)),
            "data": {"capstan.toml": agent_config()}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(AGENT, Some(ns)),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": AGENT}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels(AGENT)},
                "spec": {
                    "serviceAccountName": AGENT,
                    // every node's pods, the control plane's too
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "capstan",
                        "image": o.image,
                        "args": args,
                        "env": env,
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"memory": "512Mi"}},
                        // root reads the kubelet's root-owned files; nothing else is allowed
                        "securityContext": {"runAsUser": 0, "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [
                            {"name": "pods", "mountPath": "/var/log/pods", "readOnly": true},
                            {"name": "data", "mountPath": "/var/lib/capstan"},
                            {"name": "config", "mountPath": "/etc/capstan", "readOnly": true},
                            {"name": "tmp", "mountPath": "/tmp"}
                        ]
                    }],
                    "volumes": [
                        {"name": "pods", "hostPath": {"path": "/var/log/pods", "type": "Directory"}},
                        // positions and the store survive the pod: nothing is read twice
                        {"name": "data", "hostPath": {"path": "/var/lib/capstan-node",
                                                      "type": "DirectoryOrCreate"}},
                        {"name": "config", "configMap": {"name": AGENT}},
                        {"name": "tmp", "emptyDir": {}}
                    ]
                }
            }
        }}),
    ]
}
