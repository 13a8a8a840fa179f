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
    let mut daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\n",
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
