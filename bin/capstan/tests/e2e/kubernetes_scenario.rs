//! The Kubernetes scenario, one code for two places: the suite runs it on the wire-format
//! server (`kubernetes::the_scenario_on_the_wire_format_server`: the API's documented wire
//! format, with stand-ins for the controllers and the kubelet; not a cluster), and
//! `scripts/test-kubernetes KUBECONFIG REGISTRY` runs it on a real cluster (the `cluster` test
//! target, which the suite never builds). Through the real CLI and daemon: an app of a
//! Deployment (two replicas, a ConfigMap, a readiness probe) and a StatefulSet (a claim) is
//! deployed, updated, given a release that crash-loops (rolled back by capstan, exit 1, the
//! pod's reason and last log lines) and one that never becomes ready (the cluster marks it
//! stalled after the target's `progress_deadline`; rolled back), rolled back to release 1, its
//! pods' digests journaled and listed (`images --target`), its image watched for updates,
//! and taken down (its claim kept, then removed with `--volumes`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_model::{AppReplica, Event, Release};
use capstan_testkit::{Daemon, eventually};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// Where the scenario runs.
pub struct Place {
    pub kubeconfig: PathBuf,
    /// The kubeconfig's context (none: its current one).
    pub context: Option<String>,
    pub namespace: String,
    /// Where its images are pushed; the cluster's nodes pull from it.
    pub registry: String,
}

fn compose(app: &str, image: &str, web: &str, script: &str) -> String {
    with_check(app, image, web, script, "true")
}

fn with_check(app: &str, image: &str, web: &str, script: &str, check: &str) -> String {
    format!(
        "name: {app}
services:
  web:
    image: {image}:{web}
    command: [\"sh\", \"-c\", \"{script}\"]
    configs:
      - source: motd
        target: /etc/motd
    labels:
      io.capstan.update: major
    healthcheck:
      test: [\"CMD\", \"{check}\"]
      interval: 1s
    deploy:
      replicas: 2
      update_config:
        order: start-first
  db:
    image: {image}:2
    command: [\"sh\", \"-c\", \"echo db up; exec sleep 1000000\"]
    volumes: [\"data:/data\"]
    deploy:
      update_config:
        monitor: 1s
configs:
  motd:
    file: ./motd.txt
volumes:
  data: {{}}
"
    )
}

pub async fn deploy(daemon: &Daemon, dir: &Path, text: &str, motd: &str) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), text).unwrap();
    std::fs::write(dir.join("motd.txt"), motd).unwrap();
    let (code, out, err) = daemon
        .cli_in(dir, &["deploy", "--target", "k8s"], &[])
        .await;
    (code, format!("{out}{err}"))
}

async fn replicas(daemon: &Daemon, app: &str) -> Vec<AppReplica> {
    let (code, out, err) = daemon.cli(&["ps", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The digest every replica of `service` runs (they all run one).
async fn digest_of(daemon: &Daemon, app: &str, service: &str) -> String {
    let all = replicas(daemon, app).await;
    let of: Vec<&AppReplica> = all.iter().filter(|r| r.service == service).collect();
    assert!(!of.is_empty(), "no replica of {service}: {all:#?}");
    assert!(
        of.iter()
            .all(|r| r.image == of[0].image && r.state == "running"),
        "{all:#?}"
    );
    of[0].image.clone()
}

/// The app's ledger, newest first.
async fn releases(daemon: &Daemon, app: &str) -> Vec<Release> {
    let (code, out, err) = daemon.cli(&["releases", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The cluster of `place`, as the test reaches it (beside capstan).
pub async fn cluster(place: &Place) -> capstan_kube::Cluster {
    let target = capstan_deploy::targets::TargetConfig {
        name: "scenario".into(),
        kind: capstan_model::TargetKind::Kubernetes,
        kubeconfig: Some(place.kubeconfig.clone()),
        context: place.context.clone(),
        namespace: Some(place.namespace.clone()),
        ..capstan_deploy::targets::TargetConfig::default()
    };
    capstan_kube::Cluster::connect(&target).await.unwrap()
}

async fn claims(place: &Place, app: &str) -> Vec<String> {
    let cluster = cluster(place).await;
    let api: kube::Api<PersistentVolumeClaim> =
        kube::Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.list(&kube::api::ListParams::default().labels(&format!("io.capstan.app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

/// The `[[targets]]` entry of `place`, named `k8s`.
pub fn target_config(place: &Place) -> String {
    format!(
        "[[targets]]\nname = \"k8s\"\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\nnamespace = \"{}\"\nprogress_deadline = \"20s\"\n{}",
        place.kubeconfig.display(),
        place.namespace,
        place
            .context
            .as_ref()
            .map(|c| format!("context = \"{c}\"\n"))
            .unwrap_or_default()
    )
}

/// The scenario at `place`, the daemon on `docker_host` (which pushes the images).
pub async fn run(bin: &Path, docker_host: &str, place: &Place) -> String {
    let engine = capstan_engine::Engine::new(Some(docker_host)).unwrap();
    let app = capstan_testkit::unique("kscn");
    let image = format!("{}/{app}", place.registry);
    capstan_testkit::push_versions(&engine, &image, &["1", "2"]).await;
    let config = format!(
        "[logs]\ncollect = false\n\n[images]\nwatch = true\nfirst_check_after = \"1h\"\n\n{}",
        target_config(place)
    );
    let daemon = Daemon::start_with(bin, docker_host, &config).await;
    let dir = tempfile::tempdir().unwrap();
    let serve = |v: &str| format!("echo serving {v}; exec sleep 1000000");

    // release 1
    let (code, out, _) = daemon
        .cli_in(dir.path(), &["targets", "-o", "json"], &[])
        .await;
    assert_eq!(code, 0, "{out}");
    let targets: Vec<capstan_model::TargetStatus> = serde_json::from_str(&out).unwrap();
    let k8s = targets.iter().find(|t| t.name == "k8s").unwrap();
    assert!(k8s.healthy, "the cluster answers: {k8s:?}");
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &compose(&app, &image, "1", &serve("1")),
        "hello 1\n",
    )
    .await;
    assert_eq!(code, 0, "release 1: {out}");
    let running = replicas(&daemon, &app).await;
    assert_eq!(running.iter().filter(|r| r.service == "web").count(), 2);
    assert!(
        running
            .iter()
            .filter(|r| r.service == "web")
            .all(|r| r.health.as_deref() == Some("healthy")),
        "{running:#?}"
    );
    let v1 = digest_of(&daemon, &app, "web").await;
    let db = digest_of(&daemon, &app, "db").await;

    // the registry watcher covers the cluster's pods: web runs 1, the registry has 2
    let (code, out, err) = daemon
        .cli(&["images", "updates", "--check-now", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let updates: capstan_model::ImageUpdates = serde_json::from_str(&out).unwrap();
    let web = updates
        .updates
        .iter()
        .find(|u| {
            u.reference == format!("{image}:1")
                && u.containers
                    .iter()
                    .any(|c| c.starts_with(&format!("k8s/{}/{app}-web-", place.namespace)))
        })
        .unwrap_or_else(|| panic!("web's image watched: {updates:#?}"));
    assert_eq!(web.running.as_deref(), Some(v1.as_str()), "{web:#?}");
    assert_eq!(web.policy, "major", "{web:#?}");
    assert_eq!(
        web.candidate.as_ref().map(|c| c.tag.as_str()),
        Some("2"),
        "{web:#?}"
    );

    // release 2: a new image and a new config; planned first (nothing applied), then a
    // rolling update
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose(&app, &image, "2", &serve("2")),
    )
    .unwrap();
    std::fs::write(dir.path().join("motd.txt"), "hello 2\n").unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["plan", "-o", "json"], &[])
        .await;
    assert_eq!(code, 0, "{err}");
    let plan: capstan_model::Plan = serde_json::from_str(&out).unwrap();
    let action = |name: &str| {
        plan.services
            .iter()
            .find(|s| s.service == name)
            .map_or_else(|| panic!("{name} in {plan:#?}"), |s| s.action.clone())
    };
    assert!(
        matches!(action("web"), capstan_model::Action::Recreate { .. }),
        "{plan:#?}"
    );
    assert_eq!(action("db"), capstan_model::Action::Unchanged, "{plan:#?}");
    assert_eq!(
        digest_of(&daemon, &app, "web").await,
        v1,
        "a plan changes nothing"
    );
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &compose(&app, &image, "2", &serve("2")),
        "hello 2\n",
    )
    .await;
    assert_eq!(code, 0, "release 2: {out}");
    assert!(out.contains("rolling update"), "the progress steps: {out}");
    let v2 = digest_of(&daemon, &app, "web").await;
    assert_ne!(v1, v2, "release 2 runs image 2");
    assert_eq!(
        digest_of(&daemon, &app, "db").await,
        db,
        "db did not change"
    );

    // release 3 crash-loops: capstan puts release 2 back and says why (release 2's config
    // is not in release 3, which renamed it: the workload goes back as it ran)
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &compose(
            &app,
            &image,
            "1",
            "echo boom: DATABASE_URL is not set; exit 3",
        )
        .replace("source: motd", "source: banner")
        .replace("  motd:\n", "  banner:\n"),
        "hello 3\n",
    )
    .await;
    assert_eq!(code, 1, "release 3 must fail: {out}");
    for want in [
        "CrashLoopBackOff",
        "last exit code 3",
        "boom: DATABASE_URL is not set",
        "back on the previous release",
    ] {
        assert!(out.contains(want), "{want:?} in: {out}");
    }
    assert_eq!(digest_of(&daemon, &app, "web").await, v2, "release 2 again");

    // release 4 never becomes ready: the cluster marks it stalled (progress_deadline), or its
    // health gate runs out; release 2 again
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &with_check(&app, &image, "1", &serve("4"), "false"),
        "hello 2\n",
    )
    .await;
    assert_eq!(code, 1, "release 4 must fail: {out}");
    assert!(
        out.contains("timed out progressing") || out.contains("passed their health gate"),
        "{out}"
    );
    assert!(out.contains("back on the previous release"), "{out}");
    assert_eq!(digest_of(&daemon, &app, "web").await, v2, "release 2 again");

    // back to release 1 from the ledger
    let (code, out, err) = daemon.cli(&["rollback", &app, "--to", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(digest_of(&daemon, &app, "web").await, v1, "release 1 again");
    let ledger = releases(&daemon, &app).await;
    let results: Vec<(i64, &str)> = ledger
        .iter()
        .map(|r| (r.number, r.result.as_str()))
        .collect();
    for want in [
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "rolled_back"),
        (4, "rolled_back"),
        (5, "succeeded"),
    ] {
        assert!(results.contains(&want), "{want:?} in {results:?}");
    }
    // every release says where it ran, the rollback's too: what deploys the app next goes there
    for r in &ledger {
        assert_eq!(r.source["target"], "k8s", "{r:#?}");
    }

    // what each pod ran, journaled by digest
    let ran = |events: &[Event], d: &str| {
        events.iter().any(|e| {
            e.action == "image_running"
                && e.actor.contains(&format!("/{app}-web-"))
                && e.image_id.as_deref().is_some_and(|i| i.ends_with(d))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    let journaled = loop {
        let events = daemon.all_events("type=pod").await;
        if (ran(&events, &v1) && ran(&events, &v2)) || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ran(&journaled, &v1) && ran(&journaled, &v2),
        "web's pods running {v1} and {v2} journaled: {journaled:#?}\n{}",
        daemon.log()
    );
    assert!(
        journaled
            .iter()
            .all(|e| e.attributes.get("target").map(String::as_str) == Some("k8s")),
        "{journaled:#?}"
    );

    // the images the cluster ran, by digest, with the references that named them
    let (code, out, err) = daemon
        .cli(&["images", "--target", "k8s", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let ran: capstan_model::ImageList = serde_json::from_str(&out).unwrap();
    for (digest, tag) in [(&v1, "1"), (&v2, "2")] {
        let i = ran
            .images
            .iter()
            .find(|i| i.id == *digest)
            .unwrap_or_else(|| panic!("{digest} in {ran:#?}"));
        assert!(i.repo_tags.contains(&format!("{image}:{tag}")), "{i:#?}");
        assert!(i.containers >= 2, "two pods of web ran it: {i:#?}");
    }
    let (code, _, err) = daemon.cli(&["images", "--target", "nowhere"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no target named"), "{err}");

    // down: everything but the claim; then the claim too
    let claim = format!("{app}-data");
    let (code, out, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(replicas(&daemon, &app).await.is_empty());
    assert_eq!(
        claims(place, &app).await,
        std::slice::from_ref(&claim),
        "the claim stays"
    );
    // deployed again, the app finds its claim; web now updates itself: the registry watcher
    // finds tag 2 for the cluster's pods and hands it to the target's deployer, which rolls
    // it out as a release of its own, on the cluster
    let auto = compose(&app, &image, "1", &serve("1")).replace(
        "io.capstan.update: major",
        "io.capstan.update: major\n      io.capstan.update.auto: \"true\"",
    );
    let (code, out) = deploy(&daemon, dir.path(), &auto, "hello 1\n").await;
    assert_eq!(code, 0, "deployed again: {out}");
    let deployed = releases(&daemon, &app).await[0].number;
    let (code, _, err) = daemon
        .cli(&["images", "updates", "--check-now", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let self_updated = eventually(Duration::from_mins(2), "web updated itself", || async {
        let r = releases(&daemon, &app).await;
        (r[0].number == deployed + 1 && r[0].result != "running").then_some(r)
    })
    .await;
    assert_eq!(
        self_updated[0].result, "succeeded",
        "{:#?}",
        self_updated[0]
    );
    assert_eq!(self_updated[0].actor, "auto-update");
    assert_eq!(
        self_updated[0].source["target"], "k8s",
        "{:#?}",
        self_updated[0]
    );
    assert_eq!(
        self_updated[0].source["auto_update"]["from"],
        format!("{image}:1"),
        "{:#?}",
        self_updated[0]
    );
    assert_eq!(digest_of(&daemon, &app, "web").await, v2);
    let applied = daemon
        .all_events("type=capstan&action=update_applied")
        .await;
    assert!(
        applied.iter().any(|e| e.attributes.get("app") == Some(&app)
            && e.attributes.get("tag").map(String::as_str) == Some("2")),
        "{applied:#?}"
    );
    let (code, out, err) = daemon.cli(&["down", &app, "--volumes"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&claim), "{out}");
    assert!(claims(place, &app).await.is_empty());
    app
}
