//! Checks against a real registry (Debian's `docker-registry`) of each test's own: what counts
//! as an update, and what it costs, counted at the registry's access log.
#![allow(clippy::unwrap_used)]

use capstan_images::watch::{Check, TagFilter, TagLists, Target};
use capstan_registry::{Client, Options, Platform, Reference};
use capstan_testkit::{Registry, RegistryOptions};

/// One check in a cycle of its own.
async fn check(
    client: &Client,
    target: &Target,
    previous: Option<&Check>,
    platform: &Platform,
) -> Check {
    capstan_images::watch::check(client, target, previous, platform, &mut TagLists::default()).await
}

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

/// A multi-arch tag whose other platform or attestation changes is not an update; a change
/// of the host platform's image is. An index digest judged once is not fetched again.
#[tokio::test]
async fn only_the_host_platforms_image_decides_a_multi_arch_update() {
    let registry = Registry::start(RegistryOptions::default()).await;
    let client = Client::new(Options::default()).unwrap();
    let (running, _) = registry
        .push_index(
            "shop/web",
            "1.4",
            &[("amd64", "a1"), ("arm64", "b1")],
            "att1",
        )
        .await;
    let target = Target {
        reference: Reference::parse(&format!("{}/shop/web:1.4", registry.host())).unwrap(),
        policy: "digest".parse().unwrap(),
        running: Some(running),
        filter: TagFilter::default(),
    };
    let mut seen = 0;
    let c1 = check(&client, &target, None, &amd64()).await;
    assert_eq!(
        (c1.error.as_deref(), c1.has_update()),
        (None, false),
        "{c1:?}"
    );
    assert_eq!(c1.reason, "1.4 is what runs");
    assert_eq!(registry.asked_since(&mut seen), ["HEAD manifests"]);

    // arm64 and the attestation change under the same tag
    registry
        .push_index(
            "shop/web",
            "1.4",
            &[("amd64", "a1"), ("arm64", "b2")],
            "att2",
        )
        .await;
    let c2 = check(&client, &target, Some(&c1), &amd64()).await;
    assert!(!c2.has_update(), "{c2:?}");
    assert!(
        c2.reason.contains("not its linux/amd64 image"),
        "{}",
        c2.reason
    );
    assert_eq!(c2.running_child, c2.tag_child);
    // the running index and the new one, once each
    assert_eq!(
        registry.asked_since(&mut seen),
        ["HEAD manifests", "GET manifests", "GET manifests"]
    );
    // nothing changed since: one HEAD, no GET
    let c3 = check(&client, &target, Some(&c2), &amd64()).await;
    assert_eq!((c3.has_update(), &c3.reason), (false, &c2.reason));
    assert_eq!(registry.asked_since(&mut seen), ["HEAD manifests"]);

    // now the amd64 image changes: an update, and the running index is not read again
    let (_, children) = registry
        .push_index(
            "shop/web",
            "1.4",
            &[("amd64", "a2"), ("arm64", "b2")],
            "att2",
        )
        .await;
    let c4 = check(&client, &target, Some(&c3), &amd64()).await;
    assert!(c4.content_changed, "{c4:?}");
    assert_eq!(c4.tag_child.as_deref(), Some(children[0].as_str()));
    assert!(
        c4.reason.contains("holds a new linux/amd64 image"),
        "{}",
        c4.reason
    );
    assert_eq!(
        registry.asked_since(&mut seen),
        ["HEAD manifests", "GET manifests"]
    );
}

/// A same-tag re-push is found by digest; a tag policy finds the newest tag it allows, with
/// one tag listing and one HEAD on the candidate.
#[tokio::test]
async fn a_repush_and_newer_tags_are_found_with_the_fewest_requests() {
    let registry = Registry::start(RegistryOptions::default()).await;
    let client = Client::new(Options::default()).unwrap();
    let mut digests = std::collections::HashMap::new();
    for tag in [
        "v1.0.0",
        "v1.0.1",
        "v1.1.0",
        "v2.0.0",
        "1.0.1-alpine",
        "1.0.2-alpine",
    ] {
        digests.insert(tag, registry.push("shop/api", tag, tag).await);
    }
    let at = |tag: &str, policy: &str| Target {
        reference: Reference::parse(&format!("{}/shop/api:{tag}", registry.host())).unwrap(),
        policy: policy.parse().unwrap(),
        running: Some(digests[tag].clone()),
        filter: TagFilter::default(),
    };
    let mut seen = 0;
    let pick = |c: &Check| c.candidate.as_ref().map(|c| c.tag.clone());

    let c = check(&client, &at("v1.0.1", "minor"), None, &amd64()).await;
    assert_eq!(pick(&c).as_deref(), Some("v1.1.0"), "{c:?}");
    assert_eq!(c.candidate.as_ref().unwrap().digest, digests["v1.1.0"]);
    assert!(!c.content_changed);
    assert_eq!(
        registry.asked_since(&mut seen),
        ["HEAD manifests", "GET tags", "HEAD manifests"]
    );
    let c = check(&client, &at("v1.0.1", "patch"), None, &amd64()).await;
    assert_eq!(pick(&c), None, "{c:?}");
    assert!(c.reason.contains("does not allow"), "{}", c.reason);
    let c = check(&client, &at("v1.0.1", "major"), None, &amd64()).await;
    assert_eq!(pick(&c).as_deref(), Some("v2.0.0"));
    let c = check(&client, &at("1.0.1-alpine", "major"), None, &amd64()).await;
    assert_eq!(pick(&c).as_deref(), Some("1.0.2-alpine"));
    let c = check(&client, &at("v1.0.1", "semver:~1.0"), None, &amd64()).await;
    assert_eq!(pick(&c), None);
    registry.asked_since(&mut seen);

    // include and exclude patterns narrow the tags a policy may take
    let filtered = |include: Option<&str>, exclude: Option<&str>| Target {
        filter: TagFilter {
            include: include.map(|p| regex::Regex::new(p).unwrap()),
            exclude: exclude.map(|p| regex::Regex::new(p).unwrap()),
            min_age: None,
        },
        ..at("v1.0.1", "major")
    };
    let c = check(&client, &filtered(None, Some("^v2")), None, &amd64()).await;
    assert_eq!(pick(&c).as_deref(), Some("v1.1.0"), "{c:?}");
    let c = check(&client, &filtered(Some(r"^v1\.0\."), None), None, &amd64()).await;
    assert_eq!(pick(&c), None, "{c:?}");
    registry.asked_since(&mut seen);

    // a minimum age: the candidate waits, then is offered once known long enough
    let young = Target {
        filter: TagFilter {
            min_age: Some(std::time::Duration::from_hours(1)),
            ..TagFilter::default()
        },
        ..at("v1.0.1", "minor")
    };
    let w1 = check(&client, &young, None, &amd64()).await;
    assert_eq!(w1.candidate, None, "{w1:?}");
    assert_eq!(w1.waiting.as_ref().map(|c| c.tag.as_str()), Some("v1.1.0"));
    assert!(
        w1.reason.contains("younger than the minimum age"),
        "{}",
        w1.reason
    );
    let w2 = check(&client, &young, Some(&w1), &amd64()).await;
    assert_eq!(
        (w2.candidate_seen, w2.waiting.is_some()),
        (w1.candidate_seen, true)
    );
    let an_hour_ago = Check {
        candidate_seen: w1.candidate_seen.map(|t| t - chrono::Duration::hours(2)),
        ..w1
    };
    let w3 = check(&client, &young, Some(&an_hour_ago), &amd64()).await;
    assert_eq!(
        w3.candidate.as_ref().map(|c| c.tag.as_str()),
        Some("v1.1.0"),
        "{w3:?}"
    );
    assert_eq!(w3.waiting, None);
    registry.asked_since(&mut seen);

    // two tags of one repository in one cycle: the repository is listed once
    let mut cycle = TagLists::default();
    for tag in ["v1.0.1", "1.0.1-alpine"] {
        capstan_images::watch::check(&client, &at(tag, "major"), None, &amd64(), &mut cycle).await;
    }
    assert_eq!(
        registry.asked_since(&mut seen),
        [
            "HEAD manifests",
            "GET tags",
            "HEAD manifests",
            "HEAD manifests",
            "HEAD manifests"
        ]
    );

    // the same tag pushed again with other content: found by digest (the running manifest is
    // read once to know it is not an index)
    let target = at("v1.0.0", "digest");
    let before = check(&client, &target, None, &amd64()).await;
    assert!(!before.has_update());
    let new = registry.push("shop/api", "v1.0.0", "rebuilt").await;
    let after = check(&client, &target, Some(&before), &amd64()).await;
    assert!(after.content_changed, "{after:?}");
    assert_eq!(after.tag_digest.as_deref(), Some(new.as_str()));
    let asked = registry.asked_since(&mut seen);
    assert_eq!(asked, ["HEAD manifests", "HEAD manifests", "GET manifests"]);

    // a registry that is down: the error is kept with what was known
    drop(registry);
    let failed = check(&client, &target, Some(&after), &amd64()).await;
    assert!(
        failed.error.as_deref().unwrap().contains("cannot reach"),
        "{failed:?}"
    );
    assert!(failed.content_changed, "what was known stays");
}

/// A reference no container runs (from config) counts as updated once when its tag moves.
#[tokio::test]
async fn a_configured_ref_is_updated_once_when_its_tag_moves() {
    let registry = Registry::start(RegistryOptions::default()).await;
    let client = Client::new(Options::default()).unwrap();
    registry.push("shop/db", "16", "one").await;
    let target = Target {
        reference: Reference::parse(&format!("{}/shop/db:16", registry.host())).unwrap(),
        policy: "digest".parse().unwrap(),
        running: None,
        filter: TagFilter::default(),
    };
    let c1 = check(&client, &target, None, &amd64()).await;
    assert!(
        !c1.has_update() && c1.reason.starts_with("16 first seen as"),
        "{c1:?}"
    );
    let c2 = check(&client, &target, Some(&c1), &amd64()).await;
    assert_eq!(
        (c2.has_update(), c2.reason.as_str()),
        (false, "16 has not moved since the last check")
    );
    let moved = registry.push("shop/db", "16", "two").await;
    let c3 = check(&client, &target, Some(&c2), &amd64()).await;
    assert!(c3.content_changed, "{c3:?}");
    assert_eq!(
        c3.reason,
        format!("16 moved to {moved} since the last check")
    );
    let c4 = check(&client, &target, Some(&c3), &amd64()).await;
    assert!(!c4.has_update());
}
