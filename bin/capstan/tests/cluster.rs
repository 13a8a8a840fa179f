//! The Kubernetes scenario on a real cluster: `scripts/test-kubernetes KUBECONFIG REGISTRY`
//! runs it. The suite never builds it (`test = false` in Cargo.toml): it runs the same
//! scenario on its wire-format server (`e2e::kubernetes::the_scenario_on_the_wire_format_server`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e/kubernetes_scenario.rs"]
mod kubernetes_scenario;

use std::path::{Path, PathBuf};

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this through scripts/test-kubernetes KUBECONFIG REGISTRY")
    })
}

#[tokio::test]
async fn the_scenario_on_a_real_cluster() {
    let context = setting("CAPSTAN_TEST_KUBE_CONTEXT");
    let place = kubernetes_scenario::Place {
        kubeconfig: PathBuf::from(setting("CAPSTAN_TEST_KUBECONFIG")),
        context: (!context.is_empty()).then_some(context),
        namespace: setting("CAPSTAN_TEST_KUBE_NAMESPACE"),
        registry: setting("CAPSTAN_TEST_CLUSTER_REGISTRY"),
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_capstan"));
    let app = kubernetes_scenario::run(bin, &capstan_testkit::docker_host(), &place).await;
    println!(
        "the scenario passed on the cluster (app {app}, namespace {})",
        place.namespace
    );
}
