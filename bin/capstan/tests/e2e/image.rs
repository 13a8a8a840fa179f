//! capstan's own container image, made by `scripts/image` from the binary under test and run on
//! the run's engine the way docs/install.md says: it serves its API, journals the engine, reads
//! a container's json-file log through the mounted log directory and its metrics through the
//! mounted cgroup hierarchy, and names the commit it was built from.

use std::time::Duration;

use capstan_testkit::{Daemon, ensure_busybox, eventually, unique};

use crate::bin;
use crate::logs::{run_container, wait_for};

/// The commit of the checkout the binary was built from, as `git` says.
fn checkout_commit() -> String {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    capstan_testkit::git(
        std::path::Path::new(&dir),
        &["rev-parse", "--short=12", "HEAD"],
    )
    .trim()
    .to_owned()
}

/// Builds capstan's image from the binary under test with `scripts/image`: its tag.
async fn build_image(engine: &capstan_engine::Engine) -> String {
    let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../../scripts/image");
    let tag = format!("{}:1", unique("capstan-image"));
    let out = tokio::process::Command::new(&script)
        .args(["--binary"])
        .arg(bin())
        .args(["--tag", &tag])
        .env("DOCKER_HOST", engine.host())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tag);
    tag
}

#[tokio::test]
async fn capstans_image_serves_journals_and_collects_logs_and_metrics() {
    let engine = capstan_testkit::engine().await;
    ensure_busybox(&engine).await;
    let tag = build_image(&engine).await;

    // `capstan --version` names the commit; so do the image's label and the health endpoint
    let commit = checkout_commit();
    let version = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert_eq!(
        version,
        format!("capstan {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
    let image = engine.inspect_image_json(&tag).await.unwrap().unwrap();
    let labels = &image["Config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.revision"], commit,
        "{labels}"
    );

    let name = unique("from-the-image");
    let daemon = Daemon::in_container(
        bin(),
        engine.host(),
        &tag,
        &format!(
            "[logs]\ncontainers = [\"{name}\"]\n[metrics]\nsource = \"cgroups\"\ninterval = \"1s\"\n"
        ),
    )
    .await;
    let health = daemon.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    assert!(health.engine.reachable, "{health:?}");
    assert_eq!(health.version, version.trim_start_matches("capstan "));

    // the journal follows the engine through the mounted socket; the log and the metrics come
    // through the mounted directories
    let id = run_container(
        &engine,
        &name,
        "echo written-in-a-container-capstans-image-reads; sleep 60",
    )
    .await;
    wait_for(
        &daemon,
        "written-in-a-container-capstans-image-reads",
        1,
        Duration::from_secs(30),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the container's start in the journal",
        || {
            let daemon = &daemon;
            let query = format!("type=container&actor={id}");
            async move {
                let events = daemon.all_events(&query).await;
                events.iter().any(|e| e.action == "start").then_some(())
            }
        },
    )
    .await;
    let stats = eventually(
        Duration::from_secs(30),
        "the container's cgroup metrics",
        || {
            let daemon = &daemon;
            let name = name.clone();
            async move {
                let list: Vec<capstan_model::ContainerStats> =
                    daemon.get("/api/v1/metrics/containers").await;
                list.into_iter()
                    .find(|s| s.name == name && s.memory_usage_bytes.is_some_and(|m| m > 0))
            }
        },
    )
    .await;
    assert!(stats.threads.is_some_and(|t| t >= 1), "{stats:?}");

    engine.remove_container(&id, true).await.unwrap();
    drop(daemon);
    // the other image test built the same image (same binary, same content): only this
    // tag goes, not the image under it
    let _ = engine.remove_image(&tag, false).await;
}

/// The node agent's container exactly as render-self's DaemonSet specifies it (its args, env,
/// security context, memory limit and mounts, read from the rendered object), run from capstan's
/// image on the run's engine: with a read-only root filesystem, every capability dropped and no
/// privilege escalation, it collects kubelet-format pod logs (rotated and gzipped, before and
/// after it starts) from the mounted directory, and the CLI run inside it (as `kubectl exec`
/// would) finds each line once with the pod's namespace, name and container and the node's
/// name. No API server here: the agent's `pod_labels_from` line is left out of its config.
#[tokio::test]
async fn the_node_agent_runs_from_the_image_as_render_self_specifies_it() {
    let engine = capstan_testkit::engine().await;
    let tag = build_image(&engine).await;
    let objects = capstan_kube::render_self(&capstan_kube::SelfOptions {
        namespace: "apps".into(),
        image: tag.clone(),
        join: None,
    });
    let node = NodeDirs::new(&objects);
    let uid = "4d1f7a52-0000-4000-8000-000000000001";
    let mut log =
        capstan_testkit::KubeletLog::new(&node.pods, ("apps", "web-1", uid), "web", 16 * 1024, 5);
    for i in 0..500 {
        log.line("stdout", &format!("agent-image-line {i}"));
    }

    let name = unique("capstan-node");
    let args = run_args(&objects, &tag, &name, &node, &[]);
    let host = engine.host().to_owned();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    capstan_testkit::docker(&host, &args);
    let gone = RemoveOnDrop(host.clone(), name.clone());

    // the CLI inside the agent's container, as `kubectl exec ds/capstan-node -- capstan logs`
    let search = || {
        capstan_testkit::docker(
            &host,
            &[
                "exec",
                &name,
                "capstan",
                "logs",
                "--all",
                "-o",
                "json",
                "\"agent-image-line\"",
            ],
        )
    };
    let wait_for = |n: usize| {
        eventually(
            Duration::from_secs(30),
            "the agent's lines",
            move || async move {
                let out = search();
                let lines = out.lines().count();
                assert!(lines <= n, "more lines than written: {lines}");
                (lines == n).then_some(out)
            },
        )
    };
    wait_for(500).await;
    for i in 500..1500 {
        log.line("stdout", &format!("agent-image-line {i}"));
    }
    assert!(
        log.rotations() >= 2,
        "the test meant to rotate: {}",
        log.rotations()
    );
    let out = wait_for(1500).await;
    crate::logs::assert_each_once(&out, 1500, |l| {
        assert_eq!(l["namespace"], "apps", "{l}");
        assert_eq!(l["pod"], "web-1", "{l}");
        assert_eq!(l["container"], "web", "{l}");
        assert_eq!(l["host"], "node-7", "{l}");
    });
    let health =
        capstan_testkit::docker(&host, &["exec", &name, "capstan", "health", "-o", "json"]);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    // and the table, as an operator reads it: healthy, no engine by design (exit 0)
    let table = capstan_testkit::docker(&host, &["exec", &name, "capstan", "health"]);
    assert!(table.contains("engine    none: "), "{table}");
    drop(gone);
    // the other image test built the same image (same binary, same content): only this
    // tag goes, not the image under it
    let _ = engine.remove_image(&tag, false).await;
}

/// The directories of a node the agent's volumes stand for (its pod logs, its data dir, its
/// config from the rendered ConfigMap, its tmp), made by the test. No API server here: the
/// config's `pod_labels_from` line is left out.
struct NodeDirs {
    _dir: tempfile::TempDir,
    pods: std::path::PathBuf,
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl NodeDirs {
    fn new(objects: &[serde_json::Value]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let [pods, data, config, tmp] = ["pods", "data", "config", "tmp"].map(|d| {
            let p = dir.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            p
        });
        let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        for (file, text) in config_map["data"].as_object().unwrap() {
            let text: Vec<&str> = text
                .as_str()
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("pod_labels_from"))
                .collect();
            let text = text.join("\n") + "\n";
            std::fs::write(config.join(file), text).unwrap();
        }
        Self {
            _dir: dir,
            pods,
            data,
            config,
            tmp,
        }
    }
}

/// `docker run` arguments for the DaemonSet's container exactly as rendered (its args, env
/// with the node named node-7 and each Secret's key from `secrets`, security context, memory
/// limit and mounts onto `node`'s directories), named `name`, from image `tag`.
fn run_args(
    objects: &[serde_json::Value],
    tag: &str,
    name: &str,
    node: &NodeDirs,
    secrets: &[(&str, &str)],
) -> Vec<String> {
    let set = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], tag);
    let mut args: Vec<String> = ["run", "-d", "--name", name].map(str::to_owned).to_vec();
    for e in container["env"].as_array().unwrap() {
        let value = match (e["value"].as_str(), &e["valueFrom"]) {
            (Some(v), _) => v.to_owned(),
            (None, from) if from.get("secretKeyRef").is_some() => {
                let key = &from["secretKeyRef"];
                let (_, v) = secrets
                    .iter()
                    .find(|(s, _)| key["name"] == *s && key["key"] == "token")
                    .unwrap_or_else(|| panic!("no secret for {e}"));
                (*v).to_owned()
            }
            (None, from) => {
                assert_eq!(from["fieldRef"]["fieldPath"], "spec.nodeName", "{e}");
                "node-7".to_owned()
            }
        };
        args.extend([
            "-e".into(),
            format!("{}={value}", e["name"].as_str().unwrap()),
        ]);
    }
    let security = &container["securityContext"];
    args.extend(["--user".into(), security["runAsUser"].to_string()]);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    args.push("--read-only".into());
    assert_eq!(security["allowPrivilegeEscalation"], false);
    args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    args.extend(["--cap-drop".into(), "ALL".into()]);
    let memory = container["resources"]["limits"]["memory"].as_str().unwrap();
    args.extend([
        "--memory".into(),
        memory.trim_end_matches("Mi").to_owned() + "m",
    ]);
    for m in container["volumeMounts"].as_array().unwrap() {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        // each of the pod's volumes, a directory of the test's
        let source = if volume["hostPath"]["path"] == "/var/log/pods" {
            &node.pods
        } else if volume.get("hostPath").is_some() {
            &node.data
        } else if volume.get("configMap").is_some() {
            &node.config
        } else {
            assert!(volume.get("emptyDir").is_some(), "{volume}");
            &node.tmp
        };
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        args.extend([
            "-v".into(),
            format!(
                "{}:{}{ro}",
                source.display(),
                m["mountPath"].as_str().unwrap()
            ),
        ]);
    }
    args.push(tag.to_owned());
    args.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    args
}

/// The node agent as render-self specifies it with `--join`: a hub on this machine's loopback
/// (the container shares the host's network here, as a pod reaches the hub through the
/// cluster's), a join token for two hosts in the Secret the DaemonSet names. The agent joins
/// as its node (node-7), and its pods' lines are searchable on the hub once with `host`.
#[tokio::test]
async fn the_node_agent_joins_the_hub_render_self_names_and_ships_its_pods_lines() {
    let engine = capstan_testkit::engine().await;
    let tag = build_image(&engine).await;
    let port = capstan_testkit::free_port();
    let hub = capstan_testkit::Daemon::start_with(
        crate::bin(),
        engine.host(),
        &format!("[logs]\ncollect = false\n[fleet]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .await;
    let (code, token, err) = hub
        .cli(&[
            "hosts",
            "join-token",
            "--uses",
            "2",
            "--labels",
            "cluster=lab",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("for 2 hosts"), "{err}");
    let objects = capstan_kube::render_self(&capstan_kube::SelfOptions {
        namespace: "apps".into(),
        image: tag.clone(),
        join: Some(format!("https://127.0.0.1:{port}")),
    });
    let node = NodeDirs::new(&objects);
    let mut log = capstan_testkit::KubeletLog::new(
        &node.pods,
        ("apps", "api-1", "4d1f7a52-0000-4000-8000-000000000002"),
        "api",
        16 * 1024,
        5,
    );
    for i in 0..300 {
        log.line("stdout", &format!("joined-agent-line {i}"));
    }
    let name = unique("capstan-node");
    let mut args = run_args(
        &objects,
        &tag,
        &name,
        &node,
        &[(capstan_kube::JOIN_SECRET, token.trim())],
    );
    args.insert(2, "--network=host".to_owned());
    let host = engine.host().to_owned();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    capstan_testkit::docker(&host, &args);
    let _gone = RemoveOnDrop(host.clone(), name.clone());

    let listed = eventually(Duration::from_mins(1), "node-7 joined", || async {
        let hosts: Vec<capstan_model::FleetHost> = hub.get("/api/v1/hosts").await;
        hosts
            .into_iter()
            .find(|h| h.name == "node-7" && h.state == "connected" && !h.engine.is_empty())
    })
    .await;
    assert_eq!(listed.labels["cluster"], "lab");
    assert_eq!(listed.engine, "none");
    crate::logs::wait_for(
        &hub,
        "host:node-7 joined-agent-line",
        300,
        Duration::from_mins(1),
    )
    .await;
    let (code, out, err) = hub
        .cli(&[
            "logs",
            "--all",
            "-o",
            "json",
            "host:node-7 joined-agent-line",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    crate::logs::assert_each_once(&out, 300, |l| {
        assert_eq!(l["pod"], "api-1", "{l}");
        assert_eq!(l["namespace"], "apps", "{l}");
    });
    let _ = engine.remove_image(&tag, false).await;
}

/// Removes a container at the end of the test, also when it fails (printing its log then).
struct RemoveOnDrop(String, String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the container's log:\n{}",
                capstan_testkit::docker(&self.0, &["logs", &self.1])
            );
        }
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.1])
            .env("DOCKER_HOST", &self.0)
            .output();
    }
}
