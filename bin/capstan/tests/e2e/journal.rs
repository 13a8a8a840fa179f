//! Every image operation shows up once in the journal and in the image's lifecycle.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_engine::BuildContext;
use capstan_model::{Event, ImageDetail, Lifecycle};
use capstan_testkit::{BUSYBOX, Daemon, eventually, registry, rootfs_with_file, tar_of, unique};

use crate::bin;

fn dockerfile_context(dockerfile: &str) -> BuildContext {
    BuildContext {
        tar: tar_of(&[("Dockerfile", dockerfile.as_bytes())]),
        dockerfile: "Dockerfile".into(),
        ..BuildContext::default()
    }
}

/// Counts events by `(action, name attribute or actor)`.
fn tally(events: &[Event]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| !e.inferred) {
        let who = match e.action.as_str() {
            "tag" => e.attributes.get("name").cloned().unwrap_or_default(),
            "pull" | "push" => e.actor.clone(),
            _ => String::new(),
        };
        *out.entry((e.action.clone(), who)).or_insert(0) += 1;
    }
    out
}

fn steps(detail: &ImageDetail) -> Vec<(Lifecycle, Option<String>, bool)> {
    detail
        .history
        .iter()
        .map(|h| (h.action, h.reference.clone(), h.inferred))
        .collect()
}

#[tokio::test]
async fn every_image_operation_is_journaled_exactly_once() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    eventually(Duration::from_secs(30), "journal connected", || async {
        daemon.health().await.journal.connected.then_some(())
    })
    .await;

    let name = unique("capt-journal");
    let built = format!("{name}/built:1");
    let remote = format!("{}/{name}/app:1", registry());
    let imported = format!("{name}/imported:1");

    // build FROM the test image (a unique label gives a new id)
    engine
        .build(
            dockerfile_context(&format!("FROM {BUSYBOX}\nLABEL capstan.test=\"{name}\"\n")),
            &built,
        )
        .await
        .unwrap();
    let id = engine.inspect_image(&built).await.unwrap().unwrap().id;
    engine.tag(&built, &remote).await.unwrap(); // tag
    engine.push(&remote, None).await.unwrap(); // push
    engine.remove_image(&remote, false).await.unwrap(); // untag
    engine.pull(&remote, None).await.unwrap(); // pull
    let archive = engine.save(&[&built, &remote]).await.unwrap(); // save
    engine.remove_image(&id, true).await.unwrap(); // untag x3 (two tags, one digest), delete
    engine.load(archive).await.unwrap(); // load
    engine
        .import_rootfs(rootfs_with_file(Some(&name)), &imported)
        .await
        .unwrap(); // tag + import
    let imported_id = engine.inspect_image(&imported).await.unwrap().unwrap().id;
    engine.remove_image(&imported, false).await.unwrap(); // untag + delete

    let want: BTreeMap<(String, String), usize> = [
        (("tag", built.as_str()), 1),
        (("tag", remote.as_str()), 1),
        (("push", remote.as_str()), 1),
        // rmi of the registry tag; then the image with both tags and its pulled digest
        (("untag", ""), 4),
        (("pull", remote.as_str()), 1),
        (("save", ""), 1),
        (("delete", ""), 1),
        (("load", ""), 1),
    ]
    .into_iter()
    .map(|((a, w), n)| ((a.to_owned(), w.to_owned()), n))
    .collect();
    let query = format!("type=image&image={id}");
    let mut events = Vec::new();
    for _ in 0..300 {
        events = daemon.all_events(&query).await;
        if tally(&events) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tally(&events), want, "journaled: {events:#?}");
    // every journaled engine event is resolved to the image it is about
    assert!(
        events
            .iter()
            .all(|e| e.image_id.as_deref() == Some(id.as_str()))
    );

    // the lifecycle reads like what happened, once each
    // the references the load brought back have no events: they are inferred once the stream
    // is quiet
    let detail: ImageDetail =
        eventually(Duration::from_mins(1), "load's references settled", || {
            let (daemon, id) = (&daemon, &id);
            async move {
                let d: ImageDetail = daemon.get(&format!("/api/v1/images/{id}")).await;
                // both references back in the inventory, at least one of them inferred (the
                // other may have been read with a late event)
                (d.image.repo_tags.len() == 2
                    && d.history
                        .iter()
                        .any(|h| h.action == Lifecycle::Tagged && h.inferred))
                .then_some(d)
            }
        })
        .await;
    let history = steps(&detail);
    let count = |step: Lifecycle, reference: Option<&str>, inferred: bool| {
        history
            .iter()
            .filter(|(s, r, i)| *s == step && r.as_deref() == reference && *i == inferred)
            .count()
    };
    assert_eq!(
        count(Lifecycle::Built, Some(&built), true),
        1,
        "{history:?}"
    );
    assert_eq!(
        count(Lifecycle::Tagged, Some(&built), false),
        1,
        "{history:?}"
    );
    assert_eq!(
        count(Lifecycle::Tagged, Some(&remote), false),
        1,
        "{history:?}"
    );
    assert_eq!(
        count(Lifecycle::Pushed, Some(&remote), false),
        1,
        "{history:?}"
    );
    assert_eq!(
        count(Lifecycle::Pulled, Some(&remote), false),
        1,
        "{history:?}"
    );
    assert_eq!(count(Lifecycle::Saved, None, false), 1, "{history:?}");
    assert_eq!(count(Lifecycle::Loaded, None, false), 1, "{history:?}");
    assert_eq!(count(Lifecycle::Deleted, None, false), 1, "{history:?}");
    // Which reference each untag removed is not in the engine's event; capstan names it from
    // the inventory. When the journal reads the events late (a loaded machine), the engine may
    // already show a later state, so naming is best effort: an untag names one of the
    // references the image had, or none.
    let untagged: Vec<_> = history
        .iter()
        .filter(|(s, _, i)| *s == Lifecycle::Untagged && !*i)
        .collect();
    assert_eq!(untagged.len(), 4, "{history:?}");
    assert!(
        untagged
            .iter()
            .all(|(_, r, _)| r.as_ref().is_none_or(|r| *r == remote || *r == built)),
        "{history:?}"
    );
    // the load brought both references back without tag events: inferred, never seen
    let inferred_tags: Vec<_> = history
        .iter()
        .filter(|(s, _, i)| *s == Lifecycle::Tagged && *i)
        .collect();
    assert!(
        !inferred_tags.is_empty()
            && inferred_tags
                .iter()
                .all(|(_, r, _)| r.as_ref().is_some_and(|r| *r == remote || *r == built)),
        "{history:?}"
    );
    assert_eq!(detail.image.deleted, None);
    let mut tags = detail.image.repo_tags.clone();
    tags.sort();
    assert_eq!(tags, {
        let mut t = vec![built.clone(), remote.clone()];
        t.sort();
        t
    });

    // an import is an import, not a build; the deleted image stays with its history
    let detail: ImageDetail = eventually(Duration::from_secs(30), "import deleted", || {
        let (daemon, imported_id) = (&daemon, &imported_id);
        async move {
            let d: ImageDetail = daemon.get(&format!("/api/v1/images/{imported_id}")).await;
            d.image.deleted.is_some().then_some(d)
        }
    })
    .await;
    assert_eq!(
        steps(&detail),
        vec![
            (Lifecycle::Tagged, Some(imported.clone()), false),
            (Lifecycle::Imported, None, false),
            (Lifecycle::Untagged, Some(imported.clone()), false),
            (Lifecycle::Deleted, None, false),
        ]
    );
    assert_eq!(
        detail.image.repo_tags,
        vec![imported.clone()],
        "last known tags kept"
    );
    // and is found by its former reference
    let by_ref: ImageDetail = daemon.get(&format!("/api/v1/images/{imported}")).await;
    assert_eq!(by_ref.image.id, imported_id);
    let list: capstan_model::ImageList = daemon.get("/api/v1/images").await;
    assert!(
        !list.images.iter().any(|i| i.id == imported_id),
        "deleted images only on request"
    );
    let list: capstan_model::ImageList = daemon.get("/api/v1/images?all=true").await;
    assert!(list.images.iter().any(|i| i.id == imported_id));

    // the CLI shows the same
    let (code, out, err) = daemon.cli(&["images", "history", &built]).await;
    assert_eq!(code, 0, "{err}");
    for word in [
        "built", "tagged", "pushed", "pulled", "untagged", "deleted", "loaded", "inferred",
    ] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }
    let (code, out, err) = daemon
        .cli(&[
            "events", "--type", "image", "--action", "push", "--since", "10m", "-o", "json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let page: capstan_model::EventPage = serde_json::from_str(&out).unwrap();
    assert_eq!(
        page.events.iter().filter(|e| e.actor == remote).count(),
        1,
        "{out}"
    );
}

#[tokio::test]
async fn containers_are_listed_and_counted_on_their_image() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let name = unique("capt-ps");
    let image = format!("{name}/img:1");
    engine
        .import_rootfs(rootfs_with_file(Some(&name)), &image)
        .await
        .unwrap();
    let id = engine
        .create_container(
            &name,
            &image,
            &["sleep", "300"],
            [("capstan.test".to_owned(), name.clone())].into(),
        )
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();

    let (code, out, err) = daemon.cli(&["ps"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&name) && l.contains("running")),
        "{out}"
    );
    let (code, out, _) = daemon.cli(&["ps", "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: capstan_model::ContainerList = serde_json::from_str(&out).unwrap();
    let c = list.containers.iter().find(|c| c.id == id).unwrap();
    assert_eq!(c.labels.get("capstan.test"), Some(&name));

    // a busy shared engine (other tests' daemons) can delay the container's events a while;
    // what was last seen, and the daemon's log, say why when it never comes
    let mut answer = (0, serde_json::Value::Null);
    let mut counted = None;
    for _ in 0..600 {
        answer = daemon
            .get_raw(&format!("/api/v1/images/{image}"), Some(&daemon.token))
            .await;
        if let Ok(d) = serde_json::from_value::<ImageDetail>(answer.1.clone())
            && d.image.containers == 1
        {
            counted = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counted = counted.unwrap_or_else(|| {
        panic!(
            "container not counted on its image within 60 s; last answer {} {}\ndaemon log:\n{}",
            answer.0,
            answer.1,
            daemon.log()
        )
    });
    assert_eq!(counted.container_ids, vec![id.clone()]);
    let (code, out, _) = daemon.cli(&["images", "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: capstan_model::ImageList = serde_json::from_str(&out).unwrap();
    let listed = list
        .images
        .iter()
        .find(|i| i.repo_tags.contains(&image))
        .unwrap();
    assert_eq!(listed.containers, 1);

    engine.remove_container(&id, true).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "container removal journaled",
        || {
            let (daemon, id) = (&daemon, &id);
            async move {
                let events = daemon
                    .all_events(&format!("type=container&actor={id}"))
                    .await;
                let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
                (actions.contains(&"destroy")
                    && actions.contains(&"start")
                    && actions.contains(&"create"))
                .then_some(())
            }
        },
    )
    .await;
    let d: ImageDetail = daemon.get(&format!("/api/v1/images/{image}")).await;
    assert_eq!(d.image.containers, 0);
    let (code, out, _) = daemon.cli(&["ps", "-a"]).await;
    assert_eq!(code, 0);
    assert!(
        !out.contains(&name),
        "removed container still listed:\n{out}"
    );
}

#[tokio::test]
async fn live_event_stream_delivers_matching_events() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    eventually(Duration::from_secs(30), "journal connected", || async {
        daemon.health().await.journal.connected.then_some(())
    })
    .await;
    let name = unique("capt-sse");
    let target = format!("{name}/x:1");
    let mut follow = tokio::process::Command::new(bin())
        .args([
            "events", "--follow", "--type", "image", "--action", "tag", "-o", "json",
        ])
        .env("CAPSTAN_URL", &daemon.url)
        .env("CAPSTAN_TOKEN", &daemon.token)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    // give the stream a moment to subscribe; the --since variant below covers the gap anyway
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.tag(BUSYBOX, &target).await.unwrap();
    engine.remove_image(&target, false).await.unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let event: Event = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("no event on the live stream")
            .unwrap()
            .unwrap();
        let e: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.action.as_str()),
            ("image", "tag"),
            "filter ignored: {line}"
        );
        if e.attributes.get("name") == Some(&target) {
            break e;
        }
    };
    assert!(!event.inferred);

    // with since, the stream starts with stored events: the untag is already there
    let (status, _) = daemon
        .get_raw("/api/v1/events/stream?since=later", Some(&daemon.token))
        .await;
    assert_eq!(status, 400);
    let mut body = daemon
        .get_stream(&format!(
            "/api/v1/events/stream?since=10m&action=untag&image={}",
            event.actor
        ))
        .await
        .bytes_stream();
    let mut text = String::new();
    while !text.contains("\"untag\"") {
        let chunk = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::StreamExt::next(&mut body),
        )
        .await
        .expect("no backlog on the stream")
        .unwrap()
        .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.contains("event: event") && text.contains("id: "),
        "{text}"
    );
}

#[tokio::test]
async fn engine_over_tcp_is_journaled_too() {
    let tcp = capstan_testkit::docker_tcp();
    // the same engine as the unix socket, reached through DOCKER_HOST=tcp://...
    let engine = capstan_engine::Engine::new(Some(&tcp)).unwrap();
    engine.negotiate().await.unwrap();
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), &tcp).await;
    let health = eventually(
        Duration::from_secs(30),
        "journal connected over tcp",
        || async {
            let h = daemon.health().await;
            h.journal.connected.then_some(h)
        },
    )
    .await;
    assert_eq!(health.engine.host, tcp);
    assert_eq!(health.engine.api_version.as_deref(), Some("1.41"));
    let target = format!("{}/over-tcp:1", unique("capt-tcp"));
    engine.tag(BUSYBOX, &target).await.unwrap();
    eventually(Duration::from_secs(30), "tag over tcp journaled", || {
        let (daemon, target) = (&daemon, &target);
        async move {
            let events = daemon.all_events("type=image&action=tag").await;
            (events
                .iter()
                .filter(|e| e.attributes.get("name") == Some(target))
                .count()
                == 1)
                .then_some(())
        }
    })
    .await;
    engine.remove_image(&target, false).await.unwrap();
}

/// Regression: the engine drops events for a subscriber that does not read them within 100 ms;
/// capstan used to stop reading while it wrote a batch and lost about one event in ten during
/// a 20,000-event burst. Reading now never waits on writing.
#[tokio::test]
async fn a_sustained_burst_is_journaled_without_loss() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    eventually(Duration::from_secs(30), "journal connected", || async {
        daemon.health().await.journal.connected.then_some(())
    })
    .await;
    let name = unique("capt-burst");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (engine, name) = (engine.clone(), name.clone());
            tokio::spawn(async move {
                for i in 0..200 {
                    let r = format!("{name}/w{w}:{i}");
                    engine.tag(BUSYBOX, &r).await.unwrap();
                    engine.remove_image(&r, false).await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let prefix = format!("{name}/");
    let mut tags = 0;
    for _ in 0..600 {
        let events = daemon
            .all_events("type=image&action=tag&since=10m&inferred=false")
            .await;
        tags = events
            .iter()
            .filter(|e| {
                e.attributes
                    .get("name")
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .count();
        if tags >= 1600 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tags, 1600, "tag events journaled out of 1600 made");
    // and nothing was inferred for them: every change had its event
    let inferred = daemon
        .all_events("type=image&since=10m&inferred=true")
        .await;
    let ours: Vec<_> = inferred
        .iter()
        .filter(|e| {
            e.attributes
                .get("name")
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "inferred although the engine reported them: {ours:?}"
    );
}

/// Regression: the engine's untag event does not say which reference went. A tag made and
/// removed within one batch (a replay after downtime, or a reader behind a busy engine) was not
/// in the inventory diff, so its untag went unnamed and the reference was later "inferred" gone
/// although the engine had reported it.
#[tokio::test]
async fn tags_made_and_removed_while_capstan_was_down_are_named_on_replay() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let name = unique("capt-replay");
    let base = format!("{name}/base:1");
    engine
        .build(
            dockerfile_context(&format!("FROM {BUSYBOX}\nLABEL capstan.test=\"{name}\"\n")),
            &base,
        )
        .await
        .unwrap();
    let mut daemon = Daemon::start(bin(), engine.host()).await;
    eventually(Duration::from_secs(30), "journal connected", || async {
        daemon.health().await.journal.connected.then_some(())
    })
    .await;
    let id = eventually(Duration::from_secs(30), "base image journaled", || {
        let (daemon, base) = (&daemon, &base);
        async move {
            let events = daemon.all_events("type=image&action=tag").await;
            events
                .iter()
                .find(|e| e.attributes.get("name") == Some(base))
                .and_then(|e| e.image_id.clone())
        }
    })
    .await;
    daemon.stop().await;
    let (gone_a, gone_b, kept) = (
        format!("{name}/gone:a"),
        format!("{name}/gone:b"),
        format!("{name}/kept:1"),
    );
    for r in [&gone_a, &gone_b, &kept] {
        engine.tag(&base, r).await.unwrap();
    }
    engine.remove_image(&gone_a, false).await.unwrap();
    engine.remove_image(&gone_b, false).await.unwrap();
    daemon.restart().await;

    let detail: ImageDetail = eventually(Duration::from_secs(30), "replay journaled", || {
        let (daemon, id, kept) = (&daemon, &id, &kept);
        async move {
            let d: ImageDetail = daemon.get(&format!("/api/v1/images/{id}")).await;
            (d.image.repo_tags.contains(kept)
                && d.history
                    .iter()
                    .filter(|h| h.action == Lifecycle::Untagged)
                    .count()
                    == 2)
                .then_some(d)
        }
    })
    .await;
    let mut tags = detail.image.repo_tags.clone();
    tags.sort();
    assert_eq!(tags, vec![base.clone(), kept.clone()]);
    let history = steps(&detail);
    for r in [&gone_a, &gone_b] {
        assert_eq!(
            history
                .iter()
                .filter(|(s, reference, inferred)| *s == Lifecycle::Untagged
                    && reference.as_deref() == Some(r.as_str())
                    && !inferred)
                .count(),
            1,
            "untag of {r} named from its event: {history:?}"
        );
    }
    // settling ran once the replay ended: nothing was inferred for this image
    let inferred = daemon
        .all_events("type=image&since=10m&inferred=true")
        .await;
    assert!(
        inferred
            .iter()
            .all(|e| e.image_id.as_deref() != Some(id.as_str())),
        "inferred although the engine reported it: {inferred:?}"
    );
    for r in [&kept, &base] {
        engine.remove_image(r, false).await.unwrap();
    }
}
