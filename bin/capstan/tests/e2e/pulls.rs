//! Fresh images: a tag pushed again (CI pushing `:main` once more) is deployed with `capstan
//! deploy --pull` and with `pull_policy: always`, not called up to date; `capstan plan` says
//! when the registry's digest differs from the engine's copy; a container that runs an older
//! image than its tag names on this host is shown stale by `capstan images updates`.

use capstan_model::{Action, ImageUpdates, Plan};
use capstan_testkit::{Daemon, Registry, RegistryOptions, unique};

use crate::bin;
use crate::updates::push_version_as;

/// Pushes a new image as `image` (the tag moves in the registry), then points the engine's
/// tag back at `keep` (the image the host had), as when CI pushes from elsewhere. Returns the
/// new image's id and the digest the registry has for it.
async fn push_elsewhere(
    engine: &capstan_engine::Engine,
    image: &str,
    version: &str,
    keep: Option<&str>,
) -> (String, String) {
    push_version_as(engine, image, version, false, None).await;
    let pushed = engine.inspect_image(image).await.unwrap().unwrap();
    let digest = pushed
        .repo_digests
        .iter()
        .find_map(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
        .unwrap();
    if let Some(id) = keep {
        engine.tag(id, image).await.unwrap();
    }
    (pushed.id, digest)
}

async fn running_id(engine: &capstan_engine::Engine, app: &str) -> String {
    let found: Vec<_> = engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| capstan_testkit::replica_of(c, app))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].image_id.clone()
}

async fn plan(daemon: &Daemon, dir: &std::path::Path, app: &str, pull: bool) -> Plan {
    let mut args = vec!["plan", "-p", app, "-o", "json"];
    if pull {
        args.push("--pull");
    }
    let (code, out, err) = daemon.cli_in(dir, &args, &[]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn write_compose(dir: &std::path::Path, image: &str, policy: Option<&str>) {
    let policy = policy
        .map(|p| format!("    pull_policy: {p}\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("compose.yaml"),
        // PID 1 ignores SIGTERM: each replaced replica stops in the background for 20 s, so
        // what is stale is asked while the one `always` replaced still runs
        format!("services:\n  web:\n    image: {image}\n{policy}    command: sleep 3600\n    stop_grace_period: 20s\n"),
    )
    .unwrap();
}

#[tokio::test]
async fn a_tag_pushed_again_is_deployed_with_pull_and_pull_policy_always() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let image = format!("{}/{}:main", registry.host(), unique("capt-main"));
    let app = unique("capt-fresh");
    let (first, _) = push_elsewhere(&engine, &image, "a", None).await;
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"{app}-*\"]\n"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_compose(dir.path(), &image, None);
    let deploy = |args: &'static [&'static str]| {
        let (daemon, dir, app) = (&daemon, dir.path().to_owned(), app.clone());
        async move {
            let mut all = vec!["deploy", "-p", &app];
            all.extend_from_slice(args);
            let (code, out, err) = daemon.cli_in(&dir, &all, &[]).await;
            assert_eq!(code, 0, "{out}{err}");
            out
        }
    };
    deploy(&[]).await;
    assert_eq!(running_id(&engine, &app).await, first);

    // CI pushes :main again; the host still has the old one
    let (second, second_digest) = push_elsewhere(&engine, &image, "b", Some(&first)).await;
    let planned = plan(&daemon, dir.path(), &app, false).await;
    let web = &planned.services[0];
    let check = web.registry.as_ref().expect("the plan says the tag moved");
    assert_eq!(
        check.registry_digest.as_deref(),
        Some(second_digest.as_str())
    );
    assert!(!check.pulled);
    assert_eq!(
        web.action,
        Action::Unchanged,
        "without a pull nothing changes"
    );
    let (_, text, _) = daemon.cli_in(dir.path(), &["plan", "-p", &app], &[]).await;
    assert!(
        text.contains("moved in its registry") && text.contains("--pull"),
        "{text}"
    );
    let planned = plan(&daemon, dir.path(), &app, true).await;
    assert!(
        matches!(planned.services[0].action, Action::Recreate { .. }),
        "{planned:?}"
    );

    // a plain deploy keeps what runs; --pull takes the new one
    deploy(&[]).await;
    assert_eq!(running_id(&engine, &app).await, first);
    deploy(&["--pull"]).await;
    assert_eq!(running_id(&engine, &app).await, second);

    // pull_policy: always, with no flag
    let (third, _) = push_elsewhere(&engine, &image, "c", Some(&second)).await;
    write_compose(dir.path(), &image, Some("always"));
    deploy(&[]).await;
    assert_eq!(running_id(&engine, &app).await, third);

    // the tag moves on this host (someone pulled or built it) and is not applied: stale
    let (fourth, fourth_digest) = push_elsewhere(&engine, &image, "d", None).await;
    let list: ImageUpdates = daemon.get("/api/v1/images/updates").await;
    let stale = list
        .stale
        .iter()
        .find(|s| s.reference == image)
        .unwrap_or_else(|| panic!("not shown stale: {:?}", list.stale));
    assert_eq!(
        (stale.running_id.as_str(), stale.tag_id.as_str()),
        (third.as_str(), fourth.as_str())
    );
    assert_eq!(stale.tag_digest.as_deref(), Some(fourth_digest.as_str()));
    assert!(stale.running_digest.is_some(), "{stale:?}");
    assert_eq!(stale.containers, [format!("{app}-web-1")]);
    let (_, table, _) = daemon.cli(&["images", "updates"]).await;
    assert!(table.contains("stale") && table.contains(&image), "{table}");

    // never: what the engine has, or a refusal naming the key (nothing changes)
    write_compose(
        dir.path(),
        &format!("{}/{}:1", registry.host(), unique("capt-absent")),
        Some("never"),
    );
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("services.web.pull_policy: never"),
        "{out}{err}"
    );
    assert_eq!(running_id(&engine, &app).await, third);

    // a policy that is none: bad input, with file and line, before the daemon is asked
    write_compose(dir.path(), &image, Some("sometimes"));
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("compose.yaml:4") && err.contains("pull_policy"),
        "{err}"
    );

    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}
