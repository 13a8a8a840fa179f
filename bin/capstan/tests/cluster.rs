//! The Kubernetes scenario on a real cluster: `scripts/test-kubernetes KUBECONFIG REGISTRY`
//! runs it. The suite never builds it (`test = false` in Cargo.toml): it runs the same
//! scenario on its wire-format server (`e2e::kubernetes::the_scenario_on_the_wire_format_server`).
//! The node agent's part needs a cluster that runs containers (a kubelet writing
//! `/var/log/pods`, `pods/exec`), so it is here only; the suite reads kubelet-format files with
//! the same agent config (`e2e::logs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e/kubernetes_scenario.rs"]
mod kubernetes_scenario;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_testkit::{Daemon, eventually};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use tokio::io::AsyncReadExt as _;

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this through scripts/test-kubernetes KUBECONFIG REGISTRY")
    })
}

fn place() -> kubernetes_scenario::Place {
    let context = setting("CAPSTAN_TEST_KUBE_CONTEXT");
    kubernetes_scenario::Place {
        kubeconfig: PathBuf::from(setting("CAPSTAN_TEST_KUBECONFIG")),
        context: (!context.is_empty()).then_some(context),
        namespace: setting("CAPSTAN_TEST_KUBE_NAMESPACE"),
        registry: setting("CAPSTAN_TEST_CLUSTER_REGISTRY"),
    }
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_capstan"))
}

#[tokio::test]
async fn the_scenario_on_a_real_cluster() {
    let place = place();
    let app = kubernetes_scenario::run(bin(), &capstan_testkit::docker_host(), &place).await;
    println!(
        "the scenario passed on the cluster (app {app}, namespace {})",
        place.namespace
    );
}

/// Every object of `objects` (render-self's, in order), applied the way `kubectl apply
/// --server-side` would, or deleted.
async fn apply_or_delete(
    client: &kube::Client,
    namespace: &str,
    objects: &[serde_json::Value],
    delete: bool,
) {
    for o in objects {
        let (group, version) = match o["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", o["apiVersion"].as_str().unwrap()),
        };
        let gvk = GroupVersionKind::gvk(group, version, o["kind"].as_str().unwrap());
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            Api::namespaced_with(client.clone(), namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let name = o["metadata"]["name"].as_str().unwrap();
        if delete {
            let _ = api.delete(name, &DeleteParams::default()).await;
        } else {
            api.patch(
                name,
                &PatchParams::apply("capstan-test").force(),
                &Patch::Apply(o),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind));
        }
    }
}

/// `capstan logs --all -o json QUERY` run inside the agent pod `pod` (its CLI reads the
/// daemon's token from the data dir, as an operator's `kubectl exec` would).
async fn search_in(pods: &Api<Pod>, pod: &str, query: &str) -> Vec<serde_json::Value> {
    let mut attached = pods
        .exec(
            pod,
            ["capstan", "logs", "--all", "-o", "json", query],
            &AttachParams::default().stdout(true).stderr(true),
        )
        .await
        .unwrap();
    let mut out = String::new();
    attached
        .stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let mut err = String::new();
    attached
        .stderr()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    attached.join().await.unwrap();
    assert!(err.trim().is_empty(), "capstan logs in {pod}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The node agent from `render-self` (capstan's image, built from this checkout's binary by
/// scripts/test-kubernetes) reads the pods' logs on every node: the 2,000 lines each of two
/// replicas writes are stored exactly once, on the agent of the replica's node, with the pod's
/// namespace, name, container and allowlisted labels.
#[tokio::test]
async fn the_node_agent_stores_every_pod_line_once() {
    let place = place();
    let image = setting("CAPSTAN_TEST_AGENT_IMAGE");
    let docker_host = capstan_testkit::docker_host();
    let daemon = Daemon::start_with(
        bin(),
        &docker_host,
        &format!(
            "[logs]\ncollect = false\n\n{}",
            kubernetes_scenario::target_config(&place)
        ),
    )
    .await;
    let (code, out, err) = daemon
        .cli(&[
            "render-self",
            "--target",
            "k8s",
            "--image",
            &image,
            "-o",
            "json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let objects: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();

    let cluster = kubernetes_scenario::cluster(&place).await;
    let client = cluster.client.clone();
    apply_or_delete(&client, &place.namespace, &objects, false).await;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), &place.namespace);
    eventually(
        Duration::from_mins(3),
        "the node agent ready on every node",
        || {
            let sets = sets.clone();
            async move {
                let s = sets.get("capstan-node").await.ok()?.status?;
                (s.desired_number_scheduled > 0
                    && s.number_ready == s.desired_number_scheduled
                    && s.updated_number_scheduled == Some(s.desired_number_scheduled))
                .then_some(())
            }
        },
    )
    .await;

    // an app of two replicas, each writing 2,000 numbered lines
    let engine = capstan_engine::Engine::new(Some(&docker_host)).unwrap();
    let app = capstan_testkit::unique("kagent");
    let app_image = format!("{}/{app}", place.registry);
    capstan_testkit::push_versions(&engine, &app_image, &["1"]).await;
    let marker = format!("{app}-line");
    let compose = format!(
        "name: {app}
services:
  talk:
    image: {app_image}:1
    command: [\"sh\", \"-c\", \"i=0; while [ $$i -lt 2000 ]; do echo {marker} $$i; i=$$((i+1)); done; exec sleep 1000000\"]
    deploy:
      replicas: 2
"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = kubernetes_scenario::deploy(&daemon, dir.path(), &compose, "agent\n").await;
    assert_eq!(code, 0, "{out}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &place.namespace);
    let agents = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=capstan-node"))
        .await
        .unwrap()
        .items;
    let lines = eventually(Duration::from_mins(2), "4,000 lines on the agents", || {
        let pods = pods.clone();
        let agents = agents.clone();
        let marker = marker.clone();
        async move {
            let mut all = Vec::new();
            for agent in &agents {
                let name = agent.metadata.name.as_deref().unwrap();
                all.extend(search_in(&pods, name, &format!("\"{marker}\"")).await);
            }
            assert!(all.len() <= 4000, "more lines than written: {}", all.len());
            (all.len() == 4000).then_some(all)
        }
    })
    .await;
    let mut per_pod: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in &lines {
        assert_eq!(l["namespace"], place.namespace.as_str(), "{l}");
        assert_eq!(l["container"], "talk", "{l}");
        assert_eq!(l["labels"]["io.capstan.app"], app.as_str(), "{l}");
        let n: u32 = l["raw"]
            .as_str()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        per_pod
            .entry(l["pod"].as_str().unwrap().to_owned())
            .or_default()
            .push(n);
    }
    assert_eq!(per_pod.len(), 2, "{:?}", per_pod.keys());
    for (pod, mut numbers) in per_pod {
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (0..2000).collect::<Vec<_>>(),
            "{pod}: every line once"
        );
    }

    let (code, _, err) = daemon.cli(&["down", &app, "--volumes"]).await;
    assert_eq!(code, 0, "{err}");
    apply_or_delete(&client, &place.namespace, &objects, true).await;
    println!(
        "the node agent stored each of the 4,000 lines once ({} agents)",
        agents.len()
    );
}
