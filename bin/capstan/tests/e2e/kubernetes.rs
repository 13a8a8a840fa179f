//! A Kubernetes target through the real CLI and daemon. Its API server is a wire-format
//! server, not a cluster (none can run on this machine): it answers as the API documents it
//! and records what it is asked. What this proves: the target is probed through its
//! kubeconfig context and listed with the API server's version; `capstan render` prints the
//! objects the cluster would get without asking the cluster anything (no Secret value shown);
//! a key the cluster cannot honour is refused with file:line and exit 2; bad target settings
//! stop `capstan serve` with the entry and key.

use capstan_model::{TargetKind, TargetStatus};
use capstan_testkit::{Daemon, KubeApi, serve_refused};

use crate::bin;

const COMPOSE: &str = "name: shop
services:
  web:
    image: registry.example.com/shop/web:2.1
    ports: [\"8080:80\"]
    secrets: [token]
    healthcheck:
      test: [\"CMD\", \"true\"]
      interval: 2s
  db:
    image: registry.example.com/shop/db:16
    volumes: [\"pgdata:/var/lib/postgresql/data\"]
secrets:
  token:
    file: ./token.txt
volumes:
  pgdata:
";

#[tokio::test]
async fn a_kubernetes_target_is_listed_rendered_for_and_refuses_what_it_cannot_run() {
    let engine = capstan_testkit::engine().await;
    let api = KubeApi::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let config = format!(
        "[[targets]]\nname = \"k8s\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"lab\"\npublish = \"nodeport\"\n",
        kubeconfig.display()
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;

    let (code, out, err) = daemon.cli(&["targets", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let targets: Vec<TargetStatus> = serde_json::from_str(&out).unwrap();
    let k8s = &targets[1];
    assert_eq!(k8s.kind, TargetKind::Kubernetes);
    assert!(k8s.healthy, "{k8s:?}");
    assert_eq!(k8s.engine_versions, ["v1.28.3"]);
    assert!(k8s.endpoint.contains("namespace apps"), "{}", k8s.endpoint);
    let (code, out, _) = daemon.cli(&["targets"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("kubernetes") && out.contains("v1.28.3"),
        "{out}"
    );
    let asked = api.seen().len();

    // render: the objects, in the context's namespace, the Secret without its value
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("compose.yaml"), COMPOSE).unwrap();
    std::fs::write(app.path().join("token.txt"), "s3cr3t-t0ken\n").unwrap();
    let (code, out, err) = daemon
        .cli_in(app.path(), &["render", "--target", "k8s"], &[])
        .await;
    assert_eq!(code, 0, "{err}");
    for want in [
        "kind: Deployment",
        "kind: StatefulSet",
        "kind: PersistentVolumeClaim",
        "name: web-public",
        "type: NodePort",
        "namespace: apps",
        "token: 13 bytes, not shown",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    assert!(!out.contains("s3cr3t"), "{out}");
    let (code, out, err) = daemon
        .cli_in(
            app.path(),
            &["render", "--target", "k8s", "-o", "json"],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let objects: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "PersistentVolumeClaim",
            "StatefulSet",
            "Service",
            "Deployment",
            "Service",
            "Service"
        ]
    );
    assert_eq!(
        api.seen().len(),
        asked,
        "rendering asked the cluster nothing"
    );

    // what the cluster cannot honour: refused with where it is written, exit 2
    std::fs::write(
        app.path().join("compose.yaml"),
        COMPOSE.replace("    ports:", "    pid: host\n    ports:"),
    )
    .unwrap();
    let (code, _, err) = daemon
        .cli_in(app.path(), &["render", "--target", "k8s"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("compose.yaml:5"), "{err}");
    assert!(err.contains("services.web.pid"), "{err}");
    assert!(err.contains("own namespaces"), "{err}");
    // no such target, a target of another kind, and a deploy (which a Kubernetes target does
    // not take yet: it says so and what to do instead)
    let (code, _, err) = daemon
        .cli_in(app.path(), &["render", "--target", "nowhere"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no target named \"nowhere\""), "{err}");
    let (code, _, err) = daemon
        .cli_in(app.path(), &["render", "--target", "local"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    std::fs::write(app.path().join("compose.yaml"), COMPOSE).unwrap();
    let (code, _, err) = daemon
        .cli_in(app.path(), &["deploy", "--target", "k8s"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("capstan render"), "{err}");
    assert_eq!(api.seen().len(), asked, "nothing was sent to the cluster");
}

#[tokio::test]
async fn bad_kubernetes_target_settings_stop_serve_naming_the_key() {
    for (config, says) in [
        (
            "[[targets]]\nname = \"k\"\nkind = \"kubernetes\"\nnamespace = \"Apps\"\n",
            "targets[0].namespace",
        ),
        (
            "[[targets]]\nname = \"k\"\nkind = \"kubernetes\"\ndocker_host = \"tcp://a:1\"\n",
            "targets[0].docker_host",
        ),
        (
            "[[targets]]\nname = \"k\"\nkind = \"kubernetes\"\npublish = \"ingress\"\n",
            "targets[0].publish",
        ),
        (
            "[[targets]]\nname = \"s\"\nkind = \"swarm\"\n",
            "targets[0].docker_host",
        ),
    ] {
        let err = serve_refused(bin(), config).await;
        assert!(err.contains(says), "{config}: {err}");
    }
}
