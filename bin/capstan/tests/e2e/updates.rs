//! Registry watching through the daemon: a running container's image is checked against a real
//! registry (Debian's `docker-registry`) of the test's own, on demand; newer tags and new
//! content under the same tag are found, journaled once, kept across a restart, and the
//! requests are exactly those a check needs, counted at the registry's access log.

use std::collections::HashMap;
use std::time::Duration;

use capstan_model::ImageUpdates;
use capstan_testkit::{BUSYBOX, Daemon, Registry, RegistryOptions, eventually, unique};

use crate::bin;

async fn check_now(daemon: &Daemon) -> ImageUpdates {
    let (code, out, err) = daemon
        .cli(&["images", "updates", "--check-now", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_running_images_updates_are_found_journaled_once_and_kept() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let repo = unique("capt-upd");
    let image = format!("{}/{repo}:v1.0.0", registry.host());
    engine.tag(BUSYBOX, &image).await.unwrap();
    engine.push(&image, None).await.unwrap();
    registry.push(&repo, "v1.1.0", "newer").await;
    registry.push(&repo, "v2.0.0", "major").await;
    let name = unique("capt-upd");
    let id = engine
        .create_container(
            &name,
            &image,
            &["sleep", "3600"],
            HashMap::from([("io.capstan.update".to_owned(), "minor".to_owned())]),
        )
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    // (other tests' daemons share the engine: each watches only its own container)
    let mut daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"{name}\"]\n"
        ),
    )
    .await;
    let mut seen = 0;

    let list = check_now(&daemon).await;
    let ours = |list: &ImageUpdates| {
        list.updates
            .iter()
            .find(|u| u.reference == image)
            .cloned()
            .unwrap_or_else(|| panic!("{image} is not watched: {list:?}"))
    };
    let u = ours(&list);
    assert_eq!(u.error, None, "{u:?}");
    assert_eq!(u.policy, "minor");
    assert_eq!(u.containers, std::slice::from_ref(&name));
    assert_eq!(u.candidate.as_ref().map(|c| c.tag.as_str()), Some("v1.1.0"));
    assert!(!u.content_changed);
    assert!(
        u.reason.contains("v1.1.0 is the newest tag above v1.0.0"),
        "{}",
        u.reason
    );
    assert_eq!(
        registry.asked_since(&mut seen),
        ["HEAD manifests", "GET tags", "HEAD manifests"]
    );
    // the table says the same for people
    let (code, table, _) = daemon.cli(&["images", "updates"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains(&image) && table.contains("v1.1.0"),
        "{table}"
    );

    // the same tag pushed again with other content: found too
    registry.push(&repo, "v1.0.0", "rebuilt").await;
    let u = ours(&check_now(&daemon).await);
    assert!(u.content_changed, "{u:?}");
    assert!(
        u.reason.contains("v1.0.0 holds a new linux/amd64 image"),
        "{}",
        u.reason
    );
    registry.asked_since(&mut seen);

    // nothing new: exactly one HEAD, one tag listing, one HEAD on the candidate; no GET
    let again = ours(&check_now(&daemon).await);
    assert_eq!(
        (again.content_changed, &again.candidate),
        (true, &u.candidate)
    );
    assert_eq!(
        registry.asked_since(&mut seen),
        ["HEAD manifests", "GET tags", "HEAD manifests"]
    );

    // the registry checks' cost at /metrics, as the API counts it
    let text = daemon.metrics_text().await;
    let heads: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("capstan_registry_requests_total{kind=\"manifest_heads\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no manifest_heads count:\n{text}"));
    assert!(heads >= 6.0, "{heads}");
    assert!(text.contains("capstan_images_watched 1\n"), "{text}");

    // journaled once per new offer, not once per cycle
    let journaled = |events: Vec<capstan_model::Event>| {
        events
            .into_iter()
            .filter(|e| e.attributes.get("reference") == Some(&image))
            .count()
    };
    let events = daemon
        .all_events("type=capstan&action=update_available")
        .await;
    assert_eq!(journaled(events), 2);

    // a restart keeps the checks, and finds nothing new to announce
    assert!(daemon.stop().await.success());
    daemon.restart().await;
    let (_, out, _) = daemon.cli(&["images", "updates", "-o", "json"]).await;
    let kept: ImageUpdates = serde_json::from_str(&out).unwrap();
    assert_eq!(ours(&kept).candidate, u.candidate);
    check_now(&daemon).await;
    let events = daemon
        .all_events("type=capstan&action=update_available")
        .await;
    assert_eq!(journaled(events), 2);
    engine.remove_container(&id, true).await.unwrap();
    let _ = engine.remove_image(&image, true).await;
}

/// A registry's push notification makes capstan check the pushed repository's images at once;
/// the hook takes the distribution registry's envelope and Docker Hub's payload, and only with
/// its secret.
#[tokio::test]
async fn a_registry_notification_checks_at_once_and_needs_the_hook_secret() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let name = unique("capt-hook");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!(
            "[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"{name}\"]\n"
        ),
    )
    .await;
    // the hook's secret is kept sealed, never in a plain file; its owner reads it back
    assert!(!daemon.data_dir().join("registry-hook.secret").exists());
    let shown = std::process::Command::new(bin())
        .args(["secrets", "show", "registry-hook", "--data"])
        .arg(daemon.data_dir())
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let secret = String::from_utf8(shown.stdout).unwrap().trim().to_owned();
    assert_eq!(secret.len(), 64, "{secret}");
    let credentials = std::fs::read_dir(daemon.data_dir().join("credentials")).unwrap();
    for f in credentials {
        let sealed = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let hook = format!("http://{}/api/v1/hooks/registry", daemon.addr());
    let registry = Registry::start(RegistryOptions {
        notify: Some(format!("{hook}?secret={secret}")),
        ..RegistryOptions::default()
    })
    .await;
    let repo = format!("shop/{}", unique("capt-hook"));
    let image = format!("{}/{repo}:1", registry.host());
    engine.tag(BUSYBOX, &image).await.unwrap();
    engine.push(&image, None).await.unwrap();
    let id = engine
        .create_container(&name, &image, &["sleep", "3600"], HashMap::new())
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    let ours = |list: &ImageUpdates| list.updates.iter().find(|u| u.reference == image).cloned();
    let first = ours(&check_now(&daemon).await).unwrap();
    assert!(!first.has_update(), "{first:?}");

    // a push to the repository: the registry tells capstan, which checks without being asked
    registry.push(&repo, "1", "rebuilt").await;
    capstan_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the notified check",
        || async {
            let list: ImageUpdates = daemon.get("/api/v1/images/updates").await;
            ours(&list).filter(|u| u.content_changed)
        },
    )
    .await;

    // the hook wants its secret, and says how to give it
    let http = reqwest::Client::new();
    let hub =
        serde_json::json!({"push_data": {"tag": "1.4"}, "repository": {"repo_name": "acme/api"}});
    let resp = http.post(&hook).json(&hub).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("capstan secrets show registry-hook")
    );
    let resp = http
        .post(format!("{hook}?secret=wrong"))
        .json(&hub)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Docker Hub's payload, authenticated by the URL's secret
    let resp = http
        .post(format!("{hook}?secret={secret}"))
        .json(&hub)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["acme/api"]));
    // a body that is neither payload is refused
    let resp = http
        .post(format!("{hook}?secret={secret}"))
        .body("{\"hello\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    engine.remove_container(&id, true).await.unwrap();
    let _ = engine.remove_image(&image, true).await;
}

/// Builds `FROM busybox` with a label of its own (a new image per `version`), plus a `/bad`
/// file when `broken` (the test service's healthcheck fails on it), and pushes it.
async fn push_version(engine: &capstan_engine::Engine, image: &str, version: &str, broken: bool) {
    push_version_as(engine, image, version, broken, None).await;
}

/// [`push_version`] to a registry that wants `auth`.
pub(crate) async fn push_version_as(
    engine: &capstan_engine::Engine,
    image: &str,
    version: &str,
    broken: bool,
    auth: Option<&capstan_model::RegistryAuth>,
) {
    // the repository is in the image too: tests that build the same version in another
    // repository would otherwise share the build cache's image, and one test's removal could
    // take it from under the other's build ("unable to find image sha256:…")
    let repository = image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(image, |(repository, _)| repository);
    let dockerfile = format!(
        "FROM {BUSYBOX}\nLABEL capstan.test.version=\"{version}\" capstan.test.repository=\"{repository}\"\n{}",
        if broken { "COPY bad /bad\n" } else { "" }
    );
    let context = capstan_engine::BuildContext {
        tar: capstan_testkit::tar_of(&[("Dockerfile", dockerfile.as_bytes()), ("bad", b"x")]),
        dockerfile: "Dockerfile".into(),
        ..capstan_engine::BuildContext::default()
    };
    engine.build(context, image).await.unwrap();
    engine.push(image, auth).await.unwrap();
}

async fn releases(daemon: &Daemon, app: &str) -> Vec<capstan_model::Release> {
    let (code, out, err) = daemon.cli(&["releases", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The image id the service's one replica runs.
async fn running_image(engine: &capstan_engine::Engine, container: &str) -> String {
    engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == container)
        .unwrap_or_else(|| panic!("{container} is not running"))
        .image_id
}

/// A service deployed by capstan with `io.capstan.update.auto=true` updates itself through a
/// rollout; a candidate whose healthcheck fails is rolled back, the service keeps its image,
/// and that candidate is never tried again, while a newer one is. A service whose maintenance
/// window is closed waits.
#[tokio::test]
async fn a_deployed_service_updates_itself_and_a_broken_candidate_is_rolled_back_once() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let (repo, later_repo) = (unique("capt-auto"), unique("capt-auto-later"));
    let base = format!("{}/{repo}", registry.host());
    let later = format!("{}/{later_repo}", registry.host());
    for (image, version) in [
        (format!("{base}:v1.0.0"), "1.0.0"),
        (format!("{base}:v1.1.0"), "1.1.0"),
        (format!("{later}:v1.0.0"), "1.0.0"),
        (format!("{later}:v1.1.0"), "1.1.0"),
    ] {
        push_version(&engine, &image, version, false).await;
    }
    let v110 = engine
        .inspect_image(&format!("{base}:v1.1.0"))
        .await
        .unwrap()
        .unwrap()
        .id;
    let app = unique("capt-auto");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            r#"
services:
  web:
    image: {base}:v1.0.0
    command: sleep 3600
    init: true
    # a slow check under load is not a failing one: only the broken candidate fails it
    healthcheck: {{test: "test ! -f /bad", interval: 1s, timeout: 10s, retries: 1}}
    labels:
      io.capstan.update: minor
      io.capstan.update.auto: "true"
  later:
    image: {later}:v1.0.0
    command: sleep 3600
    init: true
    labels:
      io.capstan.update: minor
      io.capstan.update.auto: "true"
      io.capstan.update.window: "0 0 1 1 * 1m"
"#
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"{app}-*\"]\n"),
    )
    .await;
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{err}");
    let web = format!("{app}-web-1");
    let ours = |list: &ImageUpdates, image: &str| {
        list.updates
            .iter()
            .find(|u| u.reference == image)
            .cloned()
            .unwrap_or_else(|| panic!("{image} is not watched: {list:?}"))
    };

    // the candidate is found, pulled by digest and rolled out as a release of its own
    let list = check_now(&daemon).await;
    let u = ours(&list, &format!("{base}:v1.0.0"));
    assert_eq!(u.candidate.as_ref().map(|c| c.tag.as_str()), Some("v1.1.0"));
    assert!(
        u.auto
            .as_deref()
            .is_some_and(|a| a.contains("handed to the deploy engine")),
        "{u:?}"
    );
    // the other service's window is closed (1 January, midnight, one minute)
    let l = ours(&list, &format!("{later}:v1.0.0"));
    assert_eq!(
        l.auto.as_deref(),
        Some("waits for the maintenance window (0 0 1 1 * 1m)")
    );
    let applied = eventually(Duration::from_mins(2), "the update applied", || async {
        let r = releases(&daemon, &app).await;
        (r.len() == 2 && r[0].result == "succeeded").then_some(r)
    })
    .await;
    assert_eq!(applied[0].actor, "auto-update");
    assert_eq!(
        applied[0].source["auto_update"]["from"],
        format!("{base}:v1.0.0")
    );
    assert_eq!(running_image(&engine, &web).await, v110);
    let journaled = daemon
        .all_events("type=capstan&action=update_applied")
        .await;
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    assert_eq!(journaled[0].attributes["tag"], "v1.1.0");
    assert_eq!(journaled[0].attributes["release"], "2");

    // what runs now is watched by its tag, pinned digest and all: nothing newer, nothing to do
    let list = check_now(&daemon).await;
    let now = ours(&list, &format!("{base}:v1.1.0"));
    assert_eq!(
        (&now.candidate, now.content_changed, &now.auto),
        (&None, false, &None)
    );

    // a broken candidate: rolled back, the service keeps v1.1.0, the candidate is marked bad
    push_version(&engine, &format!("{base}:v1.2.0"), "1.2.0", true).await;
    check_now(&daemon).await;
    let rolled = eventually(
        Duration::from_mins(2),
        "the broken update rolled back",
        || async {
            let r = releases(&daemon, &app).await;
            (r.len() == 3 && r[0].result != "running").then_some(r)
        },
    )
    .await;
    assert_eq!(rolled[0].result, "rolled_back", "{:?}", rolled[0]);
    assert_eq!(running_image(&engine, &web).await, v110);
    let failed = eventually(
        Duration::from_secs(30),
        "update_failed journaled",
        || async {
            let e = daemon.all_events("type=capstan&action=update_failed").await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(failed[0].attributes["tag"], "v1.2.0");
    assert!(
        failed[0].attributes["reason"].contains("release 3 rolled back"),
        "{:?}",
        failed[0].attributes
    );
    // ... and not tried again
    let list = check_now(&daemon).await;
    let now = ours(&list, &format!("{base}:v1.1.0"));
    assert_eq!(
        now.candidate.as_ref().map(|c| c.tag.as_str()),
        Some("v1.2.0")
    );
    assert!(
        now.auto
            .as_deref()
            .is_some_and(|a| a.contains("failed on") && a.contains("waiting for a newer one")),
        "{now:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        releases(&daemon, &app).await.len(),
        3,
        "no retry of a bad candidate"
    );

    // a newer candidate is
    push_version(&engine, &format!("{base}:v1.2.1"), "1.2.1", false).await;
    check_now(&daemon).await;
    let r = eventually(
        Duration::from_mins(2),
        "the newer update applied",
        || async {
            let r = releases(&daemon, &app).await;
            (r.len() == 4 && r[0].result == "succeeded").then_some(r)
        },
    )
    .await;
    assert!(
        r[0].source["auto_update"]["to"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}:v1.2.1@sha256:")),
        "{:?}",
        r[0].source
    );
    // the windowed service never moved
    assert_eq!(
        running_image(&engine, &format!("{app}-later-1")).await,
        engine
            .inspect_image(&format!("{later}:v1.0.0"))
            .await
            .unwrap()
            .unwrap()
            .id
    );
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}
