//! Rendering without a cluster: each Compose file of the corpus (`tests/corpus`) rendered and
//! compared with its golden manifests (`tests/golden`; `CAPSTAN_UPDATE_GOLDEN=1` writes them),
//! every golden validated offline by PyPI's `kubernetes-validate --strict` against Kubernetes
//! 1.28 and 1.37 (the oldest this renderer is for and the newest the validator ships), then
//! what the schema cannot check: selectors select their pods, probes run a command, names fit,
//! Services point at ports the containers have, every mount has its volume and every volume
//! its object. Then what a cluster cannot honour: refused, naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use capstan_compose::{Options as LoadOptions, load};
use capstan_deploy::{DeployRequest, FileContent};
use capstan_kube::{Input, Object, Options, Publish, Refusal, render};

fn dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).to_owned(),
            Into::into,
        )
        .join("tests")
}

/// The request `capstan deploy` would send for `file` of `under` (`corpus`, or the Compose
/// crate's corpus).
fn request(under: &Path, file: &str) -> DeployRequest {
    let loaded = load(&LoadOptions {
        files: vec![file.into()],
        working_dir: under.to_owned(),
        environment: BTreeMap::from([("FROM_CALLER".to_owned(), "caller".to_owned())]),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    DeployRequest::from_project(
        loaded.project,
        |_, _, obj| {
            Ok(obj
                .file
                .as_ref()
                .map(|p| FileContent::from_bytes(std::fs::read(p).unwrap())))
        },
        serde_json::json!({}),
    )
    .unwrap()
}

fn rendered(req: &DeployRequest, options: &Options) -> Result<Vec<Object>, Refusal> {
    let project = &req.project;
    // one image pinned by digest, and the hashes capstan keeps on pods, as a deploy has them
    let images: BTreeMap<String, String> = project
        .services
        .keys()
        .take(1)
        .filter_map(|s| {
            let image = project.services[s].image.clone().unwrap_or_default();
            (!image.contains('@'))
                .then(|| (s.clone(), format!("{image}@sha256:{}", "ab".repeat(32))))
        })
        .collect();
    let hashes: BTreeMap<String, String> = project
        .services
        .keys()
        .map(|s| (s.clone(), format!("{:016x}", s.len() * 7919)))
        .collect();
    render(
        &Input {
            project,
            files: &req.files,
            images: &images,
            release: Some(7),
            spec_hashes: &hashes,
            redact: false,
        },
        options,
    )
}

fn yaml(objects: &[Object]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&capstan_compose::to_yaml(&o.to_value()));
    }
    out
}

const CORPUS: &[(&str, Publish)] = &[
    ("shop.yaml", Publish::LoadBalancer),
    ("agent.yaml", Publish::NodePort),
    ("cache.yaml", Publish::LoadBalancer),
];

#[test]
fn each_corpus_file_renders_its_golden_manifests_and_they_validate_strictly() {
    let update = std::env::var_os("CAPSTAN_UPDATE_GOLDEN").is_some();
    for (file, publish) in CORPUS {
        let req = request(&dir().join("corpus"), file);
        let options = Options {
            namespace: "apps".into(),
            publish: *publish,
            ..Options::default()
        };
        let objects = rendered(&req, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        let text = yaml(&objects);
        let golden = dir().join("golden").join(file);
        if update {
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (CAPSTAN_UPDATE_GOLDEN=1 writes it)",
                golden.display()
            )
        });
        assert_eq!(
            text,
            want,
            "{file} renders otherwise than {} (CAPSTAN_UPDATE_GOLDEN=1 rewrites it; read the diff first)",
            golden.display()
        );
        for version in ["1.28.0", "1.37.0"] {
            capstan_testkit::kubernetes_validate_files(std::slice::from_ref(&golden), version);
        }
        holds_together(file, &objects);
    }
}

/// What the schema cannot see: the objects agree with each other.
fn holds_together(file: &str, objects: &[Object]) {
    let values: Vec<serde_json::Value> = objects.iter().map(Object::to_value).collect();
    let named: BTreeSet<(String, String)> = values
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut pods: Vec<(BTreeMap<String, String>, serde_json::Value)> = Vec::new();
    for v in &values {
        let kind = v["kind"].as_str().unwrap();
        let name = v["metadata"]["name"].as_str().unwrap();
        let id = format!("{file}: {kind}/{name}");
        assert!(name.len() <= 63, "{id}: name too long");
        assert_eq!(v["metadata"]["namespace"], "apps", "{id}");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"], "capstan",
            "{id}"
        );
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        let spec = &v["spec"];
        let template_labels: BTreeMap<String, String> =
            serde_json::from_value(spec["template"]["metadata"]["labels"].clone()).unwrap();
        let selector: BTreeMap<String, String> =
            serde_json::from_value(spec["selector"]["matchLabels"].clone()).unwrap();
        assert!(
            selector
                .iter()
                .all(|(k, v)| template_labels.get(k) == Some(v)),
            "{id}: its selector {selector:?} does not select its pods {template_labels:?}"
        );
        let pod = &spec["template"]["spec"];
        let volumes: BTreeSet<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for vol in pod["volumes"].as_array().into_iter().flatten() {
            for (field, kind, key) in [
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
                (
                    "persistentVolumeClaim",
                    "PersistentVolumeClaim",
                    "claimName",
                ),
            ] {
                if let Some(target) = vol[field][key].as_str() {
                    assert!(
                        named.contains(&(kind.to_owned(), target.to_owned())),
                        "{id}: volume {} names {kind} {target}, which is not rendered",
                        vol["name"]
                    );
                }
            }
        }
        for c in pod["containers"].as_array().unwrap() {
            assert!(c["name"].as_str().unwrap().len() <= 63, "{id}");
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                assert!(
                    volumes.contains(m["name"].as_str().unwrap()),
                    "{id}: mount {m} has no volume"
                );
            }
            for probe in ["readinessProbe", "livenessProbe"] {
                if c[probe].is_object() {
                    let cmd = c[probe]["exec"]["command"].as_array().unwrap();
                    assert!(
                        !cmd.is_empty() && !cmd[0].as_str().unwrap().is_empty(),
                        "{id}: {probe} runs nothing"
                    );
                }
            }
        }
        pods.push((template_labels, pod.clone()));
    }
    for v in values.iter().filter(|v| v["kind"] == "Service") {
        let id = format!("{file}: Service/{}", v["metadata"]["name"]);
        let selector: BTreeMap<String, String> =
            serde_json::from_value(v["spec"]["selector"].clone()).unwrap();
        let selected: Vec<&serde_json::Value> = pods
            .iter()
            .filter(|(labels, _)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(_, pod)| pod)
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{id} selects {} workloads",
            selected.len()
        );
        let container_ports: BTreeSet<(i64, String)> = selected[0]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["containerPort"].as_i64().unwrap(),
                    p["protocol"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for p in v["spec"]["ports"].as_array().into_iter().flatten() {
            let target = (
                p["targetPort"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap().to_owned(),
            );
            assert!(
                container_ports.contains(&target),
                "{id}: port {p} goes to no port of its pods {container_ports:?}"
            );
        }
    }
}

#[test]
fn a_changed_config_gets_a_new_name_and_only_its_consumers_change() {
    let mut req = request(&dir().join("corpus"), "shop.yaml");
    let before = rendered(&req, &Options::default()).unwrap();
    req.files.insert(
        "configs/site".into(),
        FileContent::Text("Listen 8080\n".into()),
    );
    let after = rendered(&req, &Options::default()).unwrap();
    let changed: Vec<String> = after
        .iter()
        .filter(|o| !before.contains(o))
        .map(Object::id)
        .collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(
        changed[0].starts_with("ConfigMap/shop-site-"),
        "{changed:?}"
    );
    assert_eq!(changed[1], "Deployment/shop-web", "{changed:?}");
    let old_name = before
        .iter()
        .map(Object::id)
        .find(|id| id.starts_with("ConfigMap/"))
        .unwrap();
    assert_ne!(old_name, changed[0], "a new name, not the old one changed");
}

#[test]
fn a_secret_shown_by_render_has_no_value() {
    let req = request(&dir().join("corpus"), "shop.yaml");
    let objects = render(
        &Input {
            project: &req.project,
            files: &req.files,
            images: &BTreeMap::new(),
            release: None,
            spec_hashes: &BTreeMap::new(),
            redact: true,
        },
        &Options::default(),
    )
    .unwrap();
    let text = yaml(&objects);
    assert!(!text.contains("not-a-real-password"), "{text}");
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "not-a-real-password\n",
    );
    assert!(!text.contains(&encoded), "{text}");
    assert!(text.contains("db_password: 20 bytes, not shown"), "{text}");
}

/// `services:` of a one-service app `t` with `body` (indented under the service).
fn one(body: &str) -> Result<Vec<Object>, Refusal> {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("compose.yaml"),
        format!("name: t\nservices:\n  s:\n    image: x:1\n{body}"),
    )
    .unwrap();
    let req = request(tmp.path(), "compose.yaml");
    rendered(&req, &Options::default())
}

#[test]
fn what_a_cluster_cannot_honour_is_refused_naming_the_key() {
    for (body, key, says) in [
        (
            "    network_mode: host\n",
            "services.s.network_mode",
            "own namespaces",
        ),
        ("    pid: host\n", "services.s.pid", "own namespaces"),
        (
            "    container_name: one\n",
            "services.s.container_name",
            "names",
        ),
        (
            "    volumes: [\"./here:/there\"]\n",
            "services.s.volumes[0]",
            "bind mount",
        ),
        (
            "    ports: [\"127.0.0.1:80:80\"]\n",
            "services.s.ports[0].host_ip",
            "take the address out",
        ),
        ("    user: www-data\n", "services.s.user", "user id"),
        (
            "    restart: \"no\"\n",
            "services.s.restart",
            "always restarted",
        ),
        (
            "    stop_signal: SIGINT\n",
            "services.s.stop_signal",
            "SIGTERM",
        ),
        (
            "    ulimits: {nofile: 1024}\n",
            "services.s.ulimits",
            "ulimits",
        ),
        (
            "    logging: {driver: syslog}\n",
            "services.s.logging",
            "kubelet",
        ),
        ("    cpu_shares: 512\n", "services.s.cpu_shares", "cgroups"),
        (
            "    pids_limit: 10\n",
            "services.s.pids_limit",
            "podPidsLimit",
        ),
        (
            "    extra_hosts: [\"h:host-gateway\"]\n",
            "services.s.extra_hosts",
            "host-gateway",
        ),
        (
            "    security_opt: [\"apparmor=x\"]\n",
            "services.s.security_opt[0]",
            "node's files",
        ),
        (
            "    deploy: {placement: {constraints: [\"node.role==worker\"]}}\n",
            "services.s.deploy.placement.constraints[0]",
            "node.labels",
        ),
        (
            "    healthcheck: {test: [\"CMD\", \"true\"], start_interval: 1s}\n",
            "services.s.healthcheck.start_interval",
            "one period",
        ),
    ] {
        let refused = one(body).expect_err(body);
        assert_eq!(refused.key, key, "{body}: {refused}");
        assert!(refused.why.contains(says), "{body}: {refused}");
    }
    // names: the Service is named after the Compose service
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("compose.yaml"),
        "name: t\nservices:\n  my_db:\n    image: x:1\n",
    )
    .unwrap();
    let refused = rendered(&request(tmp.path(), "compose.yaml"), &Options::default()).unwrap_err();
    assert_eq!(refused.key, "services.my_db");
    assert!(refused.why.contains("no DNS label"), "{refused}");
    // a named volume with more than one replica, and services on different networks
    let refused =
        one("    volumes: [\"d:/d\"]\n    deploy: {replicas: 2}\nvolumes:\n  d:\n").unwrap_err();
    assert_eq!(refused.key, "services.s.deploy.replicas", "{refused}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("compose.yaml"),
        "name: t\nservices:\n  a:\n    image: x:1\n    networks: [front]\n  b:\n    image: x:1\n    networks: [back]\nnetworks:\n  front:\n  back:\n",
    )
    .unwrap();
    let refused = rendered(&request(tmp.path(), "compose.yaml"), &Options::default()).unwrap_err();
    assert_eq!(refused.key, "services.b.networks", "{refused}");
    assert!(refused.why.contains("NetworkPolicy"), "{refused}");
}

#[test]
fn the_compose_corpus_files_are_refused_for_what_no_cluster_runs() {
    // the committed Compose corpus is written for one Docker host: bind mounts of the
    // project's files, ports on 127.0.0.1, network aliases; each is refused, naming the key
    let compose_corpus = dir().join("../../compose/tests/corpus");
    for (file, key) in [
        (
            "valid/compat.yaml",
            "services.capped.networks.fixed.ipv4_address",
        ),
        ("valid/full.yaml", "services.db.networks"),
    ] {
        let req = request(&compose_corpus, file);
        let refused = rendered(&req, &Options::default()).unwrap_err();
        assert_eq!(refused.key, key, "{file}: {refused}");
    }
}
