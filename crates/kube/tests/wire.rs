//! A wire-format test, not a cluster: no Kubernetes API server can run on this machine, so an
//! HTTP server inside the test answers as the API documents it (its example responses) and
//! records every request it receives, which the test then checks. What it proves: capstan
//! reads a kubeconfig (server, token, context, namespace), asks what the API defines and sorts
//! the answers (a version, a 403 Status, no answer at all) into what the user does next; and
//! follows pods as the API serves them: a list, a watch from its resourceVersion (newline-
//! delimited events, bookmarks asked for), the watch again from the last version seen, and a
//! list again after the documented `410 Gone` (`Expired`) event.
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

/// A pod as the API answers it, with one container `web` in the given state.
fn pod(
    name: &str,
    uid: &str,
    version: &str,
    image: &str,
    state: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "uid": uid, "resourceVersion": version},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": image}]},
        "status": {"phase": "Running", "containerStatuses": [state]},
    })
}

fn running(image: &str, digest: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "web", "image": image, "imageID": digest, "ready": true, "restartCount": 0,
        "state": {"running": {"startedAt": "2026-12-05T10:00:00Z"}},
    })
}

fn waiting(image: &str, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "web", "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    })
}

fn stream(events: &[(&str, serde_json::Value)]) -> String {
    let mut out = String::new();
    for (kind, object) in events {
        out.push_str(&serde_json::json!({"type": kind, "object": object}).to_string());
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn pods_are_listed_watched_from_their_version_and_listed_again_after_410() {
    use capstan_kube::pods::{Ended, PodChange, PodImages, PodWatch};
    let api = KubeApi::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = capstan_kube::Cluster::connect(&target(api.kubeconfig(dir.path()), Some("lab")))
        .await
        .unwrap();
    let pods = "/api/v1/namespaces/apps/pods";
    let v1 = "reg.example.com/web@sha256:".to_owned() + &"a".repeat(64);
    let v2 = "reg.example.com/web@sha256:".to_owned() + &"b".repeat(64);
    // the list: web-1 runs v1
    api.reply(
        pods,
        false,
        200,
        serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "100"},
            "items": [pod("web-1", "u1", "90", "reg.example.com/web:1", &running("reg.example.com/web:1", &v1))],
        })
        .to_string(),
    );
    // the watch from 100: web-1 again (nothing new), web-2 cannot pull (twice: said once)
    api.reply(
        pods,
        true,
        200,
        stream(&[
            (
                "MODIFIED",
                pod(
                    "web-1",
                    "u1",
                    "101",
                    "reg.example.com/web:1",
                    &running("reg.example.com/web:1", &v1),
                ),
            ),
            (
                "ADDED",
                pod(
                    "web-2",
                    "u2",
                    "102",
                    "reg.example.com/web:9",
                    &waiting("reg.example.com/web:9", "ErrImagePull", "manifest unknown"),
                ),
            ),
            (
                "MODIFIED",
                pod(
                    "web-2",
                    "u2",
                    "103",
                    "reg.example.com/web:9",
                    &waiting(
                        "reg.example.com/web:9",
                        "ImagePullBackOff",
                        "Back-off pulling image",
                    ),
                ),
            ),
        ]),
    );
    // the next watch, from 103: the version is too old now
    api.reply(
        pods,
        true,
        200,
        stream(&[(
            "ERROR",
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 103 (150)", "reason": "Expired", "code": 410}),
        )]),
    );
    // listed again: web-1 runs v2 now (changed while unwatched), web-2 is gone
    api.reply(
        pods,
        false,
        200,
        serde_json::json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "200"},
            "items": [pod("web-1", "u1", "180", "reg.example.com/web:1", &running("reg.example.com/web:1", &v2))],
        })
        .to_string(),
    );

    let mut watch = PodWatch::new(&cluster);
    let mut images = PodImages::default();
    let mut changes = Vec::new();
    let ended = watch
        .follow(&mut images, &mut |c| changes.push(c))
        .await
        .unwrap();
    assert_eq!(ended, Ended::Closed);
    assert_eq!(watch.version(), Some("103"));
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert!(
        matches!(&changes[0], PodChange::Running { common, image_id, started }
        if common.pod == "web-1" && *image_id == v1 && common.node == "node-1" && *started == 1_796_464_800_000_000_000)
    );
    assert!(
        matches!(&changes[1], PodChange::PullFailed { common, reason, message, .. }
        if common.pod == "web-2" && reason == "ErrImagePull" && message == "manifest unknown" && common.image == "reg.example.com/web:9")
    );

    changes.clear();
    let ended = watch
        .follow(&mut images, &mut |c| changes.push(c))
        .await
        .unwrap();
    assert_eq!(ended, Ended::Gone);
    assert_eq!(watch.version(), None);
    assert!(changes.is_empty());

    let ended = watch.follow(&mut images, &mut |c| changes.push(c)).await;
    // (the script has no third watch: the server answers 404, which ends this follow)
    assert!(ended.is_err());
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert!(
        matches!(&changes[0], PodChange::Running { common, image_id, .. } if common.pod == "web-1" && *image_id == v2)
    );
    assert_eq!(watch.version(), Some("200"));

    // what was asked: list, watch from 100, watch from 103, list, watch from 200; each with
    // the context's token
    let asked: Vec<(String, String)> = api
        .seen()
        .into_iter()
        .inspect(|s| assert_eq!(s.authorization.as_deref(), Some("Bearer t0ken")))
        .map(|s| (s.path, s.query))
        .collect();
    assert_eq!(asked.len(), 5, "{asked:#?}");
    assert!(asked.iter().all(|(p, _)| p == pods), "{asked:#?}");
    let version_of = |q: &str| {
        q.split('&')
            .find_map(|p| p.strip_prefix("resourceVersion="))
            .map(str::to_owned)
    };
    let watched: Vec<Option<String>> = asked
        .iter()
        .filter(|(_, q)| q.contains("watch=true"))
        .map(|(_, q)| version_of(q))
        .collect();
    assert_eq!(
        watched,
        [Some("100".into()), Some("103".into()), Some("200".into())]
    );
    assert!(
        asked
            .iter()
            .filter(|(_, q)| q.contains("watch=true"))
            .all(
                |(_, q)| q.contains("allowWatchBookmarks=true") && q.contains("timeoutSeconds=290")
            ),
        "{asked:#?}"
    );
}
