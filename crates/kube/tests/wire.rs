//! A wire-format test, not a cluster: no Kubernetes API server can run on this machine, so an
//! HTTP server inside the test answers as the API documents it (its example responses) and
//! records every request it receives, which the test then checks. What it proves: capstan
//! reads a kubeconfig (server, token, context, namespace), asks what the API defines and sorts
//! the answers (a version, a 403 Status, no answer at all) into what the user does next.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use capstan_deploy::targets::TargetConfig;
use capstan_model::TargetKind;
use capstan_testkit::{KubeApi, kubeconfig};

fn target(kubeconfig: std::path::PathBuf, context: Option<&str>) -> TargetConfig {
    TargetConfig {
        name: "k8s".into(),
        kind: TargetKind::Kubernetes,
        kubeconfig: Some(kubeconfig),
        context: context.map(str::to_owned),
        ..TargetConfig::default()
    }
}

#[tokio::test]
async fn a_kubernetes_target_answers_with_its_version_through_its_context() {
    let server = KubeApi::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let status =
        capstan_kube::probe(&target(kubeconfig(dir.path(), &server.url), Some("lab"))).await;
    assert!(status.healthy, "{status:?}");
    assert_eq!(status.kind, TargetKind::Kubernetes);
    assert_eq!(status.engine_versions, ["v1.28.3"]);
    assert!(
        status.endpoint.contains("context lab"),
        "{}",
        status.endpoint
    );
    assert!(
        status.endpoint.contains("namespace apps"),
        "the context's namespace: {}",
        status.endpoint
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/version");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer t0ken"));
}

#[tokio::test]
async fn forbidden_unreachable_and_unreadable_targets_say_what_to_do() {
    // RBAC says no: the message names what was refused
    let server = KubeApi::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let status = capstan_kube::probe(&target(kubeconfig(dir.path(), &server.url), None)).await;
    assert!(!status.healthy);
    let error = status.error.unwrap();
    assert!(
        error.contains("refused to get the API server's version"),
        "{error}"
    );
    assert!(error.contains("cannot get path \"/version\""), "{error}");
    assert!(
        status.endpoint.contains("namespace default"),
        "{}",
        status.endpoint
    );

    // nothing listens
    let port = capstan_testkit::free_port();
    let status = capstan_kube::probe(&target(
        kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}")),
        Some("lab"),
    ))
    .await;
    let error = status.error.unwrap();
    assert!(error.contains("cannot reach the API server"), "{error}");

    // no such file, no such context
    let status = capstan_kube::probe(&target(dir.path().join("missing"), None)).await;
    let error = status.error.unwrap();
    assert!(
        error.contains("targets.k8s.kubeconfig: cannot read"),
        "{error}"
    );
    let status = capstan_kube::probe(&target(
        kubeconfig(dir.path(), &server.url),
        Some("nowhere"),
    ))
    .await;
    let error = status.error.unwrap();
    assert!(error.contains("context nowhere does not load"), "{error}");
}
