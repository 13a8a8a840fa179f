//! Outages, on an engine of the test's own: capstan down while the engine works, the engine
//! restarting under capstan, capstan killed mid-burst. Every event the engine still holds must
//! be journaled exactly once and the inventory must match the engine afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_engine::{Engine, RawEvent};
use capstan_model::{Event, ImageList, Lifecycle};
use capstan_testkit::{BUSYBOX, Daemon, OwnEngine, eventually, rootfs_with_file};
use futures_util::StreamExt;

use crate::bin;

/// Everything the engine still holds, oldest first.
async fn held_events(engine: &Engine) -> Vec<RawEvent> {
    let now = engine.now_nanos().await.unwrap();
    engine
        .events(Some(0), Some(now))
        .map(Result::unwrap)
        .collect()
        .await
}

type Key = (i64, String, String, String, BTreeMap<String, String>);

fn key_raw(e: &RawEvent) -> Key {
    (
        e.time_nano,
        e.kind.clone(),
        e.action.clone(),
        e.actor.clone(),
        e.attributes.clone(),
    )
}

fn key(e: &Event) -> Key {
    (
        e.time_nano,
        e.kind.clone(),
        e.action.clone(),
        e.actor.clone(),
        e.attributes.clone(),
    )
}

/// Asserts each held event is journaled exactly once and nothing seen is journaled twice.
async fn assert_journal_complete(daemon: &Daemon, engine: &Engine) -> usize {
    let held = held_events(engine).await;
    assert!(!held.is_empty());
    let journal = daemon.all_events("inferred=false").await;
    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for e in &journal {
        *counts.entry(key(e)).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "journaled more than once: {dupes:?}");
    let missing: Vec<_> = held
        .iter()
        .filter(|e| !counts.contains_key(&key_raw(e)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} held events missing, first: {:?}",
        missing.len(),
        missing.first()
    );
    held.len()
}

/// Asserts the present inventory equals the engine's images (ids and tags).
async fn assert_inventory_matches(daemon: &Daemon, engine: &Engine) {
    // what no event explained is inferred once it has stayed unchanged for 30 s with no event
    // about the image (`UNEXPLAINED_FOR` in crates/images/src/reconcile.rs), looked at every
    // 2 s: a minute bounds it (an untag the engine does not name is such a change)
    let mut seen = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..300 {
        let mut on_engine: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in engine.list_images().await.unwrap() {
            on_engine.insert(i.id, i.repo_tags);
        }
        let list: ImageList = daemon.get("/api/v1/images").await;
        let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for mut i in list.images {
            i.repo_tags.sort();
            stored.insert(i.id, i.repo_tags);
        }
        if stored == on_engine {
            return;
        }
        seen = (stored, on_engine);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.0, seen.1, "the inventory never matched the engine");
}

/// Makes the engine emit one more event and waits until the journal has it, then past the
/// settle delay for tag changes no event explained.
async fn wait_settled(daemon: &Daemon, engine: &Engine) {
    let before = engine.now_nanos().await.unwrap();
    mark(engine).await;
    eventually(
        Duration::from_mins(1),
        "journal caught up with the engine",
        || async {
            let h = daemon.health().await;
            let last = h
                .journal
                .last_event
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(0);
            (h.journal.connected && last >= before).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// One more event on the engine.
async fn mark(engine: &Engine) {
    engine
        .tag(BUSYBOX, &format!("mark/{}:1", capstan_testkit::unique("m")))
        .await
        .unwrap();
}

#[tokio::test]
async fn own_engine_outage_is_replayed_and_diffed() {
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    let mut daemon = Daemon::start(bin(), &own.host()).await;
    // images that exist before the outage; some go during it
    let mut before = Vec::new();
    for i in 0..6 {
        let r = format!("before/img{i}:1");
        engine
            .import_rootfs(rootfs_with_file(Some(&r)), &r)
            .await
            .unwrap();
        before.push(engine.inspect_image(&r).await.unwrap().unwrap().id);
    }
    wait_settled(&daemon, &engine).await;
    assert!(daemon.stop().await.success());

    // 300+ image operations while capstan is down (the engine keeps only 256 events)
    engine.remove_image("before/img0:1", false).await.unwrap(); // untag + delete, soon forgotten
    engine.remove_image("before/img1:1", false).await.unwrap();
    for i in 0..150 {
        engine
            .tag(BUSYBOX, &format!("outage/t{i}:1"))
            .await
            .unwrap();
    }
    for i in 0..100 {
        engine
            .remove_image(&format!("outage/t{i}:1"), false)
            .await
            .unwrap();
    }
    for i in 0..3 {
        let r = format!("outage/new{i}:1");
        engine
            .import_rootfs(rootfs_with_file(Some(&r)), &r)
            .await
            .unwrap();
    }
    engine.tag(&before[2], "before/img2:renamed").await.unwrap();
    engine.remove_image("before/img2:1", false).await.unwrap();
    engine.remove_image("before/img5:1", false).await.unwrap(); // deleted late: event still held
    mark(&engine).await;

    daemon.restart().await;
    wait_settled(&daemon, &engine).await;
    let held = assert_journal_complete(&daemon, &engine).await;
    assert_eq!(
        held, 256,
        "the engine keeps 256 events; the outage made more"
    );
    assert_inventory_matches(&daemon, &engine).await;

    let all: ImageList = daemon.get("/api/v1/images?all=true").await;
    for id in [&before[0], &before[1], &before[5]] {
        let image = all.images.iter().find(|i| &i.id == id).unwrap();
        assert!(image.deleted.is_some(), "{id} deleted during the outage");
        let detail: capstan_model::ImageDetail = daemon.get(&format!("/api/v1/images/{id}")).await;
        let deletions: Vec<_> = detail
            .history
            .iter()
            .filter(|h| h.action == Lifecycle::Deleted)
            .collect();
        assert_eq!(deletions.len(), 1, "{:?}", detail.history);
        // img0 and img1 went before the engine's memory starts: capstan can only infer it
        assert_eq!(
            deletions[0].inferred,
            id != &before[5],
            "{:?}",
            detail.history
        );
    }
    let renamed: capstan_model::ImageDetail =
        daemon.get("/api/v1/images/before/img2:renamed").await;
    assert_eq!(renamed.image.id, before[2]);
    // nothing inferred twice: a second restart changes nothing
    let inferred_before = daemon.all_events("inferred=true").await;
    assert!(daemon.stop().await.success());
    daemon.restart().await;
    wait_settled(&daemon, &engine).await;
    let inferred_after = daemon.all_events("inferred=true").await;
    let again: Vec<&Event> = inferred_after
        .iter()
        .filter(|e| !inferred_before.iter().any(|b| b.seq == e.seq))
        .collect();
    assert!(
        again.is_empty(),
        "inferred again after a restart with no change: {again:#?}\nthe daemon's log: {}",
        daemon.log()
    );
    assert_journal_complete(&daemon, &engine).await;
    own.shutdown().await;
}

#[tokio::test]
async fn own_engine_restart_is_survived() {
    let mut own = OwnEngine::start().await;
    let engine = own.engine().await;
    let daemon = Daemon::start(bin(), &own.host()).await;
    engine.tag(BUSYBOX, "restart/before:1").await.unwrap();
    wait_settled(&daemon, &engine).await;

    own.restart().await;
    let engine = own.engine().await;
    eventually(
        Duration::from_mins(1),
        "journal reconnects by itself",
        || async {
            let h = daemon.health().await;
            (h.journal.connected && h.journal.reconnects >= 1).then_some(())
        },
    )
    .await;
    engine.tag(BUSYBOX, "restart/after:1").await.unwrap();
    engine
        .remove_image("restart/before:1", false)
        .await
        .unwrap();
    wait_settled(&daemon, &engine).await;

    let tags: Vec<Event> = daemon
        .all_events("type=image&action=tag&inferred=false")
        .await;
    for name in ["restart/before:1", "restart/after:1"] {
        let n = tags
            .iter()
            .filter(|e| e.attributes.get("name").map(String::as_str) == Some(name))
            .count();
        assert_eq!(n, 1, "{name} journaled {n} times");
    }
    let untags = daemon
        .all_events("type=image&action=untag&inferred=false")
        .await;
    assert_eq!(untags.len(), 1);
    // the engine's own restart events are journaled too (daemon or network events differ by
    // version; at least the stream carried on)
    assert_journal_complete(&daemon, &engine).await;
    assert_inventory_matches(&daemon, &engine).await;
    own.shutdown().await;
}

#[tokio::test]
async fn own_engine_kill9_mid_burst_loses_and_duplicates_nothing() {
    let own = OwnEngine::start().await;
    let engine = own.engine().await;
    let mut daemon = Daemon::start(bin(), &own.host()).await;
    wait_settled(&daemon, &engine).await;

    // 1,000 events: 500 tags and 500 untags, from two workers
    let burst = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut workers = Vec::new();
            for w in 0..2 {
                let engine = engine.clone();
                workers.push(tokio::spawn(async move {
                    for i in 0..250 {
                        let r = format!("burst/w{w}-{i}:1");
                        engine.tag(BUSYBOX, &r).await.unwrap();
                        engine.remove_image(&r, false).await.unwrap();
                    }
                }));
            }
            for w in workers {
                w.await.unwrap();
            }
        })
    };
    // kill capstan once it has journaled part of the burst, and start it again at once
    eventually(
        Duration::from_mins(1),
        "part of the burst journaled",
        || async { (daemon.health().await.journal.events > 200).then_some(()) },
    )
    .await;
    daemon.kill9().await;
    daemon.restart().await;
    burst.await.unwrap();
    wait_settled(&daemon, &engine).await;

    assert_journal_complete(&daemon, &engine).await;
    assert_inventory_matches(&daemon, &engine).await;
    let seen: BTreeSet<i64> = daemon
        .all_events("inferred=false")
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(seen.len() > 256);
    own.shutdown().await;
}
