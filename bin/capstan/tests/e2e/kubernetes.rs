//! A Kubernetes target through the real CLI and daemon. Its API server is a wire-format
//! server, not a cluster (none can run on this machine): it answers as the API documents it
//! and records what it is asked. What this proves: the target is probed through its
//! kubeconfig context and listed with the API server's version; `capstan render` prints the
//! objects the cluster would get without asking the cluster anything (no Secret value shown);
//! a key the cluster cannot honour is refused with file:line and exit 2; bad target settings
//! stop `capstan serve` with the entry and key; the scenario of `kubernetes_scenario` (deploy,
//! rolling update, a crash-looping release rolled back, rollback from the ledger, down) runs on
//! the server's stand-ins for the controllers and the kubelet, and every request it made was
//! an apply as capstan, strictly valid, and a verb the RBAC capstan asks for grants; an
//! unreachable API server is exit 3, a forbidden verb exit 1 naming it.

use std::fmt::Write as _;

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
    // what the target is asked besides its pods (which the image journal follows)
    let asked_of = |api: &KubeApi| {
        api.seen()
            .iter()
            .filter(|s| !s.path.ends_with("/pods"))
            .count()
    };
    let asked = asked_of(&api);

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
    assert_eq!(asked_of(&api), asked, "rendering asked the cluster nothing");

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
    // a deploy of it: refused the same way before anything is sent
    let (code, _, err) = daemon
        .cli_in(app.path(), &["deploy", "--target", "k8s"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("compose.yaml:5"), "{err}");
    assert!(err.contains("services.web.pid"), "{err}");
    // no such target, and a target of another kind
    let (code, _, err) = daemon
        .cli_in(app.path(), &["render", "--target", "nowhere"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no target named \"nowhere\""), "{err}");
    let (code, _, err) = daemon
        .cli_in(app.path(), &["render", "--target", "local"], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(asked_of(&api), asked, "nothing was sent to the cluster");
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
        (
            "[logs]\npod_labels_from = \"s\"\n\n[[targets]]\nname = \"s\"\nkind = \"swarm\"\ndocker_host = \"tcp://127.0.0.1:1\"\n",
            "logs.pod_labels_from: no Kubernetes target named \"s\"",
        ),
    ] {
        let err = serve_refused(bin(), config).await;
        assert!(err.contains(says), "{config}: {err}");
    }
}

/// A pod of the wire-format server's namespace `apps`, one container `web`.
fn pod(name: &str, uid: &str, state: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "uid": uid, "resourceVersion": "90",
            "creationTimestamp": "2026-12-05T09:59:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "reg.example.com/web:1"}]},
        "status": {"phase": "Running", "containerStatuses": [state]},
    })
}

/// The pods' list the server answers: web-1 runs the image by digest, web-2 cannot pull.
fn pod_list(digest: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "100"},
        "items": [
            pod("web-1", "u1", &serde_json::json!({"name": "web", "image": "reg.example.com/web:1",
                "imageID": digest, "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-12-05T10:00:00Z"}}})),
            pod("web-2", "u2", &serde_json::json!({"name": "web", "image": "reg.example.com/web:1",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}}})),
        ],
    })
    .to_string()
}

#[tokio::test]
async fn a_kubernetes_targets_pods_are_journaled_by_digest_once_across_a_restart() {
    let engine = capstan_testkit::engine().await;
    let api = KubeApi::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[logs]\ncollect = false\n\n[[targets]]\nname = \"k8s\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"lab\"\n",
        api.kubeconfig(dir.path()).display()
    );
    let digest = format!("reg.example.com/web@sha256:{}", "c".repeat(64));
    let pods = "/api/v1/namespaces/apps/pods";
    api.reply(pods, false, 200, pod_list(&digest));
    let mut daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let journaled = capstan_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the pods journaled",
        || async {
            let events = daemon.all_events("type=pod").await;
            (events.len() >= 2).then_some(events)
        },
    )
    .await;
    assert_eq!(journaled.len(), 2, "{journaled:#?}");
    let running = journaled
        .iter()
        .find(|e| e.action == "image_running")
        .unwrap();
    assert_eq!(running.actor, "apps/web-1/web");
    assert_eq!(running.image_id.as_deref(), Some(digest.as_str()));
    assert_eq!(running.attributes["target"], "k8s");
    assert_eq!(running.attributes["node"], "node-1");
    assert_eq!(running.attributes["image"], "reg.example.com/web:1");
    assert_eq!(
        running.time.to_rfc3339(),
        "2026-12-05T10:00:00+00:00",
        "the container's start"
    );
    let failed = journaled
        .iter()
        .find(|e| e.action == "image_pull_failed")
        .unwrap();
    assert_eq!(failed.actor, "apps/web-2/web");
    assert_eq!(failed.attributes["reason"], "ErrImagePull");
    assert_eq!(failed.attributes["message"], "401 Unauthorized");
    assert_eq!(failed.scope.as_deref(), Some("kubernetes"));

    // capstan restarts and lists the same pods again: nothing is journaled twice
    let lists = |api: &KubeApi| {
        api.seen()
            .iter()
            .filter(|s| s.path == pods && !s.query.contains("watch=true"))
            .count()
    };
    let before = lists(&api);
    api.reply(pods, false, 200, pod_list(&digest));
    daemon.stop().await;
    daemon.restart().await;
    capstan_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the pods listed again",
        || async { (lists(&api) > before).then_some(()) },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        daemon.all_events("type=pod").await.len(),
        2,
        "journaled once"
    );
}

/// The request's verb as RBAC names it, and its group and resource (`pods/log`).
fn verb_of(seen: &capstan_testkit::KubeRequest) -> (String, String, String) {
    let parts: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces").unwrap();
    let group = if parts[0] == "apis" { parts[1] } else { "" };
    let mut resource = parts[at + 2].to_owned();
    if let Some(sub) = parts.get(at + 4) {
        resource = format!("{resource}/{sub}");
    }
    let named = parts.get(at + 3).is_some();
    let verb = match (seen.method.as_str(), named) {
        ("GET", false) if seen.query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (m, _) => panic!("{m} {}: capstan sends no such request", seen.path),
    };
    (verb.to_owned(), group.to_owned(), resource)
}

#[tokio::test]
async fn the_scenario_on_the_wire_format_server() {
    let engine = capstan_testkit::engine().await;
    let api = KubeApi::cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let place = crate::kubernetes_scenario::Place {
        kubeconfig: api.kubeconfig(dir.path()),
        context: Some("lab".into()),
        namespace: "apps".into(),
        registry: capstan_testkit::registry(),
    };
    let app = crate::kubernetes_scenario::run(bin(), engine.host(), &place).await;

    // every write was a server-side apply as capstan, forced over other managers' fields
    let applied = api.applied();
    assert!(applied.len() >= 10, "{applied:#?}");
    for a in &applied {
        assert_eq!(a.content_type, "application/apply-patch+yaml", "{}", a.path);
        assert!(
            a.query.contains("fieldManager=capstan"),
            "{}: {}",
            a.path,
            a.query
        );
        assert!(a.query.contains("force=true"), "{}: {}", a.path, a.query);
    }
    // ... of strictly valid objects
    let bodies: Vec<serde_json::Value> = applied.iter().map(|a| a.body.clone()).collect();
    capstan_testkit::kubernetes_validate(&bodies, &["1.28.0"]);
    // ... and every request one the RBAC capstan documents grants
    for seen in api.seen().iter().filter(|s| s.path != "/version") {
        let (verb, group, resource) = verb_of(seen);
        let granted = capstan_kube::RBAC
            .iter()
            .any(|(g, r, verbs)| *g == group && *r == resource && verbs.contains(&verb.as_str()));
        assert!(
            granted,
            "{verb} {group}/{resource} ({}) is not in capstan_kube::RBAC",
            seen.path
        );
    }
    // nothing of the app is left but what other apps have
    assert!(
        api.objects(
            "/apis/apps/v1/namespaces/apps/deployments",
            &format!("io.capstan.app={app}")
        )
        .is_empty()
    );
    assert!(
        api.objects(
            "/api/v1/namespaces/apps/configmaps",
            &format!("io.capstan.app={app}")
        )
        .is_empty()
    );
}

const SMALL: &str = "name: NAME
services:
  web:
    image: IMAGE
    command: [\"sh\", \"-c\", \"exec sleep 1000000\"]
    deploy:
      update_config:
        monitor: 1s
";

#[tokio::test]
async fn a_cluster_that_cannot_be_reached_is_exit_3_and_a_forbidden_verb_exit_1_naming_it() {
    let engine = capstan_testkit::engine().await;
    let image = format!("{}/kbad", capstan_testkit::registry());
    capstan_testkit::push_versions(&engine, &image, &["1"]).await;
    let compose = SMALL.replace("IMAGE", &format!("{image}:1"));
    let dir = tempfile::tempdir().unwrap();
    // no API server at that address; one whose RBAC grants nothing; one where another field
    // manager (kubectl) wrote the app's Deployment
    for d in ["gone", "forbid", "taken"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let gone = capstan_testkit::kubeconfig(
        &dir.path().join("gone"),
        &format!("http://127.0.0.1:{}", capstan_testkit::free_port()),
    );
    let forbidding = KubeApi::start(true).await;
    let taken = KubeApi::cluster().await;
    let forbid = forbidding.kubeconfig(&dir.path().join("forbid"));
    let other = taken.kubeconfig(&dir.path().join("taken"));
    let mut config = String::from("[logs]\ncollect = false\n");
    for (name, path) in [("gone", &gone), ("forbid", &forbid), ("taken", &other)] {
        let _ = write!(
            config,
            "\n[[targets]]\nname = \"{name}\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"lab\"\n",
            path.display()
        );
    }
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let app = tempfile::tempdir().unwrap();
    let deploy = |target: &'static str, name: &'static str| {
        let compose = compose.replace("NAME", name);
        let dir = app.path().to_owned();
        let daemon = &daemon;
        async move {
            std::fs::write(dir.join("compose.yaml"), compose).unwrap();
            daemon
                .cli_in(&dir, &["deploy", "--target", target], &[])
                .await
        }
    };
    let (code, out, err) = deploy("gone", "kgone").await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("cannot reach the API server"), "{err}");
    let (code, out, err) = deploy("forbid", "kforbid").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot list resource \"deployments\" in API group \"apps\""),
        "{err}"
    );
    assert!(err.contains("capstan render-self"), "{err}");

    taken.seed(
        "/apis/apps/v1/namespaces/apps/deployments/ktaken-web",
        "kubectl",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ktaken-web", "namespace": "apps", "labels": {"made-by": "hand"}},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"io.capstan.app": "ktaken", "io.capstan.service": "web"}},
                     "template": {"metadata": {"labels": {"io.capstan.app": "ktaken", "io.capstan.service": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}}),
    );
    let (code, out, err) = deploy("taken", "ktaken").await;
    assert_eq!(code, 0, "{out}{err}");
    let now = taken.objects(
        "/apis/apps/v1/namespaces/apps/deployments",
        "io.capstan.app=ktaken",
    );
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["metadata"]["managedFields"][0]["manager"], "capstan");
    assert_eq!(now[0]["spec"]["replicas"], 1);
}

#[tokio::test]
async fn render_self_prints_the_node_agent_and_the_deployers_role_strictly_valid() {
    let engine = capstan_testkit::engine().await;
    let api = KubeApi::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[targets]]\nname = \"k8s\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\ncontext = \"lab\"\n",
        api.kubeconfig(dir.path()).display()
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let image = "registry.example.com/capstan:0.1.0";
    let (code, out, err) = daemon
        .cli(&[
            "render-self",
            "--target",
            "k8s",
            "--image",
            image,
            "-o",
            "json",
        ])
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
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet"
        ]
    );
    // strictly valid, for the oldest and the newest Kubernetes the validator knows
    capstan_testkit::kubernetes_validate(&objects, &["1.28.0", "1.37.0"]);
    // the deployer's Role is exactly what capstan asks of a namespace; the agent reads pods
    let role = &objects[1];
    assert_eq!(role["metadata"]["namespace"], "apps");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), capstan_kube::RBAC.len());
    for ((group, resource, verbs), rule) in capstan_kube::RBAC.iter().zip(rules) {
        assert_eq!(rule["apiGroups"][0], *group);
        assert_eq!(rule["resources"][0], *resource);
        assert_eq!(rule["verbs"], serde_json::json!(verbs));
    }
    assert_eq!(
        objects[4]["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    );
    let pod = &objects[7]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "capstan-node");
    assert_eq!(pod["containers"][0]["image"], image);
    let logs = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/var/log/pods")
        .unwrap();
    assert_eq!(logs["readOnly"], true);
    // the agent's capstan.toml is one capstan serves with, without an engine
    let toml = objects[6]["data"]["capstan.toml"].as_str().unwrap();
    assert_eq!(toml, capstan_kube::agent_config());
    let pods = tempfile::tempdir().unwrap();
    let agent = Daemon::start_with(
        bin(),
        "unix:///nonexistent/docker.sock",
        &toml.replace("/var/log/pods", &pods.path().display().to_string()),
    )
    .await;
    assert_eq!(agent.health().await.status, "ok");
    // as YAML, to pipe into kubectl
    let (code, out, _) = daemon
        .cli(&["render-self", "--target", "k8s", "--image", image])
        .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("kind: DaemonSet") && out.contains("kubectl apply"),
        "{out}"
    );
    // joined to a fleet's hub: each node's agent joins with the Secret's token, strictly valid
    let (code, out, err) = daemon
        .cli(&[
            "render-self",
            "--target",
            "k8s",
            "--image",
            image,
            "--join",
            "https://hub.example.net:7879",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let joined: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    capstan_testkit::kubernetes_validate(&joined, &["1.28.0", "1.37.0"]);
    let container = &joined[7]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!([
            "agent",
            "--config",
            "/etc/capstan/capstan.toml",
            "--data",
            "/var/lib/capstan",
            "--join",
            "https://hub.example.net:7879"
        ])
    );
    let token = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CAPSTAN_JOIN_TOKEN")
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": capstan_kube::JOIN_SECRET, "key": "token"})
    );
    // bad input
    let (code, _, err) = daemon
        .cli(&[
            "render-self",
            "--target",
            "k8s",
            "--image",
            image,
            "--join",
            "http://hub:7879",
        ])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("https://HOST:PORT"), "{err}");
    for (args, says) in [
        (
            ["render-self", "--target", "nowhere", "--image", image],
            "no target named",
        ),
        (
            ["render-self", "--target", "k8s", "--image", "Not An Image"],
            "image",
        ),
        (["render-self", "--target", "k8s", "--image", ""], "image"),
    ] {
        let (code, _, err) = daemon.cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
