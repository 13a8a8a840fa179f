//! Private registries: a real registry with htpasswd authentication; every pull the engine
//! does for capstan (a deploy, an automatic update, a scan, a build's `FROM`) sends the
//! credentials capstan knows for it, from `capstan registries login`, Docker's config `auths`
//! or a credential helper. Without them, or with wrong ones, each fails naming the registry,
//! exit 1, nothing created; a password is never answered, logged or kept in plain text.

use std::time::Duration;

use capstan_model::{ImageUpdates, RegistryAuth, RegistryLogins};
use capstan_testkit::{Daemon, Registry, RegistryOptions, unique};

use crate::bin;
use crate::updates::push_version_as;

const USER: &str = "capstan";
const PASSWORD: &str = "s3cret-registry-pw";

async fn private_registry() -> (Registry, RegistryAuth) {
    let registry = Registry::start(RegistryOptions {
        user: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    })
    .await;
    let auth = RegistryAuth {
        registry: registry.host(),
        username: USER.into(),
        password: PASSWORD.into(),
    };
    (registry, auth)
}

/// Pushes `image` (busybox with a label of its own) and removes it from the engine, so that
/// only a pull with credentials brings it back.
async fn push_private(
    engine: &capstan_engine::Engine,
    image: &str,
    version: &str,
    auth: &RegistryAuth,
) {
    push_version_as(engine, image, version, false, Some(auth)).await;
    engine.remove_image(image, true).await.unwrap();
}

fn compose(image: &str, labels: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    command: sleep 3600\n    init: true\n    labels:\n{labels}      io.capstan.test: registries\n"
    )
}

/// The app's containers and networks on the engine.
async fn created(engine: &capstan_engine::Engine, app: &str) -> (usize, usize) {
    let containers = engine
        .list_containers(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| capstan_testkit::replica_of(c, app))
        .count();
    let (networks, _) = engine
        .labeled_networks_and_volumes("io.capstan.app", app)
        .await
        .unwrap();
    (containers, networks.len())
}

async fn deploy(daemon: &Daemon, dir: &std::path::Path, app: &str) -> (i32, String) {
    let (code, out, err) = daemon.cli_in(dir, &["deploy", "-p", app], &[]).await;
    (code, format!("{out}{err}"))
}

async fn logins(daemon: &Daemon) -> RegistryLogins {
    let (code, out, err) = daemon.cli(&["registries", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_private_image_deploys_updates_scans_and_builds_with_a_capstan_login() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (registry, auth) = private_registry().await;
    let repo = format!("{}/{}", registry.host(), unique("capt-private"));
    let base = format!("{}/{}:1", registry.host(), unique("capt-private-base"));
    push_private(&engine, &format!("{repo}:v1.0.0"), "1.0.0", &auth).await;
    push_private(&engine, &base, "base", &auth).await;
    let app = unique("capt-priv");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        &format!("[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"{app}-*\"]\n"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        compose(
            &format!("{repo}:v1.0.0"),
            "      io.capstan.update: minor\n      io.capstan.update.auto: \"true\"\n",
        ),
    )
    .unwrap();

    // no credentials: refused by the registry, the message says how to give some; nothing made
    let (code, said) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&registry.host()) && said.contains("capstan registries login"),
        "{said}"
    );
    assert_eq!(created(&engine, &app).await, (0, 0), "nothing is made");

    // a wrong password is refused at login and not kept
    let login = [
        "registries",
        "login",
        &registry.host(),
        "-u",
        USER,
        "--password-stdin",
    ];
    let (code, _, err) = daemon.cli_with_input(&login, "wrong\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&registry.host()) && err.contains("wrong"),
        "{err}"
    );
    assert!(logins(&daemon).await.registries.is_empty());

    // the right one is checked and kept, sealed; listed without its secret
    let (code, out, err) = daemon
        .cli_with_input(&login, &format!("{PASSWORD}\n"))
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("logged in"), "{out}");
    let listed = logins(&daemon).await.registries;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].registry.as_str(),
            listed[0].username.as_deref(),
            listed[0].in_effect
        ),
        (registry.host().as_str(), Some(USER), true)
    );
    let (_, table, _) = daemon.cli(&["registries", "ls"]).await;
    assert!(table.contains("capstan registries login"), "{table}");

    // deploy: pulled with the login
    let (code, said) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 0, "{said}");
    assert_eq!(created(&engine, &app).await.0, 1);

    // an automatic update: checked and pulled (by digest) with the same credentials
    push_private(&engine, &format!("{repo}:v1.1.0"), "1.1.0", &auth).await;
    let list: ImageUpdates = {
        let (status, body) = daemon
            .post_raw("/api/v1/images/updates/check", &serde_json::json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    };
    let u = list
        .updates
        .iter()
        .find(|u| u.reference == format!("{repo}:v1.0.0"))
        .unwrap_or_else(|| panic!("not watched: {list:?}"));
    assert_eq!(
        u.candidate.as_ref().map(|c| c.tag.as_str()),
        Some("v1.1.0"),
        "{u:?}"
    );
    assert!(
        u.auto
            .as_deref()
            .is_some_and(|a| a.contains("handed to the deploy engine")),
        "{u:?}"
    );
    let releases = || async {
        let (_, out, _) = daemon.cli(&["releases", &app, "-o", "json"]).await;
        serde_json::from_str::<Vec<capstan_model::Release>>(&out).unwrap_or_default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    loop {
        let r = releases().await;
        // (the deploy refused for want of credentials is release 1 in the ledger)
        if r.first()
            .is_some_and(|x| x.actor == "auto-update" && x.result == "succeeded")
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let events = daemon.all_events("type=capstan").await;
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "the update was not applied in 2 min: releases {r:?}\nevents {events:?}\nlog (newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // a scan of an image the engine lacks pulls it with the credentials first
    let _ = engine.remove_image(&format!("{repo}:v1.0.0"), true).await;
    let (code, out, err) = daemon
        .cli(&["images", "scan", &format!("{repo}:v1.0.0"), "-o", "json"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        engine
            .inspect_image(&format!("{repo}:v1.0.0"))
            .await
            .unwrap()
            .is_some()
    );

    // a build FROM a private image: the builder is given the registry's credentials
    let built = unique("capt-priv-built");
    let build_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(build_dir.path().join("app")).unwrap();
    std::fs::write(
        build_dir.path().join("app/Dockerfile"),
        format!("ARG BASE={base}\nFROM $BASE\nRUN echo built > /built\n"),
    )
    .unwrap();
    std::fs::write(
        build_dir.path().join("compose.yaml"),
        "services:\n  web:\n    build: ./app\n    command: sleep 3600\n    init: true\n",
    )
    .unwrap();
    let (code, said) = deploy(&daemon, build_dir.path(), &built).await;
    assert_eq!(code, 0, "{said}");

    // the password is nowhere in plain text: not in the daemon's log, not in its data dir
    assert!(
        !daemon.log().contains(PASSWORD),
        "the log holds the password"
    );
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", PASSWORD])
        .arg(daemon.data_dir())
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&grep.stdout);
    assert!(found.trim().is_empty(), "in plain text in: {found}");

    // logout: forgotten; the next pull of an image the engine lacks fails again, nothing made
    let (code, _, err) = daemon
        .cli(&["registries", "logout", &registry.host()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(logins(&daemon).await.registries.is_empty());
    let (code, _, err) = daemon
        .cli(&["registries", "logout", &registry.host()])
        .await;
    assert_eq!(code, 2, "a second logout finds nothing: {err}");
    // (the scan pulled v1.0.0 back; nothing runs it now)
    engine
        .remove_image(&format!("{repo}:v1.0.0"), true)
        .await
        .unwrap();
    let again = unique("capt-priv-again");
    let (code, said) = deploy(&daemon, dir.path(), &again).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains(&registry.host()), "{said}");
    assert_eq!(created(&engine, &again).await, (0, 0));

    for a in [&app, &built] {
        let (code, _, err) = daemon.cli(&["down", a]).await;
        assert_eq!(code, 0, "{err}");
    }
}

/// Credentials from Docker's config file (`auths`) and from a credential helper it names (a
/// small `docker-credential-*` script on the daemon's PATH speaking the helper protocol), read
/// at each pull; wrong ones fail naming the registry and where they came from.
#[tokio::test]
async fn pulls_take_credentials_from_docker_config_and_a_credential_helper() {
    use std::os::unix::fs::PermissionsExt as _;
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let (registry, auth) = private_registry().await;
    let images: Vec<String> = (0..3)
        .map(|i| format!("{}/{}:{i}", registry.host(), unique("capt-dockercfg")))
        .collect();
    for (i, image) in images.iter().enumerate() {
        push_private(&engine, image, &i.to_string(), &auth).await;
    }
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.json");
    let helpers = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let daemon = Daemon::start_with_env(
        bin(),
        engine.host(),
        "[logs]\ncollect = false\n",
        &[
            ("DOCKER_CONFIG", &config_dir.path().display().to_string()),
            ("PATH", &path),
        ],
    )
    .await;
    let auths = |password: &str| {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        serde_json::json!({"auths": {registry.host(): {"auth": encoded}}}).to_string()
    };
    let deploy_image = |image: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose(image, "")).unwrap();
        dir
    };

    // a wrong password in auths: the registry and the config file are named; nothing made
    std::fs::write(&config, auths("wrong")).unwrap();
    let dir = deploy_image(&images[0]);
    let app = unique("capt-dcfg");
    let (code, said) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&registry.host()) && said.contains("Docker's config"),
        "{said}"
    );
    assert_eq!(created(&engine, &app).await, (0, 0));

    // the right one: deployed
    std::fs::write(&config, auths(PASSWORD)).unwrap();
    let (code, said) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 0, "{said}");
    let listed = logins(&daemon).await.registries;
    assert_eq!(
        listed.iter().map(|l| l.origin).collect::<Vec<_>>(),
        [capstan_model::CredentialOrigin::DockerConfig],
        "{listed:?}"
    );

    // a credential helper Docker's config names for the registry (ahead of auths)
    let helper = helpers.path().join("docker-credential-capstan-e2e");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            registry.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        serde_json::json!({"credHelpers": {registry.host(): "capstan-e2e"}, "auths": {}})
            .to_string(),
    )
    .unwrap();
    let dir = deploy_image(&images[1]);
    let via_helper = unique("capt-helper");
    let (code, said) = deploy(&daemon, dir.path(), &via_helper).await;
    assert_eq!(code, 0, "{said}");

    // a helper answering another user's secret: refused, the helper named
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"nope\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    let dir = deploy_image(&images[2]);
    let refused = unique("capt-helper-no");
    let (code, said) = deploy(&daemon, dir.path(), &refused).await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&registry.host()) && said.contains("docker-credential-capstan-e2e"),
        "{said}"
    );
    assert_eq!(created(&engine, &refused).await, (0, 0));
    assert!(!daemon.log().contains(PASSWORD));

    for a in [&app, &via_helper] {
        let (code, _, err) = daemon.cli(&["down", a]).await;
        assert_eq!(code, 0, "{err}");
    }
}
