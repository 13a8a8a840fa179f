//! Registry watching through the daemon: a running container's image is checked against a real
//! registry (Debian's `docker-registry`) of the test's own, on demand; newer tags and new
//! content under the same tag are found, journaled once, kept across a restart, and the
//! requests are exactly those a check needs, counted at the registry's access log.

use std::collections::HashMap;

use capstan_model::ImageUpdates;
use capstan_testkit::{BUSYBOX, Daemon, Registry, RegistryOptions, unique};

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
    engine.push(&image).await.unwrap();
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
    let secret = std::fs::read_to_string(daemon.data_dir().join("registry-hook.secret"))
        .unwrap()
        .trim()
        .to_owned();
    let hook = format!("http://{}/api/v1/hooks/registry", daemon.addr());
    let registry = Registry::start(RegistryOptions {
        notify: Some(format!("{hook}?secret={secret}")),
        ..RegistryOptions::default()
    })
    .await;
    let repo = format!("shop/{}", unique("capt-hook"));
    let image = format!("{}/{repo}:1", registry.host());
    engine.tag(BUSYBOX, &image).await.unwrap();
    engine.push(&image).await.unwrap();
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
    assert!(resp.text().await.unwrap().contains("registry-hook.secret"));
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
